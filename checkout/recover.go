package checkout

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"seckill"
)

// Recover brings the engine to a state where it may admit: it drains the
// queue into SQL, rebuilds the gate of every sale it serves (all but those
// ended over gateKeep ago) from SQL plus whatever is still queued, and only
// then opens admission.
//
// With a shared gate (Backends.Locker set) other instances may be admitting
// meanwhile, so nothing is drained or unloaded: only the sales the gate
// lacks are loaded, by whichever instance holds the rebuild lock, and this
// one waits until they are.
func (e *Engine) Recover(ctx context.Context) error {
	e.ready.Store(false)
	// The pay deadlines the writer stamps are on the shared clock: learn
	// how far it is from this instance's before writing any.
	if _, err := e.sharedNow(ctx); err != nil {
		return fmt.Errorf("read the shared clock: %w", err)
	}
	if e.b.Locker != nil {
		return e.recoverShared(ctx)
	}
	// Unfenced: the gate of this process is empty (its state died with
	// the last one, released tickets included) and is rebuilt from SQL
	// below, so there is nothing to claim against; the drain checks the
	// releases SQL records instead.
	if err := e.drain(ctx, false); err != nil {
		return err
	}
	if err := e.b.Gate.Unload(ctx); err != nil {
		return err
	}
	sales, err := e.gatedSales(ctx)
	if err != nil {
		return err
	}
	for _, s := range sales {
		// Nothing else loads while admission is closed, but a sale
		// created meanwhile is loaded by CreateSale: either load will do.
		if _, err := e.loadGate(ctx, s.ID); err != nil {
			return err
		}
	}
	e.log.Info("gate rebuilt", "sales", len(sales))
	e.ready.Store(true)
	return nil
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

// maybeRebuild starts a rebuild of the gate's unloaded sales in the
// background, unless one is running on this instance. Only the instance
// that gets the lock rebuilds; the others keep answering EBusy until the
// sales are loaded again. Without a Locker (the in-process gate, this
// instance's alone) it rebuilds without one: a sale is missing there only
// when its load at creation failed.
func (e *Engine) maybeRebuild() {
	e.rebuildMu.Lock()
	wait := time.Now().Before(e.rebuildAfter)
	e.rebuildMu.Unlock()
	if wait || !e.rebuilding.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.rebuilding.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := e.RebuildGate(ctx)
		e.rebuildMu.Lock()
		defer e.rebuildMu.Unlock()
		if err == nil {
			e.rebuildFails, e.rebuildAfter = 0, time.Time{}
			return
		}
		e.rebuildFails++
		again := min(rebuildRetryFirst<<min(e.rebuildFails-1, 8), rebuildRetryMost)
		e.rebuildAfter = time.Now().Add(again)
		e.log.Error("gate rebuild", "err", err, "failed_in_a_row", e.rebuildFails, "retry_in", again)
	}()
}

// A failed rebuild waits rebuildRetryFirst before the next may start,
// twice as long after each failure in a row, up to rebuildRetryMost:
// every purchase answered busy asks for one, and against a database
// that is down they were tried (and logged) 150 times a second per
// instance (found by review).
const (
	rebuildRetryFirst = 100 * time.Millisecond
	rebuildRetryMost  = 2 * time.Second
)

// rebuildLock names the lock of the instance that rebuilds the gate.
const rebuildLock = "gate-rebuild"

// rebuildLease is how long the rebuild lock holds unless its holder
// extends it, which it does every rebuildExtend while it rebuilds. Short,
// because the lock is only an economy (a load is fenced by the gate's
// claim on the sale, so two rebuilds at once are safe): an instance killed
// while holding it stalls the lost sales' purchases (503) for at most this
// long. It was 15 s, not extended, so that a long rebuild kept it: a
// compound-fault review saw 40 s of 503s after an instance died holding
// it while other faults went on.
const (
	rebuildLease  = 5 * time.Second
	rebuildExtend = time.Second
)

// RebuildGate loads every sale the gate has lost (after a restart of a
// shared gate), holding the rebuild lock so one instance does it (without
// a Locker, the gate is this instance's: no lock). With a lock it first
// waits out PublishTimeout so publishes admitted by the old gate have
// landed in the queue; the in-process gate loses no sale it admitted for
// (a sale is missing there when its load at creation failed), so there
// is nothing to wait for. With nothing to load, or without the lock, it
// returns nil at once.
func (e *Engine) RebuildGate(ctx context.Context) error {
	missing, err := e.unloadedSales(ctx)
	if err != nil || len(missing) == 0 {
		return err
	}
	if e.b.Locker != nil {
		lease, ok, err := e.b.Locker.TryLock(ctx, rebuildLock, rebuildLease)
		if err != nil || !ok {
			return err
		}
		defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
		defer keepExtending(ctx, lease)()
		select {
		case <-time.After(e.cfg.PublishTimeout):
		case <-ctx.Done():
			return ctx.Err()
		}
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

// keepExtending extends lease to rebuildLease every rebuildExtend until
// the returned function is called (or a lost lease stops it: the rebuild
// goes on, safe with another one at once).
func keepExtending(ctx context.Context, lease seckill.Lease) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(rebuildExtend)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if ok, err := lease.Extend(ctx, rebuildLease); err == nil && !ok {
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
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

// loadGate loads the gate of one sale it does not hold (see gateState)
// and reports whether it did: false when the sale is loaded already, or
// when another load (or a loss of the gate's state) overtook this one.
func (e *Engine) loadGate(ctx context.Context, saleID int64) (bool, error) {
	loaded, err := e.b.Gate.Load(ctx, saleID, func(ctx context.Context) (seckill.GateContents, error) {
		return e.gateState(ctx, saleID)
	})
	if loaded {
		// A gate rebuilt from SQL and the queue may not hold everyone
		// this instance knew as a buyer (one SQL refused is none); those
		// with an order are buyers for good, and stay known (found by
		// review: forgotten too, with the read failing on a database
		// that was down, 40-50 of 50 winners were told 410 here). What
		// else it knows comes again from a new read of the sale's buyers,
		// before the sold-out flag answers (found by review: the read
		// stayed done from before, the flag went up knowing nobody, and
		// every winner was told 410 here until a restart).
		e.forgetForRebuild(saleID)
		e.rereadBuyers(saleID)
	}
	return loaded, err
}

// gateState is a sale's gate as SQL and the queue show it: SQL stock_left
// less the requests still queued, with the buyers of SQL, and the queued
// requests under their tickets (GateContents.Queued). The queue is read
// first: a request the writer moves into SQL meanwhile then shows up in
// both and counts once, and none can slip between the two reads. SQL's
// stock_left and buyers come from one snapshot: read apart, a batch
// committed in between would count its buyers as sold while leaving their
// units in stock_left, and the gate would sell them again. The gate calls
// it only after claiming the sale (StockGate.Load), so nothing it misses
// was admitted by the gate being loaded.
//
// With a lifecycle store the same snapshot lists the sale's cancelled
// orders: their units are in stock_left, so the gate is loaded with them
// as returned already, and the relay's later Return of each is a no-op
// (a unit cancelled after the snapshot is in neither, and the relay gives
// it back once).
func (e *Engine) gateState(ctx context.Context, saleID int64) (seckill.GateContents, error) {
	var c seckill.GateContents
	queued, err := e.b.Queue.PendingRequests(ctx, saleID)
	if err != nil {
		return c, err
	}
	if lc := e.lifecycle(); lc != nil {
		c.Left, c.Buyers, c.Returned, err = lc.SaleSnapshotWithReturns(ctx, saleID)
	} else {
		c.Left, c.Buyers, err = e.b.Orders.SaleSnapshot(ctx, saleID)
	}
	if err != nil {
		return c, err
	}
	// A queued request whose ticket SQL has fenced (the reconciler
	// released its reservation, and its publish landed late) holds no
	// unit: SQL never writes it (OrderStore.FenceTicket), and its unit
	// was given back and may have been sold since. Read after the queue,
	// so a fence recorded in between is seen; one recorded after this read
	// finds the request installed under its ticket, and Withdraw gives its
	// unit back.
	fenced, err := e.b.Orders.FencedTickets(ctx, saleID)
	if err != nil {
		return c, err
	}
	seen := make(map[int64]bool, len(c.Buyers)+len(queued))
	for _, u := range c.Buyers {
		seen[u] = true
	}
	for _, q := range queued {
		if fenced[q.Ticket] {
			continue
		}
		c.Queued = append(c.Queued, seckill.Settled{UserID: q.UserID, Ticket: q.Ticket})
		if !seen[q.UserID] {
			seen[q.UserID] = true
			c.Left--
		}
	}
	c.Left = max(c.Left, 0)
	return c, nil
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
	now := e.SaleTime() // on the shared clock, as ForgetEnded: what one loads, no other drops
	gated := sales[:0:0]
	for _, s := range sales {
		if gateServes(s, now) {
			gated = append(gated, s)
		}
	}
	return gated, nil
}

// gateServes reports whether the gate holds s at now: it has not ended,
// or ended less than gateKeep ago. now is on the shared clock (SaleTime):
// the gate is shared, and what one instance loads no other may drop.
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

// rebuildCounter counts completed rebuilds (for tests and metrics).
type rebuildCounter = atomic.Int64
