package checkout

import (
	"context"
	"sync/atomic"
	"time"

	"seckill"
)

// Reconcile finds reservations older than age that never became a queued
// request nor an order — their instance died between the gate and the
// queue — and releases them, so their units sell to someone else. It
// returns how many it released. Age must be well above PublishTimeout, so a
// publish still in flight is never mistaken for a lost one; it is measured
// on the gate's clock (see StockGate.Stale), so instances whose clocks
// disagree agree on it.
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
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !e.ready.Load() {
			continue
		}
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
		e.forgotten.Store(s.ID, struct{}{})
	}
	return nil
}

// repairQueue mends what a crash of the queue's server left behind (see
// seckill.QueueRepairer), so every request the queue holds reaches the
// writer; a no-op for queues that need no repair.
func (e *Engine) repairQueue(ctx context.Context) error {
	if r, ok := e.b.Queue.(seckill.QueueRepairer); ok {
		return r.Repair(ctx)
	}
	return nil
}

// rebuildLock names the lock of the instance that rebuilds the gate.
const rebuildLock = "gate-rebuild"

// maybeRebuild starts a rebuild of the gate's unloaded sales in the
// background, unless one is running on this instance. Only the instance
// that gets the lock rebuilds; the others keep answering EBusy until the
// sales are loaded again.
func (e *Engine) maybeRebuild() {
	if e.b.Locker == nil || !e.rebuilding.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.rebuilding.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.RebuildGate(ctx); err != nil {
			e.log.Error("gate rebuild", "err", err)
		}
	}()
}

// RebuildGate loads every sale the gate has lost (after a restart of a
// shared gate), holding the rebuild lock so one instance does it. It first
// waits out PublishTimeout so publishes admitted by the old gate have
// landed in the queue. With nothing to load, or without the lock, it
// returns nil at once.
func (e *Engine) RebuildGate(ctx context.Context) error {
	missing, err := e.unloadedSales(ctx)
	if err != nil || len(missing) == 0 {
		return err
	}
	release, ok, err := e.b.Locker.TryLock(ctx, rebuildLock, time.Minute)
	if err != nil || !ok {
		return err
	}
	defer func() { _ = release(context.WithoutCancel(ctx)) }()
	select {
	case <-time.After(e.cfg.PublishTimeout):
	case <-ctx.Done():
		return ctx.Err()
	}
	// Another instance may have finished a rebuild before we got the lock.
	if missing, err = e.unloadedSales(ctx); err != nil {
		return err
	}
	// The rebuild counts what the queue holds as on its way to SQL: make
	// sure the writer gets all of it.
	if err := e.repairQueue(ctx); err != nil {
		return err
	}
	loaded := 0
	for _, id := range missing {
		// A sale loaded meanwhile (CreateSale, or another instance after
		// our lease ran out) is not loaded again: Load never replaces a
		// live sale, so the lease costs time, not correctness.
		ok, err := e.loadGate(ctx, id)
		if err != nil {
			return err
		}
		if ok {
			loaded++
		}
	}
	if loaded > 0 {
		e.rebuilds.Add(1)
		e.log.Warn("gate rebuilt after losing its state", "sales", loaded)
	}
	return nil
}

// gateKeep is how long after its end a sale stays in the gate. Purchases
// of an ended sale are refused before they reach the gate, so meanwhile it
// only answers the admin's stats; past it, the sale's gate is neither
// rebuilt nor reconciled, and restarts and the reconciler's rounds do not
// grow with the catalogue's history.
const gateKeep = time.Hour

// gatedSales lists the sales the gate serves: those that have not ended,
// or ended less than gateKeep ago.
func (e *Engine) gatedSales(ctx context.Context) ([]*seckill.Sale, error) {
	sales, err := e.b.Sales.Sales(ctx)
	if err != nil {
		return nil, err
	}
	now := e.now()
	gated := sales[:0:0]
	for _, s := range sales {
		if gateServes(s, now) {
			gated = append(gated, s)
		}
	}
	return gated, nil
}

// gateServes reports whether the gate holds s at now: it has not ended,
// or ended less than gateKeep ago.
func gateServes(s *seckill.Sale, now time.Time) bool {
	return s.EndsAt.After(now.Add(-gateKeep))
}

// unloadedSales lists the sales the gate serves but does not hold.
func (e *Engine) unloadedSales(ctx context.Context) ([]int64, error) {
	sales, err := e.gatedSales(ctx)
	if err != nil {
		return nil, err
	}
	var missing []int64
	for _, s := range sales {
		_, loaded, err := e.b.Gate.Left(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		if !loaded {
			missing = append(missing, s.ID)
		}
	}
	return missing, nil
}

// recoverShared opens admission once the shared gate holds every sale,
// rebuilding what it lacks if this instance gets the lock.
func (e *Engine) recoverShared(ctx context.Context) error {
	for {
		if err := e.RebuildGate(ctx); err != nil {
			return err
		}
		missing, err := e.unloadedSales(ctx)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			e.ready.Store(true)
			return nil
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// rebuildCounter counts completed rebuilds (for tests and metrics).
type rebuildCounter = atomic.Int64
