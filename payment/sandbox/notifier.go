package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Notification states.
const (
	statePending   = "pending"
	stateDelivered = "delivered"
	stateAbandoned = "abandoned"
)

// batch bounds the notifications one DeliverDue picks up.
const batch = 256

// DeliverDue closes the trades past their expiry (up to a batch: each
// then owes its TRADE_CLOSED notification), then sends every
// notification due by the sandbox's clock (up to a batch), Workers at a
// time, and records each try: delivered when the answer is 200 with the
// body "success", else due again after the schedule's next wait, or
// abandoned after the last. A try cut short because the sandbox is
// closing (or ctx ends) is not recorded: the notification stays due and
// is sent again. It returns how many tries it recorded. It is meant for
// Config.Manual: called while the notifier runs, it may send a
// notification twice (receivers treat replays as no-ops).
func (s *Sandbox) DeliverDue(ctx context.Context) (int, error) {
	// A close that fails holds up no notification: the next round
	// closes again.
	var cerr error
	if _, err := s.closeExpired(ctx); err != nil {
		cerr = fmt.Errorf("sandbox: closing expired trades: %w", err)
	}
	due, err := s.store.due(ctx, s.cfg.Now(), batch)
	if err != nil {
		return 0, errors.Join(cerr, err)
	}
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, s.cfg.Workers)
		mu    sync.Mutex
		tries int
		errs  []error
	)
	for _, n := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			recorded, err := s.try(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			if recorded {
				tries++
			}
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return tries, errors.Join(cerr, fmt.Errorf("sandbox: recording %d tries: %w", len(errs), errs[0]))
	}
	return tries, cerr
}

// try sends n once and records the outcome.
func (s *Sandbox) try(ctx context.Context, n notification) (recorded bool, err error) {
	failure := s.post(ctx, n)
	if ctx.Err() != nil || s.ctx.Err() != nil {
		return false, nil
	}
	now := s.cfg.Now()
	state, next := stateDelivered, now
	if failure != "" {
		if n.Attempts < len(s.cfg.Schedule) {
			state, next = statePending, now.Add(s.wait(n.Attempts))
		} else {
			state = stateAbandoned
		}
		s.log.Warn("sandbox: notification not accepted", "notify_id", n.NotifyID, "trade_no", n.TradeNo,
			"try", n.Attempts+1, "why", failure, "state", state, "next", next)
	}
	// Recorded even if ctx ends now: the try happened.
	if err := s.store.attempted(context.WithoutCancel(ctx), n.NotifyID, state, next, failure); err != nil {
		return false, err
	}
	return true, nil
}

// wait is the pause after the (i+1)-th failed try, scaled.
func (s *Sandbox) wait(i int) time.Duration {
	return time.Duration(float64(s.cfg.Schedule[i]) * s.cfg.RetryScale)
}

// post sends the notification and returns why it was not accepted ("" if
// it was).
func (s *Sandbox) post(ctx context.Context, n notification) string {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.NotifyTimeout)
	defer cancel()
	// Close ends tries in flight too.
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, strings.NewReader(n.Body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return err.Error()
	}
	if resp.StatusCode != http.StatusOK || string(body) != "success" {
		return fmt.Sprintf("answered %d %.40q", resp.StatusCode, body)
	}
	return ""
}

// run is the notifier: it closes the trades past their expiry and sends
// what is due, then sleeps until the next notification is due or trade
// expires, or a new one is made.
func (s *Sandbox) run(ctx context.Context) {
	for {
		_, derr := s.DeliverDue(ctx)
		if derr != nil && ctx.Err() == nil {
			s.log.Error("sandbox: notifier", "err", derr)
		}
		wait := time.Hour
		switch at, ok, err := s.store.nextWork(ctx); {
		case err != nil || derr != nil:
			wait = time.Second // the store is failing: do not spin
		case ok:
			wait = max(at.Sub(s.cfg.Now()), 0)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}
