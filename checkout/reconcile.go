package checkout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"seckill"
)

// Reconcile finds reservations older than age that never became a queued
// request nor an order — their instance died between the gate and the
// queue — and releases them, so their units sell to someone else. It
// returns how many it released. Age should be well above PublishTimeout,
// so a publish still in flight is rarely taken for a lost one; it is no
// bound on how late a publish may land: SQL judges between the release and
// the request. Each release is first recorded in SQL as a fence of its
// ticket (OrderStore.FenceTicket), which fails if the request's order was
// written first; once the fence is in, SQL never writes that request,
// whenever it lands, and only then is its unit given back (withdraw). A
// process that dies in between leaves the reservation at the gate, where
// the next round finds it again, or its request in the queue, which the
// writer refuses and withdraws itself. Age is measured on the gate's clock
// (see StockGate.Stale), so instances whose clocks disagree agree on it.
//
// A reservation is released only when a call of Reconcile at least
// PublishTimeout before this one (on this process's monotonic clock) found
// it stale too. The purchase that made it began before that first sighting,
// so by the release its publish deadline (PublishTimeout from just before
// the reservation, on the purchasing process's monotonic clock: Admit) has
// passed on any clock that runs at the rate of ours: its request is in the
// queue, or its buyer was not answered 202. Without this, a forward step of
// the gate's clock (an NTP step on the Redis host) larger than age, landing
// while a purchase waits for its acknowledgement, would have a reservation
// released whose 202 then ends failed (I3).
func (e *Engine) Reconcile(ctx context.Context, age time.Duration) (int, error) {
	sales, err := e.gatedSales(ctx)
	if err != nil {
		return 0, err
	}
	e.staleMu.Lock()
	defer e.staleMu.Unlock()
	released := 0
	e.forgetStaleSeen(sales)
	var errs []error
	for _, s := range sales {
		// A sale whose round fails (its gate being rebuilt, SQL refusing a
		// fence) keeps its reservations for the next round; the other
		// sales' rounds go on.
		n, err := e.reconcileSale(ctx, s.ID, age)
		released += n
		if err != nil {
			errs = append(errs, fmt.Errorf("sale %d: %w", s.ID, err))
		}
	}
	return released, errors.Join(errs...)
}

// reconcileSale is Reconcile's round of one sale. Called with staleMu held.
func (e *Engine) reconcileSale(ctx context.Context, saleID int64, age time.Duration) (released int, err error) {
	stale, err := e.b.Gate.Stale(ctx, saleID, age)
	// Read after Stale answered: each reservation it lists existed by now.
	seenAt := time.Now()
	if err != nil {
		e.log.Warn("reconcile: stale reservations", "sale", saleID, "err", err)
		return 0, nil
	}
	seen := e.sightings(saleID, stale, seenAt)
	if len(stale) == 0 {
		return 0, nil
	}
	// The queue first, then SQL: the writer commits and settles before
	// it acks, so a request is always in at least one of them when we
	// look, and one that left the queue without an order (SQL refused
	// it) was settled already: the Release below, which acts only on a
	// reservation still pending with its ticket, does nothing to it.
	queued, err := e.b.Queue.PendingRequests(ctx, saleID)
	if err != nil {
		return 0, err
	}
	inQueue := make(map[int64]bool, len(queued))
	for _, q := range queued {
		inQueue[q.UserID] = true
	}
	var settled []seckill.Settled
	// What was found written is settled even when a later reservation's
	// look-up or withdrawal fails.
	defer func() {
		if len(settled) == 0 {
			return
		}
		if serr := e.b.Gate.Settle(ctx, saleID, settled); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	for _, r := range stale {
		if inQueue[r.UserID] {
			continue // the writer will settle it
		}
		_, err := e.b.Orders.OrderBySaleUser(ctx, saleID, r.UserID)
		switch seckill.ErrorCode(err) {
		case "":
			settled = append(settled, seckill.Settled{UserID: r.UserID, Ticket: r.Ticket}) // written; its settle was lost
			continue
		case seckill.ENotFound:
		default:
			return released, err
		}
		if seenAt.Sub(seen[staleKey{r.UserID, r.Ticket}]) < e.staleWait {
			continue // seen stale first this round, or not long enough ago: its publish may be in flight
		}
		fenced, ok, err := e.withdraw(ctx, saleID, r.UserID, r.Ticket)
		if err != nil {
			return released, err
		}
		if !fenced {
			settled = append(settled, seckill.Settled{UserID: r.UserID, Ticket: r.Ticket}) // written since we looked
			continue
		}
		if ok {
			released++
			e.log.Warn("reconcile: released a reservation that never reached the queue",
				"sale", saleID, "user", r.UserID, "ticket", r.Ticket, "at", r.At)
		}
	}
	return released, nil
}

// staleKey is one reservation of a sale.
type staleKey struct {
	user   int64
	ticket string
}

// sightings records when each of a sale's stale reservations was first seen
// stale (at, for those new in this list), forgets those no longer listed
// (queued, written, released, or renewed under a new ticket), and returns
// the sale's record. Called with staleMu held.
func (e *Engine) sightings(saleID int64, stale []seckill.Reservation, at time.Time) map[staleKey]time.Time {
	before := e.staleSeen[saleID]
	now := make(map[staleKey]time.Time, len(stale))
	for _, r := range stale {
		k := staleKey{r.UserID, r.Ticket}
		if first, ok := before[k]; ok {
			now[k] = first
		} else {
			now[k] = at
		}
	}
	if len(now) == 0 {
		delete(e.staleSeen, saleID)
	} else {
		e.staleSeen[saleID] = now
	}
	return now
}

// forgetStaleSeen drops the sightings of sales the gate no longer serves.
// Called with staleMu held.
func (e *Engine) forgetStaleSeen(gated []*seckill.Sale) {
	if len(e.staleSeen) == 0 {
		return
	}
	keep := make(map[int64]bool, len(gated))
	for _, s := range gated {
		keep[s.ID] = true
	}
	for id := range e.staleSeen {
		if !keep[id] {
			delete(e.staleSeen, id)
		}
	}
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
// and this instance's results, known buyers, sold-out flag and admission
// bucket of it, so a long-running instance (or a
// shared gate) does not hold the buyers of every past sale. Nothing loads
// such a sale again (see gatedSales); its buyers' results then come from
// SQL (an order, or none: a refusal is no longer told apart). Each sale is
// looked at once per process.
func (e *Engine) ForgetEnded(ctx context.Context) error {
	sales, err := e.b.Sales.Sales(ctx)
	if err != nil {
		return err
	}
	now := e.SaleTime() // on the shared clock: the gate is shared, so is when a sale leaves it
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
		// Forgotten even when another instance dropped it already: a
		// shared gate's client keeps a little of every sale it touched
		// (rdb.Gate.Forget), on each instance.
		if err := e.b.Gate.Forget(ctx, s.ID); err != nil {
			return err
		}
		if loaded {
			e.log.Info("gate: dropped a sale that ended", "sale", s.ID, "ended", s.EndsAt)
		}
		// Marked first: a result heard from now on keeps nothing of the
		// sale, and one heard before the mark, whose buyer or outcome is
		// kept after the mark, is dropped below or by its hearer
		// (learnHeard, resultArrived). Marked last, a result heard in
		// between made a set no later round dropped (found in CI).
		e.forgotten.Store(s.ID, struct{}{})
		e.results.forgetSale(s.ID)
		e.forgetBuyers(s.ID)
		// What admission keeps per sale: purchases of the sale are
		// refused by its window now, so neither comes back.
		e.soldOut.Delete(s.ID)
		e.admits.Delete(s.ID)
		e.viewLefts.Delete(s.ID)
		e.forgetSeed(s.ID) // after the mark: a read of its buyers under way drops its own
	}
	return nil
}

// withdraw releases the user's reservation with ticket, which will never
// become an order, and reports whether SQL fenced the ticket and whether
// the gate gave the unit back now. SQL judges first: the fence is recorded
// unless the request's order is in SQL already (fenced false: the
// reservation is to be settled instead), and from then on SQL refuses to
// write the request, wherever it is. Only then does the gate give the unit
// back, claimed by the writer or not (StockGate.Withdraw): a request the
// writer holds now fails in SQL. A withdrawal that does not happen (this
// process dies, the gate fails) leaves the reservation to a later round,
// or to the writer, which withdraws every fenced request it is handed
// (writeBatch); the fence is recorded again harmlessly.
func (e *Engine) withdraw(ctx context.Context, saleID, userID int64, ticket string) (fenced, withdrawn bool, err error) {
	if fenced, err = e.b.Orders.FenceTicket(ctx, saleID, userID, ticket); err != nil || !fenced {
		return fenced, false, err
	}
	withdrawn, err = e.b.Gate.Withdraw(ctx, saleID, userID, ticket)
	if withdrawn {
		e.unlearnBuyer(saleID, userID)
	}
	return true, withdrawn, err
}
