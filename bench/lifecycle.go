package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// The lifecycle after the crowd (Config.PayRatio): a fraction of the
// winners pays through the server's payment provider — POST
// /api/orders/{id}/pay, then the provider's pay page's form with
// result=pay, as a buyer's click — and the rest never pay. The provider
// notifies the server asynchronously; the server's sweeper cancels the
// unpaid orders past their pay_deadline and puts their units back on sale.
// The bench samples the admin stats meanwhile, then resells the returned
// units to a second crowd (the buyers who let their orders lapse try
// again too, and must be told they are duplicates) and checks I1–I5.

// Lifecycle is what a run with Config.PayRatio measured.
type Lifecycle struct {
	PayRatio float64 `json:"pay_ratio"`
	Winners  int     `json:"winners"`  // buyers with an order after the crowd
	Payers   int     `json:"payers"`   // winners who tried to pay
	Paid     int     `json:"paid"`     // pay pages submitted with result=pay
	PayFails int     `json:"pay_fail"` // payers whose pay or pay page call failed
	Unpaid   int     `json:"unpaid"`   // winners who never paid

	// PaySeconds is the time to create every payer's payment (POST
	// /api/orders/{id}/pay, which asks the provider), SubmitSeconds then to
	// submit every pay page. NotifySeconds runs from the first submission
	// until the admin stats counted every submitted payment handled (paid,
	// or refunded when it came too late), so NotificationsPerSecond is
	// Paid / NotifySeconds: the provider's notify POSTs and the server's
	// handling of them, end to end, bounded by how fast the pages were
	// submitted; NotifyLagSeconds is how long after the last submission
	// the last one was handled.
	PaySeconds             float64 `json:"pay_seconds"`
	SubmitSeconds          float64 `json:"submit_seconds"`
	NotifySeconds          float64 `json:"notify_seconds"`
	NotifyLagSeconds       float64 `json:"notify_lag_seconds"`
	NotificationsPerSecond float64 `json:"notifications_per_second"`

	// The unpaid orders' pay deadlines (the server's clock) and how long
	// after them the gate had the units back, sampled every sampleEvery:
	// the first unit after the first deadline, the last after the last.
	FirstDeadline    time.Time `json:"first_deadline"`
	LastDeadline     time.Time `json:"last_deadline"`
	FirstBackSeconds float64   `json:"first_back_after_deadline_seconds"`
	AllBackSeconds   float64   `json:"all_back_after_last_deadline_seconds"`
	Returned         int64     `json:"returned"` // units back on sale
	AllBack          bool      `json:"all_back"`

	// The resale: ResaleUsers new buyers and the Unpaid ones, Tries each.
	ResaleUsers     int      `json:"resale_users"`
	ResaleSeconds   float64  `json:"resale_seconds"`
	ResaleOutcomes  Outcomes `json:"resale_outcomes"`
	Resold          int64    `json:"resold"`           // 202s of new buyers
	LapsedAccepted  int      `json:"lapsed_accepted"`  // 202s of buyers whose order lapsed: must be 0
	LapsedDuplicate int64    `json:"lapsed_duplicate"` // their 409s
}

// order is the part of GET /api/orders the bench reads.
type order struct {
	ID          int64     `json:"id"`
	SaleID      int64     `json:"sale_id"`
	Status      string    `json:"status"`
	PayDeadline time.Time `json:"pay_deadline"`
}

// lifecycle runs the payments, waits out the deadlines, resells and
// checks; winners are the users the crowd accepted (res.Outcomes its
// answers) and twice the number it accepted twice. It fills res.Lifecycle,
// Stats and Invariants.
func (b *runner) lifecycle(ctx context.Context, base string, res *Result, winners []user, twice int, first *TicketCheck) error {
	lc := &Lifecycle{PayRatio: b.cfg.PayRatio, Winners: len(winners)}
	res.Lifecycle = lc

	// Each winner's order, as the buyer sees it.
	orders := make([]order, len(winners))
	var orderErr atomic.Pointer[error]
	b.crowd(ctx, "orders", len(winners), func(i int) (class, bool) {
		var out struct{ Orders []order }
		if err := b.call(ctx, "GET", base+"/api/orders", winners[i].auth, nil, 200, &out); err != nil {
			orderErr.CompareAndSwap(nil, &err)
			return cErr, false
		}
		for _, o := range out.Orders {
			if o.SaleID == res.SaleID {
				orders[i] = o
			}
		}
		if orders[i].ID == 0 {
			err := fmt.Errorf("buyer %d has no order of sale %d", winners[i].id, res.SaleID)
			orderErr.CompareAndSwap(nil, &err)
		}
		return cOK, false
	})
	if e := orderErr.Load(); e != nil {
		return fmt.Errorf("read the winners' orders: %w", *e)
	}
	lc.Payers = int(float64(len(winners))*b.cfg.PayRatio + 0.5)
	lc.Unpaid = len(winners) - lc.Payers
	for _, o := range orders[lc.Payers:] {
		if lc.FirstDeadline.IsZero() || o.PayDeadline.Before(lc.FirstDeadline) {
			lc.FirstDeadline = o.PayDeadline
		}
		if o.PayDeadline.After(lc.LastDeadline) {
			lc.LastDeadline = o.PayDeadline
		}
	}
	before, err := b.stats(ctx, base, res.SaleID)
	if err != nil {
		return err
	}

	// The payers pay, as fast as Conns allow.
	noFollow := &http.Client{Transport: b.client.Transport, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var paid, fails atomic.Int64
	var firstSubmit atomic.Int64
	payURLs := make([]string, lc.Payers)
	t0 := time.Now()
	b.crowd(ctx, "pay", lc.Payers, func(i int) (class, bool) {
		var p struct {
			PayURL string `json:"pay_url"`
		}
		if err := b.call(ctx, "POST", fmt.Sprintf("%s/api/orders/%d/pay", base, orders[i].ID), winners[i].auth, nil, 200, &p); err != nil {
			b.progress("pay order %d: %v", orders[i].ID, err)
			fails.Add(1)
			return cErr, false
		}
		payURLs[i] = p.PayURL
		return cOK, false
	})
	lc.PaySeconds = time.Since(t0).Seconds()
	t0 = time.Now()
	b.crowd(ctx, "submit", lc.Payers, func(i int) (class, bool) {
		if payURLs[i] == "" {
			return cErr, false
		}
		if err := submitPay(ctx, noFollow, payURLs[i]); err != nil {
			b.progress("pay page of order %d: %v", orders[i].ID, err)
			fails.Add(1)
			return cErr, false
		}
		firstSubmit.CompareAndSwap(0, time.Now().UnixNano())
		paid.Add(1)
		return cOK, false
	})
	lastSubmit := time.Now()
	lc.SubmitSeconds = lastSubmit.Sub(t0).Seconds()
	lc.Paid, lc.PayFails = int(paid.Load()), int(fails.Load())
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Notifications arrive; the deadlines pass; the units come back.
	// Every order is then paid or cancelled, and the gate has every
	// cancelled unit.
	var notified, firstBack, allBack time.Time
	limit := time.Now().Add(time.Until(lc.LastDeadline)).Add(b.cfg.SettleTimeout)
	var st *Stats
	for {
		if st, err = b.stats(ctx, base, res.SaleID); err != nil {
			return err
		}
		now := time.Now()
		if notified.IsZero() && st.Paid+st.PaymentsRefunded+st.RefundsDue >= int64(lc.Paid) {
			notified = now
		}
		if firstBack.IsZero() && st.GateLeft > before.GateLeft {
			firstBack = now
		}
		if st.Pending == 0 && st.Queued == 0 && st.ReturnsUnapplied == 0 && st.GateLeft == st.SQLStockLeft && st.RefundsDue == 0 && !notified.IsZero() {
			allBack = now
			break
		}
		if now.After(limit) {
			break
		}
		select {
		case <-time.After(sampleEvery):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fs := firstSubmit.Load(); fs > 0 && !notified.IsZero() {
		lc.NotifySeconds = notified.Sub(time.Unix(0, fs)).Seconds()
		lc.NotifyLagSeconds = max(notified.Sub(lastSubmit), 0).Seconds()
		if lc.NotifySeconds > 0 {
			lc.NotificationsPerSecond = float64(lc.Paid) / lc.NotifySeconds
		}
	}
	lc.Returned = st.GateLeft - before.GateLeft
	lc.AllBack = !allBack.IsZero()
	if lc.Unpaid > 0 && lc.AllBack {
		lc.FirstBackSeconds = firstBack.Sub(lc.FirstDeadline).Seconds()
		lc.AllBackSeconds = allBack.Sub(lc.LastDeadline).Seconds()
	}

	// The resale: the buyers whose orders lapsed first — they try while
	// units are left, so the gate, not a sold-out flag, answers them —
	// then new buyers, twice the returned units.
	lapsed := len(winners) - lc.Payers
	resale := slices.Clone(winners[lc.Payers:])
	if lc.Returned > 0 {
		fresh, err := b.provision(ctx, base, int(2*lc.Returned))
		if err != nil {
			return err
		}
		lc.ResaleUsers = len(fresh)
		resale = append(resale, fresh...)
	}
	urls, err := b.paths(ctx, base, res.SaleID, resale)
	if err != nil {
		return err
	}
	for i := range b.counts {
		b.counts[i].Store(0)
	}
	acceptedBy := make([]atomic.Int32, len(resale))
	answered := make([]atomic.Bool, len(resale))
	var lapsedDup atomic.Int64
	got := newAnswers(len(resale))
	crowd := b.crowd(ctx, "resale", len(resale)*b.cfg.Tries, func(i int) (class, bool) {
		u := i % len(resale)
		status, ticket := b.buy(ctx, "POST", urls[u], resale[u].auth)
		c := classify(status)
		got.note(u, c, ticket)
		if c.definitive() {
			answered[u].Store(true)
		}
		if c == cAccepted {
			acceptedBy[u].Add(1)
		}
		if c == cDuplicate && u < lapsed {
			lapsedDup.Add(1)
		}
		return c, true
	})
	var counts [nClasses]int64
	for i := range counts {
		counts[i] = b.counts[i].Load()
	}
	lc.ResaleOutcomes = outcomesOf(counts)
	lc.ResaleSeconds = crowd.end.Sub(crowd.start).Seconds()
	lc.LapsedDuplicate = lapsedDup.Load()
	n := 0
	for i := range resale {
		a := int(acceptedBy[i].Load())
		if a > 1 {
			twice++
		}
		if i < lapsed {
			lc.LapsedAccepted += a
		} else {
			lc.Resold += int64(a)
			if answered[i].Load() {
				n++
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// At rest again: every 202 an order, nothing queued or on its way to
	// the gate, two readings alike (a sweep between them would differ).
	accepted := res.Outcomes.Accepted + lc.ResaleOutcomes.Accepted
	if _, settled, err := b.settle(ctx, base, res.SaleID, accepted); err != nil || !settled {
		res.Settled = false
		return err
	}
	if st, err = b.rest(ctx, base, res.SaleID); err != nil {
		return err
	}
	res.Stats = st
	// The resale's new buyers' tickets, with the first crowd's: a lapsed
	// buyer's result is still the success of their cancelled order (and a
	// 202 to one of them is I2's LapsedAccepted).
	var tickets *TicketCheck
	if first != nil {
		tc, err := b.verifyTickets(ctx, base, res.SaleID, resale[lapsed:], got.from(lapsed))
		if err != nil {
			return fmt.Errorf("read the resale buyers' results: %w", err)
		}
		all := *first
		all.add(tc)
		tickets = &all
	}
	res.Invariants = append(CheckInvariants(*st, Crowd{
		Accepted: accepted, Users: lc.ResaleUsers, Answered: n, SoldOut: lc.ResaleOutcomes.SoldOut, AcceptedTwice: twice,
		Tickets: tickets,
	}), CheckLifecycle(*st, *lc)...)
	return nil
}

// CheckLifecycle checks what a lifecycle run must leave, besides
// CheckInvariants: every submitted payment applied once or refunded (I5:
// nothing paid twice, no paid order cancelled), every unpaid unit back
// and resold to new buyers, the lapsed buyers still duplicates (I2).
func CheckLifecycle(st Stats, lc Lifecycle) []Check {
	ck := func(name string, ok bool, format string, args ...any) Check {
		return Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)}
	}
	return []Check{
		ck("I5 payments once", st.Paid+st.PaymentsRefunded == int64(lc.Paid) && st.RefundsDue == 0 && st.Refunded == 0,
			"paid %d + late payments refunded %d == paid on the page %d; refunds due %d == 0; orders refunded %d == 0",
			st.Paid, st.PaymentsRefunded, lc.Paid, st.RefundsDue, st.Refunded),
		ck("I5 orders moved once", st.Pending+st.Paid+st.Cancelled == st.Orders,
			"pending %d + paid %d + cancelled %d == orders %d", st.Pending, st.Paid, st.Cancelled, st.Orders),
		ck("I4 units back", lc.AllBack && lc.Returned == int64(lc.Winners)-st.Paid,
			"%d units back on sale == winners %d − paid %d", lc.Returned, lc.Winners, st.Paid),
		ck("I4 resold", lc.Resold == lc.Returned, "resold %d == returned %d", lc.Resold, lc.Returned),
		ck("I2 lapsed stay buyers", lc.LapsedAccepted == 0, "202s to buyers whose order lapsed %d == 0 (%d × 409)", lc.LapsedAccepted, lc.LapsedDuplicate),
	}
}

// submitPay posts the provider's pay page form with result=pay, as the
// buyer's click. Only the redirect back to the shop (303) means the
// provider took the money; a page shown instead (200) is a payment that
// no longer waits, closed at its expiry (the click came too late, which a
// short --pay-window makes common): it is not counted as paid.
func submitPay(ctx context.Context, c *http.Client, payURL string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", payURL, strings.NewReader(url.Values{"result": {"pay"}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusSeeOther:
		return nil
	case http.StatusOK:
		return &httpError{status: resp.StatusCode, message: "the provider's page shows the payment not taken (closed at its expiry)"}
	}
	return &httpError{status: resp.StatusCode, message: strings.TrimSpace(string(body))}
}

// statsPatience is how long stats tries again after an answer of the
// server's own failure (5xx) or none at all: a drill's fault (a database
// connection killed, an instance restarting behind the balancer) fails a
// reading for a moment, and the checks must not give up on the run.
const statsPatience = 30 * time.Second

// stats reads the sale's admin stats, trying again for up to
// statsPatience while the server fails or cannot be reached.
func (b *runner) stats(ctx context.Context, base string, saleID int64) (*Stats, error) {
	deadline := time.Now().Add(statsPatience)
	for {
		var st Stats
		err := b.call(ctx, "GET", fmt.Sprintf("%s/api/admin/sales/%d/stats", base, saleID), b.admin, nil, 200, &st)
		if err == nil {
			return &st, nil
		}
		var he *httpError
		if ctx.Err() != nil || (errors.As(err, &he) && he.status < 500) || time.Now().After(deadline) {
			return nil, fmt.Errorf("stats: %w", err)
		}
		b.progress("stats failed (%v); trying again", err)
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// rest reads the stats until two readings in a row agree, with nothing
// queued and no cancelled unit on its way to the gate, or SettleTimeout
// passes (then the last reading).
func (b *runner) rest(ctx context.Context, base string, saleID int64) (*Stats, error) {
	deadline := time.Now().Add(b.cfg.SettleTimeout)
	var last *Stats
	for {
		st, err := b.stats(ctx, base, saleID)
		if err != nil {
			return nil, err
		}
		if last != nil && *last == *st && st.Queued == 0 && st.ReturnsUnapplied == 0 || time.Now().After(deadline) {
			return st, nil
		}
		last = st
		select {
		case <-time.After(sampleEvery):
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// paths has each user fetch the sale's hidden purchase path and returns
// the purchase URLs.
func (b *runner) paths(ctx context.Context, base string, saleID int64, users []user) ([]string, error) {
	urls := make([]string, len(users))
	var pathErr atomic.Pointer[error]
	b.crowd(ctx, "paths", len(users), func(i int) (class, bool) {
		var p struct{ Path string }
		u := fmt.Sprintf("%s/api/sales/%d/path", base, saleID)
		if err := b.call(ctx, "POST", u, users[i].auth, nil, 200, &p); err != nil {
			pathErr.CompareAndSwap(nil, &err)
			return cErr, false
		}
		urls[i] = fmt.Sprintf("%s/api/sales/%d/purchase/%s", base, saleID, p.Path)
		return cOK, true
	})
	if e := pathErr.Load(); e != nil {
		return nil, fmt.Errorf("get purchase paths: %w", *e)
	}
	if slices.Contains(urls, "") {
		return nil, errors.New("get purchase paths: some were not fetched")
	}
	return urls, nil
}

// writeText adds the lifecycle's lines to a report.
func (lc *Lifecycle) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "pay         %d of %d winners paid (ratio %.2f, %d failed): payments created in %.2fs, pay pages submitted in %.2fs\n",
		lc.Paid, lc.Winners, lc.PayRatio, lc.PayFails, lc.PaySeconds, lc.SubmitSeconds)
	fmt.Fprintf(b, "notify      every payment handled %.3fs after the first submission = %.0f notifications/s (%.3fs after the last)\n",
		lc.NotifySeconds, lc.NotificationsPerSecond, lc.NotifyLagSeconds)
	if lc.AllBack {
		fmt.Fprintf(b, "returns     %d units back on sale: first %.3fs after the first deadline, all %.3fs after the last (deadlines %s … %s, server clock)\n",
			lc.Returned, lc.FirstBackSeconds, lc.AllBackSeconds, lc.FirstDeadline.Format("15:04:05.000"), lc.LastDeadline.Format("15:04:05.000"))
	} else {
		fmt.Fprintf(b, "returns     NOT all back: %d units\n", lc.Returned)
	}
	o := lc.ResaleOutcomes
	fmt.Fprintf(b, "resale      %d new buyers + %d lapsed, in %.2fs: 202 %d  409 %d  410 %d  429 %d  503 %d  other %d  error %d; lapsed buyers 409 %d, 202 %d\n",
		lc.ResaleUsers, lc.Unpaid, lc.ResaleSeconds, o.Accepted, o.Duplicate, o.SoldOut, o.RateLimited, o.Busy, o.Other+o.OK, o.Err, lc.LapsedDuplicate, lc.LapsedAccepted)
}
