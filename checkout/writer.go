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
//
// Before writing, it claims the batch's reservations at the gate (one
// StockGate.Claim per sale): a claimed reservation can no longer be
// released, and a request whose reservation was released already — its
// publish was not acknowledged, the reconciler found it neither queued nor
// in SQL and gave its unit back, and then it reached the queue after all —
// is not written but acked and answered failed (EExpired): its unit is
// back in stock, and may have been sold to someone else since. The gate
// may have forgotten the release (a rebuild), and the reconciler may
// release a reservation the writer claimed already: SQL judges, since the
// reconciler records a release (a fence of the ticket) before it makes
// it, and WriteOrders refuses a fenced ticket (EExpired) in the
// transaction that would write it; the writer then gives its unit back at
// the gate (settle). So the reconcile age is no guess of how late a
// publish may land: whichever of the fence and the order commits first
// wins.
func (e *Engine) WriteBatch(ctx context.Context) (int, error) {
	return e.writeBatch(ctx, true)
}

// writeBatch is WriteBatch; unfenced, it claims nothing at the gate and
// checks the batch against the releases SQL records instead (see Recover).
func (e *Engine) writeBatch(ctx context.Context, fenced bool) (int, error) {
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
	var expired []seckill.OrderResult
	var claimed map[int64]bool
	if reqs, expired, claimed, err = e.claim(wctx, reqs, fenced); err != nil {
		if fenced && seckill.ErrorCode(err) == seckill.EBusy {
			// The gate lost the sale (Redis restarted empty): nothing
			// is written until it is rebuilt from SQL and the queue,
			// which counts these requests as on their way.
			e.maybeRebuild()
		}
		e.cfg.Observer.BatchWritten(len(ds), 0, time.Since(start), err)
		for _, d := range ds {
			err = errors.Join(err, d.Nak(wctx))
		}
		return len(ds), err
	}
	var results []seckill.OrderResult
	if len(reqs) > 0 {
		results, err = e.b.Orders.WriteOrders(wctx, reqs, e.payBy())
	}
	if err != nil {
		e.cfg.Observer.BatchWritten(len(ds), 0, time.Since(start), err)
		for _, d := range ds {
			err = errors.Join(err, d.Nak(wctx))
		}
		return len(ds), err
	}
	failed := 0
	for _, r := range results {
		switch {
		case r.Status != seckill.ResultFailed:
		case r.Reason == seckill.EExpired:
			failed++
			e.log.Warn("order refused: its reservation was released before it reached the queue",
				"sale", r.SaleID, "user", r.UserID, "ticket", r.Ticket)
		default:
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
	// unit of a request SQL refused; one SQL refused as fenced (EExpired)
	// is withdrawn instead, its unit given back. If settling fails the
	// messages stay unacked and come back; the unique index makes writing
	// them again write nothing twice, and the fence refuses again what it
	// refused.
	if err := e.settle(wctx, results, claimed); err != nil {
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
	if err := e.b.Bus.PublishResults(wctx, append(results, expired...)); err != nil {
		// Polls still find the order in SQL; only the push is lost.
		e.log.Warn("publish results", "err", err)
	}
	return len(ds), nil
}

// claim claims reqs' reservations at the gate, one call per sale, and
// splits them into those to write (in their order) and the results of those
// refused: failed with EExpired, their reservations released before they
// reached the queue. claimed lists the sales claimed at the gate.
// Requests of sales the gate no longer serves (ended over gateKeep ago, or
// unknown), and every request when atGate is false (Recover's drain, whose
// gate died with the process before), cannot be claimed: they go to SQL
// as they are, which refuses those whose release it recorded
// (OrderStore.FenceTicket). Any error of the gate (EBusy: the sale is not
// loaded) is returned: the batch waits until the gate can answer. Claiming
// twice is claiming once, so a batch fetched again after a failed write
// claims again.
func (e *Engine) claim(ctx context.Context, reqs []seckill.OrderRequest, atGate bool) (write []seckill.OrderRequest, expired []seckill.OrderResult, claimed map[int64]bool, err error) {
	if !atGate {
		return reqs, nil, nil, nil
	}
	bySale := map[int64][]int{}
	for i, r := range reqs {
		bySale[r.SaleID] = append(bySale[r.SaleID], i)
	}
	refused := make([]bool, len(reqs))
	claimed = make(map[int64]bool, len(bySale))
	now := e.SaleTime() // as every instance reads it: whether the gate still serves a sale is shared
	for sale, idx := range bySale {
		// Not Sale: its shortcuts for invented ids may call a sale just
		// created on another instance none, and the claim must not be
		// skipped for a sale SQL has.
		s, err := e.loadSale(ctx, sale)
		switch {
		case seckill.ErrorCode(err) == seckill.ENotFound:
			continue // SQL refuses it
		case err != nil:
			return nil, nil, nil, fmt.Errorf("claim reservations of sale %d: %w", sale, err)
		case !gateServes(s, now):
			continue
		}
		claims := make([]seckill.Settled, len(idx))
		for j, i := range idx {
			claims[j] = seckill.Settled{UserID: reqs[i].UserID, Ticket: reqs[i].Ticket}
		}
		allowed, err := e.b.Gate.Claim(ctx, sale, claims)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("claim %d reservations of sale %d: %w", len(claims), sale, err)
		}
		claimed[sale] = true
		for j, i := range idx {
			refused[i] = !allowed[j]
		}
	}
	write = reqs[:0:0]
	for i, r := range reqs {
		if !refused[i] {
			write = append(write, r)
			continue
		}
		e.log.Warn("order refused: its reservation was released before it reached the queue",
			"sale", r.SaleID, "user", r.UserID, "ticket", r.Ticket)
		expired = append(expired, seckill.OrderResult{SaleID: r.SaleID, UserID: r.UserID, Result: seckill.Result{Ticket: r.Ticket, Status: seckill.ResultFailed, Reason: seckill.EExpired}})
	}
	return write, expired, claimed, nil
}

// settle tells the gate which reservations SQL has settled (by ticket), so
// the reconciler does not look at them, in the sales claimed at the gate
// (claim): a request SQL refused because its ticket is fenced (EExpired)
// is withdrawn instead (StockGate.Withdraw), since its unit is not SQL's:
// the reconciler that fenced it may have died before it withdrew it, or
// found it claimed, or (after a rebuild) installed under its ticket.
// Settling one sale's reservations twice is settling them once, and a
// withdrawn reservation is gone, so a retry redoes every sale.
func (e *Engine) settle(ctx context.Context, results []seckill.OrderResult, claimed map[int64]bool) error {
	bySale := map[int64][]seckill.Settled{}
	for _, r := range results {
		if !claimed[r.SaleID] {
			continue
		}
		st := seckill.Settled{UserID: r.UserID, Ticket: r.Ticket}
		if r.Status == seckill.ResultFailed && r.Reason == seckill.EExpired {
			ok, err := e.b.Gate.Withdraw(ctx, r.SaleID, r.UserID, r.Ticket)
			if err != nil {
				return fmt.Errorf("withdraw the fenced request of sale %d user %d: %w", r.SaleID, r.UserID, err)
			}
			if ok {
				e.unlearnBuyer(r.SaleID, r.UserID)
			}
			continue
		}
		bySale[r.SaleID] = append(bySale[r.SaleID], st)
	}
	for sale, settled := range bySale {
		if err := e.b.Gate.Settle(ctx, sale, settled); err != nil {
			return fmt.Errorf("settle %d reservations of sale %d: %w", len(settled), sale, err)
		}
	}
	return nil
}

// Drain writes batches until the queue holds nothing for any sale, or ctx
// ends. Use it with no admissions running (shutdown; Recover drains too).
func (e *Engine) Drain(ctx context.Context) error {
	return e.drain(ctx, true)
}

// drain is Drain, with the batches fenced or not (see writeBatch).
func (e *Engine) drain(ctx context.Context, fenced bool) error {
	for {
		n, err := e.b.Queue.Pending(ctx, 0)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := e.writeBatch(ctx, fenced); err != nil {
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
