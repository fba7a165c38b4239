package checkout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"seckill"
)

// RunWriter consumes the order queue in batches until ctx is done: each
// batch becomes one SQL transaction, then its reservations are settled at
// the gate, its messages acked and its results published. While SQL fails, messages are nacked and the writer
// backs off (up to 5 s) and tries again; nothing is dropped.
func (e *Engine) RunWriter(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
		}
		n, err := e.WriteBatch(ctx)
		switch {
		case err == nil:
			backoff = 0
		case ctx.Err() != nil:
			return
		default:
			backoff = min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
			e.log.Error("order writer", "batch", n, "err", err, "retry_in", backoff)
		}
	}
}

// WriteBatch fetches up to BatchSize messages (waiting up to BatchWait for
// the first) and settles them. It returns how many it fetched.
func (e *Engine) WriteBatch(ctx context.Context) (int, error) {
	ds, err := e.b.Queue.Fetch(ctx, e.cfg.BatchSize, e.cfg.BatchWait)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	// A batch in progress is finished even when shutdown begins: it is
	// short, and finishing it spares a redelivery.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	reqs := make([]seckill.OrderRequest, len(ds))
	for i, d := range ds {
		reqs[i] = d.Request()
	}
	start := time.Now()
	results, err := e.b.Orders.WriteOrders(wctx, reqs, e.payBy())
	if err != nil {
		e.cfg.Observer.BatchWritten(len(ds), 0, time.Since(start), err)
		for _, d := range ds {
			err = errors.Join(err, d.Nak(wctx))
		}
		return len(ds), err
	}
	failed := 0
	for _, r := range results {
		if r.Status == seckill.ResultFailed {
			failed++
			// SQL refused a request the gate admitted: the gate held a unit
			// SQL did not have. Its stock is unchanged, so the unit is not
			// returned to the gate (which would keep the gate above SQL), and
			// the buyer keeps a terminal failed result: one try per sale.
			e.log.Error("order refused by SQL", "sale", r.SaleID, "user", r.UserID, "reason", r.Reason)
		}
	}
	// Settled before the ack: once a message has left the queue its
	// reservation is settled, so the reconciler (which releases a pending
	// reservation it finds neither queued nor in SQL) never hands back the
	// unit of a request SQL refused. If settling fails the messages stay
	// unacked and come back; the unique index makes writing them again
	// write nothing twice.
	if err := e.settle(wctx, results); err != nil {
		e.cfg.Observer.BatchWritten(len(ds), failed, time.Since(start), err)
		for _, d := range ds {
			err = errors.Join(err, d.Nak(wctx))
		}
		return len(ds), err
	}
	// Acked only after commit: a crash in between redelivers, and the
	// unique index makes the retry a no-op.
	var ackErr error
	if ba, ok := e.b.Queue.(seckill.BatchAcker); ok {
		ackErr = ba.AckAll(wctx, ds)
	} else {
		for _, d := range ds {
			ackErr = errors.Join(ackErr, d.Ack(wctx))
		}
	}
	if ackErr != nil {
		e.log.Warn("ack after commit failed; messages will be redelivered", "err", ackErr)
	}
	e.cfg.Observer.BatchWritten(len(ds), failed, time.Since(start), nil)
	if err := e.b.Bus.PublishResults(wctx, results); err != nil {
		// Polls still find the order in SQL; only the push is lost.
		e.log.Warn("publish results", "err", err)
	}
	return len(ds), nil
}

// settle tells the gate which reservations SQL has settled (by ticket), so
// the reconciler does not look at them. Settling one sale's reservations
// twice is settling them once, so a retry redoes every sale.
func (e *Engine) settle(ctx context.Context, results []seckill.OrderResult) error {
	bySale := map[int64][]seckill.Settled{}
	for _, r := range results {
		bySale[r.SaleID] = append(bySale[r.SaleID], seckill.Settled{UserID: r.UserID, Ticket: r.Ticket})
	}
	for sale, settled := range bySale {
		if err := e.b.Gate.Settle(ctx, sale, settled); err != nil {
			return fmt.Errorf("settle %d reservations of sale %d: %w", len(settled), sale, err)
		}
	}
	return nil
}

// Drain writes batches until the queue holds nothing for any sale, or ctx
// ends. Use it with no admissions running (start-up, shutdown).
func (e *Engine) Drain(ctx context.Context) error {
	for {
		n, err := e.b.Queue.Pending(ctx, 0)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := e.WriteBatch(ctx); err != nil {
			e.log.Error("drain", "err", err)
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
