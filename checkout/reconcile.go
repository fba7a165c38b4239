package checkout

import (
	"context"
	"time"

	"seckill"
)

// Reconcile finds reservations older than age that never became a queued
// request nor an order — their instance died between the gate and the
// queue — and releases them, so their units sell to someone else. It
// returns how many it released. Age should be well above PublishTimeout,
// so a publish still in flight is rarely taken for a lost one; it is no
// bound on how late a publish may land: the writer claims its requests'
// reservations at the gate before writing (StockGate.Claim; Stale no longer
// lists a claimed one, and Release leaves it alone), and refuses a request
// whose reservation was released here. Age is measured on the gate's clock
// (see StockGate.Stale), so instances whose clocks disagree agree on it.
func (e *Engine) Reconcile(ctx context.Context, age time.Duration) (int, error) {
	sales, err := e.gatedSales(ctx)
	if err != nil {
		return 0, err
	}
	released := 0
	for _, s := range sales {
		stale, err := e.b.Gate.Stale(ctx, s.ID, age)
		if err != nil || len(stale) == 0 {
			if err != nil {
				e.log.Warn("reconcile: stale reservations", "sale", s.ID, "err", err)
			}
			continue
		}
		// The queue first, then SQL: the writer commits and settles before
		// it acks, so a request is always in at least one of them when we
		// look, and one that left the queue without an order (SQL refused
		// it) was settled already: the Release below, which acts only on a
		// reservation still pending with its ticket, does nothing to it.
		queued, err := e.b.Queue.PendingRequests(ctx, s.ID)
		if err != nil {
			return released, err
		}
		inQueue := make(map[int64]bool, len(queued))
		for _, q := range queued {
			inQueue[q.UserID] = true
		}
		var settled []seckill.Settled
		for _, r := range stale {
			if inQueue[r.UserID] {
				continue // the writer will settle it
			}
			_, err := e.b.Orders.OrderBySaleUser(ctx, s.ID, r.UserID)
			switch seckill.ErrorCode(err) {
			case "":
				settled = append(settled, seckill.Settled{UserID: r.UserID, Ticket: r.Ticket}) // written; its settle was lost
				continue
			case seckill.ENotFound:
			default:
				return released, err
			}
			if err := e.b.Gate.Release(ctx, s.ID, r.UserID, r.Ticket); err != nil {
				return released, err
			}
			e.unlearnBuyer(s.ID, r.UserID)
			released++
			e.log.Warn("reconcile: released a reservation that never reached the queue",
				"sale", s.ID, "user", r.UserID, "ticket", r.Ticket, "at", r.At)
		}
		if len(settled) > 0 {
			if err := e.b.Gate.Settle(ctx, s.ID, settled); err != nil {
				return released, err
			}
		}
	}
	return released, nil
}

// RunReconciler reconciles every interval until ctx ends.
func (e *Engine) RunReconciler(ctx context.Context, every, age time.Duration) {
	tick(ctx, every, func() {
		if e.ready.Load() {
			e.reconcileOnce(ctx, age)
		}
	})
}

// reconcileOnce is one round of RunReconciler.
func (e *Engine) reconcileOnce(ctx context.Context, age time.Duration) {
	if err := e.repairQueue(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("repair the order queue", "err", err)
	}
	// A shared gate that lost a sale is rebuilt when a purchase finds
	// it missing, and here: after a sale sold out every purchase is
	// answered by the local sold-out flag and none would find it.
	e.maybeRebuild()
	if _, err := e.Reconcile(ctx, age); err != nil && ctx.Err() == nil {
		e.log.Error("reconcile", "err", err)
	}
	if err := e.ForgetEnded(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("forget ended sales", "err", err)
	}
	if n, err := e.RecheckQueued(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("recheck queued results", "err", err)
	} else if n > 0 {
		e.log.Warn("results found in SQL after their messages were lost", "results", n)
	}
}

// ForgetEnded drops from the gate every sale that ended over gateKeep ago,
// and this instance's results of it, so a long-running instance (or a
// shared gate) does not hold the buyers of every past sale. Nothing loads
// such a sale again (see gatedSales); its buyers' results then come from
// SQL (an order, or none: a refusal is no longer told apart). Each sale is
// looked at once per process.
func (e *Engine) ForgetEnded(ctx context.Context) error {
	sales, err := e.b.Sales.Sales(ctx)
	if err != nil {
		return err
	}
	now := e.now()
	for _, s := range sales {
		if gateServes(s, now) {
			continue
		}
		if _, done := e.forgotten.Load(s.ID); done {
			continue
		}
		_, loaded, err := e.b.Gate.Left(ctx, s.ID)
		if err != nil {
			return err
		}
		if loaded {
			if err := e.b.Gate.Forget(ctx, s.ID); err != nil {
				return err
			}
			e.log.Info("gate: dropped a sale that ended", "sale", s.ID, "ended", s.EndsAt)
		}
		e.results.forgetSale(s.ID)
		e.forgetBuyers(s.ID)
		e.forgotten.Store(s.ID, struct{}{})
	}
	return nil
}
