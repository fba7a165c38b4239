package checkout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"seckill"
	"seckill/payment"
)

// The order lifecycle after the writer: a buyer cancels, the sweeper
// cancels what is past its deadline, an admin refunds a paid order
// (refund.go), and the relay gives each unit cancelled or refunded back to
// the gate exactly once.
//
// A cancel is one SQL transaction (CancelOrder; the sweeper's
// CancelExpired takes a page of orders in one): the order moves
// pending_payment → cancelled, stock_left gains the unit and the stock
// ledger gains a +1 row not yet applied to the gate. The relay then reads
// those rows (UnappliedReturns), gives each unit to the gate by order id
// (StockGate.Return, a no-op the second time) and marks the rows applied.
// A crash anywhere in between leaves rows unapplied, which the next relay
// applies, on any instance: no unit is lost, none is doubled. A refund
// (RefundOrder) writes its +1 row the same way. A gate rebuilt from SQL is
// loaded with the cancelled and refunded orders as returned already
// (gateState), so their rows are no-ops too.

// sweepBatch bounds the orders one sweep reads at once, and the returns
// one relay round applies.
const sweepBatch = 500

// lifecycle returns the orders store's lifecycle, nil if it has none.
func (e *Engine) lifecycle() seckill.OrderLifecycle {
	lc, _ := e.b.Orders.(seckill.OrderLifecycle)
	return lc
}

// payBy is the pay deadline of an order written now: PayWindow on the
// shared clock the sweeper and Pay compare deadlines on, not on this
// instance's own (whose clock may be off), from the skew the readings of
// the shared clock found (the sweeper reads it every round), so the
// writer pays no extra round trip for it.
func (e *Engine) payBy() time.Time {
	return e.SaleTime().Add(e.cfg.PayWindow).UTC()
}

// noLifecycle is the error of a lifecycle call on a store without one.
func noLifecycle(code string) error {
	return seckill.Errorf(code, "orders do not move on this store")
}

// Cancel cancels the user's pending order at their request: the unit
// returns to SQL stock and, through the relay, to the gate for other
// buyers; the user stays a buyer of the sale. It returns the cancelled
// order. Errors: ENotFound if there is no such order or it is someone
// else's; ENotCancellable if it is not pending payment (paid, cancelled
// already, refunded).
func (e *Engine) Cancel(ctx context.Context, userID, orderID int64) (*seckill.Order, error) {
	lc := e.lifecycle()
	if lc == nil {
		return nil, noLifecycle(seckill.ENotCancellable)
	}
	now, err := e.sharedNow(ctx)
	if err != nil {
		return nil, fmt.Errorf("cancel order %d: %w", orderID, err)
	}
	o, err := lc.CancelOrder(ctx, orderID, userID, now, false)
	if err != nil {
		return nil, err
	}
	e.afterCancel(ctx, o)
	return o, nil
}

// afterCancel does what follows a cancel's commit: relay the unit to the
// gate (best effort: the sweeper's next relay retries it), then
// announceCancel, whose close may wait on a slow provider.
func (e *Engine) afterCancel(ctx context.Context, o *seckill.Order) {
	if _, err := e.RelayReturns(ctx); err != nil {
		e.log.Warn("relay stock returns", "err", err)
	}
	e.announceCancel(ctx, o)
}

// announceCancel closes the payment of a cancelled order at the provider
// if it was opened, so the buyer can no longer pay it (a payment that gets
// through anyway is refunded when its notification comes), and tells the
// buyer. Both are best effort. An order never opened has no trade to
// close: asking the provider would only cost the buyer a round trip.
func (e *Engine) announceCancel(ctx context.Context, o *seckill.Order) {
	if o.PayOpened {
		e.closePayment(ctx, o)
	}
	e.publishStatus(ctx, o)
}

// closeTimeout bounds one ClosePayment.
const closeTimeout = 5 * time.Second

// closePayment closes the payment of the cancelled order o at the
// provider, best effort. A provider that answers the trade was paid has
// taken the buyer's money, and its notification may never come (the shop
// was down through all its resends, or it went astray): the trade is
// looked up and applied here as that notification would have been, which
// for a cancelled order records the refund due and makes it.
func (e *Engine) closePayment(ctx context.Context, o *seckill.Order) {
	if e.b.Payments == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, closeTimeout)
	err := e.b.Payments.ClosePayment(cctx, o.OrderNo)
	cancel()
	switch {
	case err == nil || errors.Is(err, payment.ErrNotFound):
	case errors.Is(err, payment.ErrTradePaid):
		e.applyPaidTrade(ctx, o)
	default:
		e.log.Warn("close the payment of a cancelled order", "order", o.ID, "err", err)
	}
}

// applyPaidTrade asks the provider for the trade of o, which it said was
// paid, and applies it (ReconcilePayment): on a cancelled order the money
// goes back; a notification arriving as well is a replay. Best effort,
// within closeTimeout: an admin's reconcile-payment does the same later.
func (e *Engine) applyPaidTrade(ctx context.Context, o *seckill.Order) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	after, err := e.ReconcilePayment(rctx, o.ID)
	if err != nil {
		e.log.Error("the provider says the trade of an order was paid, and it could not be applied: reconcile its payment",
			"order", o.ID, "err", err)
		return
	}
	e.log.Warn("the provider says the trade of an order was paid before its notification came; applied",
		"order", o.ID, "status", after.Status)
}

// closeBacklog bounds the swept orders whose payments wait for the closer;
// past it a close is skipped (it is best effort: a payment that gets
// through is refunded). Only orders whose payment was opened take a
// place (Sweep), so a sale whose buyers mostly never opened the pay page
// does not fill it with closes of trades that do not exist.
const closeBacklog = 4096

// closeLater hands the payment of a swept order to the closer, a goroutine
// of the engine that closes them one at a time, so that a provider that
// answers slowly or not at all (each close waits up to closeTimeout) holds
// up no sweep: orders expiring meanwhile are cancelled on time. It reports
// false when the closer's backlog is full and the payment stays open.
func (e *Engine) closeLater(o *seckill.Order) bool {
	if e.b.Payments == nil {
		return true
	}
	e.closerOnce.Do(func() {
		e.closeQ = make(chan *seckill.Order, closeBacklog)
		go e.closer()
	})
	select {
	case e.closeQ <- o:
		return true
	default:
		return false
	}
}

// closer closes the payments closeLater queued until the engine closes.
func (e *Engine) closer() {
	for {
		select {
		case <-e.stopped:
			return
		case o := <-e.closeQ:
			e.closePayment(context.Background(), o)
		}
	}
}

// publishStatus tells the buyer, on whichever instance holds their
// socket, that o moved. Best effort: the order list shows it anyway. The
// move is made, so it is told even when ctx ended meanwhile (a sweep round
// cut at roundLimit); the publish does not wait for receivers.
func (e *Engine) publishStatus(ctx context.Context, o *seckill.Order) {
	if err := e.b.Bus.PublishResults(context.WithoutCancel(ctx), []seckill.OrderResult{seckill.OrderStatusMessage(o)}); err != nil {
		e.log.Warn("publish an order's status", "order", o.ID, "status", o.Status, "err", err)
	}
}

// Sweep cancels every order past its pay deadline on the shared clock,
// in pages read through the (status, deadline) index, then relays the
// units to the gate. A page's orders are cancelled together
// (CancelExpired): those without an opened payment first, then those the
// provider says to cancel. Any number of instances may sweep at once:
// each cancel is a conditional move on the order's status, and an order
// another sweeper (or a payment, or its buyer) moved first is skipped. An order whose buyer
// opened a payment is asked of the provider first (askProvider); one the
// provider cannot tell about yet stays for a later sweep, and the pages
// go on past it. It returns how many orders this call cancelled.
func (e *Engine) Sweep(ctx context.Context) (int, error) {
	now, err := e.sharedNow(ctx) // also keeps SaleTime on the shared clock
	if err != nil && e.lifecycle() != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	return e.sweepAt(ctx, now)
}

// sweepAt is Sweep at now, read on the shared clock.
func (e *Engine) sweepAt(ctx context.Context, now time.Time) (int, error) {
	lc := e.lifecycle()
	if lc == nil {
		return 0, nil
	}
	cancelled := 0
	var done []*seckill.Order
	asks := e.newAskRound()
	// The buyers are told after the units are back, and the provider by
	// the closer: a slow or down provider must hold up neither the
	// cancels nor the next sweeps. Only opened payments are closed: the
	// others have no trade at the provider.
	defer func() {
		asks.report(e.log)
		open, first, last := 0, int64(0), int64(0)
		for _, o := range done {
			e.publishStatus(ctx, o)
			if o.PayOpened && !e.closeLater(o) {
				if open++; open == 1 {
					first = o.ID
				}
				last = o.ID
			}
		}
		if open > 0 {
			// One line per sweep: a sale of 50,000 unpaid orders lapsing
			// at once would otherwise log tens of thousands.
			e.log.Warn("too many payments to close; these stay open (a payment that gets through is refunded)",
				"orders", open, "first", first, "last", last)
		}
	}()
	// A page's orders are cancelled in one call (a transaction per few
	// hundred), not one transaction each: one per order gave back ~350
	// units/s over three instances on PostgreSQL.
	cancel := func(refs []seckill.OrderRef) error {
		if len(refs) == 0 {
			return nil
		}
		ids := make([]int64, len(refs))
		for i, r := range refs {
			ids[i] = r.ID
		}
		// Those paid or cancelled since they were read are skipped.
		os, err := lc.CancelExpired(ctx, ids, now)
		cancelled += len(os)
		done = append(done, os...)
		if err != nil {
			return fmt.Errorf("sweep: cancel %d orders: %w", len(ids), err)
		}
		return nil
	}
	var after seckill.OrderRef
	relayed, relayWarned := 0, false // cancelled when the units were last relayed
	for {
		refs, err := lc.ExpiredOrders(ctx, now, after, sweepPage)
		if err != nil {
			return cancelled, fmt.Errorf("sweep: %w", err)
		}
		if len(refs) == 0 {
			break
		}
		after = refs[len(refs)-1]
		// Those without a payment first: no question to the provider
		// holds their units up (found by review: behind a page of opened
		// orders and a provider answering in 0.3 s, units came back 52 s
		// late).
		var plain, opened []seckill.OrderRef
		for _, r := range refs {
			if r.PayOpened && e.b.Payments != nil {
				opened = append(opened, r)
			} else {
				plain = append(plain, r)
			}
		}
		if err := cancel(plain); err != nil {
			return cancelled, err
		}
		verdicts := e.askProvider(ctx, opened, asks)
		var lapsed []seckill.OrderRef
		for i, r := range opened {
			// Not told, and past the grace: cancelled as before.
			if verdicts[i] == tradeNone || verdicts[i] == tradeUnknown && !now.Before(r.PayDeadline.Add(sweepAskGrace)) {
				lapsed = append(lapsed, r)
			}
		}
		if err := cancel(lapsed); err != nil {
			return cancelled, err
		}
		if cancelled > relayed {
			// The page's units go on sale now, not after the last page
			// (a review saw 25,000 lapsed units reach the gate only once
			// all were cancelled). A failure here is retried below.
			// The wait is bounded (sweepRelayWait): a gate that hangs
			// must not hold up the next pages' cancels in SQL (found by
			// review: with the gate's Redis not answering, 4,903 lapsed
			// orders stayed pending ~37 s, a page per relay timeout).
			// The round goes on without us; the relay after the last
			// page waits for one.
			relayed = cancelled
			rctx, cancelWait := context.WithTimeout(ctx, sweepRelayWait)
			_, err := e.RelayReturns(rctx)
			cancelWait()
			if err != nil && ctx.Err() == nil && !relayWarned {
				relayWarned = true // one line a sweep
				e.log.Warn("relay the swept units", "err", err)
			}
		}
		if len(refs) < sweepPage {
			break
		}
	}
	// Bounded too (sweepFinalRelayWait): the next sweep waits for this
	// one, and a hung gate held it a relay round's timeout and its retry
	// (found by review: the gate's Redis paused, 226 of 5,000 lapsed
	// orders cancelled, the rest left pending ~25 s, until it answered).
	// A round not ended by then goes on for the others; its rows stay in
	// the outbox until one ends.
	rctx, cancelWait := context.WithTimeout(ctx, sweepFinalRelayWait)
	defer cancelWait()
	if _, err := e.RelayReturns(rctx); err != nil && (ctx.Err() != nil || rctx.Err() == nil) {
		return cancelled, err
	} else if err != nil {
		e.log.Warn("relay the swept units: still under way", "waited", sweepFinalRelayWait)
	}
	return cancelled, nil
}

// sweepPage is how many expired orders Sweep reads at once (a variable
// for tests).
var sweepPage = sweepBatch

// sweepRelayWait bounds how long Sweep waits for the relay after each page
// before it cancels the next (a variable for tests).
var sweepRelayWait = time.Second

// sweepFinalRelayWait bounds how long Sweep waits for the relay after its
// last page (a variable for tests).
var sweepFinalRelayWait = 5 * time.Second

// What the sweeper asks the provider about an opened payment before it
// cancels the order: at most sweepAskers at once, each for up to
// sweepAskTimeout, all of a sweep's within sweepAskBudget. An order the
// provider could not tell about (down, slow, refusing, or the budget
// spent) waits for a later sweep until sweepAskGrace past its deadline;
// past it, one not told is cancelled as before (money that gets through
// is refunded). A failed ask makes this instance ask nothing for
// sweepAskBackoff, so a provider that hangs costs the sweeps little.
const (
	sweepAskers     = 16
	sweepAskTimeout = 3 * time.Second
	sweepAskBudget  = 2 * time.Second
	sweepAskBackoff = 5 * time.Second
	sweepAskGrace   = 30 * time.Second
)

// tradeVerdict is what the provider said of an expired order's payment.
type tradeVerdict int8

const (
	tradeNone      tradeVerdict = iota // no trade, not paid, or not this order's: cancel
	tradePaid                          // paid: applied, the order is paid (or refund due)
	tradeUnknown                       // not told: asked again at a later sweep
	tradeUnapplied                     // paid, but the payment could not be applied now (the database is away): not cancelled, asked again
)

// askRound is one sweep's questions to the provider: its budget, and
// what came of them, for one log line.
type askRound struct {
	until                      time.Time // no new question after this
	applied, deferred, refused atomic.Int64
	failure                    atomic.Pointer[error] // the first failed question
}

func (e *Engine) newAskRound() *askRound {
	return &askRound{until: time.Now().Add(sweepAskBudget)}
}

// report logs what the round's questions did, in a line or two.
func (r *askRound) report(log *slog.Logger) {
	if n := r.applied.Load(); n > 0 {
		log.Warn("sweep: expired orders had been paid before their deadline and their notifications had not come; applied", "orders", n)
	}
	if n := r.refused.Load(); n > 0 {
		log.Warn("sweep: the provider's trades of expired orders could not be applied to them (an amount that differs?); cancelled", "orders", n)
	}
	if err := r.failure.Load(); err != nil {
		log.Warn("sweep: the provider cannot tell whether expired orders were paid; they wait for it up to "+sweepAskGrace.String()+" past their deadline",
			"orders", r.deferred.Load(), "err", *err)
	}
}

// askProvider asks the provider about the payment of each order of refs
// (all opened) and applies a paid one as its notification would have: a
// buyer who paid in time keeps the order even when the notification is
// late. The notification goes to the instance that opened the payment
// (without --public-url), and while that instance is down the provider
// cannot deliver it; before, the sweeper then cancelled the order at its
// deadline and the payment, made well before it, was refunded (found by
// review: 283 of 900 payers lost their orders to one killed instance). It
// returns a verdict per ref.
func (e *Engine) askProvider(ctx context.Context, refs []seckill.OrderRef, round *askRound) []tradeVerdict {
	verdicts := make([]tradeVerdict, len(refs))
	sem := make(chan struct{}, sweepAskers)
	var wg sync.WaitGroup
	for i, r := range refs {
		if time.Now().After(round.until) || time.Now().UnixNano() < e.askDownUntil.Load() {
			verdicts[i] = tradeUnknown
			round.deferred.Add(1)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			verdicts[i] = e.askTrade(ctx, r, round)
		})
	}
	wg.Wait()
	return verdicts
}

// askTrade asks the provider about r's payment and applies a success.
func (e *Engine) askTrade(ctx context.Context, r seckill.OrderRef, round *askRound) tradeVerdict {
	// Past the round's budget, a question still gets half its own time.
	deadline := time.Now().Add(sweepAskTimeout)
	if late := round.until.Add(sweepAskTimeout / 2); late.Before(deadline) {
		deadline = late
	}
	qctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	t, err := e.b.Payments.QueryPayment(qctx, r.OrderNo)
	switch {
	case errors.Is(err, payment.ErrNotFound):
		return tradeNone
	case err != nil:
		if ctx.Err() == nil {
			e.askDownUntil.Store(time.Now().Add(sweepAskBackoff).UnixNano())
			round.failure.CompareAndSwap(nil, &err)
		}
		round.deferred.Add(1)
		return tradeUnknown
	case t.Status != payment.TradeSuccess && t.Status != payment.TradeFinished:
		return tradeNone
	}
	_, err = e.applyPayment(ctx, seckill.Payment{
		OrderNo: t.OutTradeNo, TradeNo: t.TradeNo, AmountCents: t.AmountCents, TradeStatus: string(t.Status),
		PaidAt: t.PaidAt,
	})
	switch {
	case err == nil:
		round.applied.Add(1)
		return tradePaid
	case seckill.ErrorCode(err) == seckill.EBusy || ctx.Err() != nil:
		// The database is away (a lost connection, busy): not a verdict
		// on the trade, which the provider says is paid. The order is not
		// cancelled, grace or not: a later sweep applies the payment.
		round.failure.CompareAndSwap(nil, &err)
		round.deferred.Add(1)
		return tradeUnapplied
	case seckill.ErrorCode(err) != seckill.EInternal:
		// The trade cannot be this order's payment (another amount): the
		// order lapses, as a notification of it would have been refused.
		round.refused.Add(1)
		return tradeNone
	default:
		round.failure.CompareAndSwap(nil, &err)
		round.deferred.Add(1)
		return tradeUnknown
	}
}

// RunSweeper sweeps (Sweep), relays returns and retries refunds every
// interval until ctx ends. Run it on every instance: one at a time sweeps
// and one at a time retries refunds (turns), and an instance that is gone
// leaves its orders to the others. The refunds go round on their own: a
// provider that answers slowly or not at all must not hold up the sweeps.
func (e *Engine) RunSweeper(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rounds turns
		tick(ctx, every, func() {
			rounds.take(ctx, e, refundLock, "retry refunds", every, func(ctx context.Context) error {
				_, err := e.RetryRefunds(ctx)
				return err
			})
		})
	}()
	defer func() { <-done }()
	var rounds turns
	tick(ctx, every, func() {
		// Every instance reads the shared clock every round (SaleTime),
		// and one that cannot does not take the turn: a round whose
		// database does not answer would hold it for --db-timeout.
		now, err := e.sharedNow(ctx)
		if err != nil {
			if ctx.Err() == nil && e.lifecycle() != nil {
				e.log.Warn("sweep expired orders", "err", fmt.Errorf("sweep: %w", err))
			}
			return
		}
		rounds.take(ctx, e, sweepLock, "sweep expired orders", every, func(ctx context.Context) error {
			_, err := e.sweepAt(ctx, now)
			return err
		})
	})
}

// turns is one loop's share of the rounds (RunSweeper): after a round that
// failed slowly, this instance sits out the next sitOutRounds, so that the
// others take them (found by review: an instance whose database reads timed out
// won the turn back round after round, and a healthy one never swept).
type turns struct{ sitOut int }

// sitOutRounds is how many rounds an instance leaves to the others after
// one of its own failed; alone (no Locker) it sits out none.
const sitOutRounds = 4

// roundLimit bounds one round under a turn: a round that stops making
// progress (a database that stopped answering with --db-timeout 0) would
// otherwise keep the turn, extended while its instance reaches Redis, and
// no other instance would sweep (found by review). A page of lapsed orders
// takes well under a second; a round cut off is safe, as a crash is. (A
// variable for tests.)
var roundLimit = 30 * time.Second

// take runs round under the named turn (turn), unless this instance sits
// this round out or another holds the turn; a failure is logged as what.
// A round that failed slowly (over an interval, every) sits the next
// sitOutRounds out; one that failed at once does not hold the turn long
// and does not (a database refusing every instance at once would
// otherwise have them all sit out together).
func (r *turns) take(ctx context.Context, e *Engine, name, what string, every time.Duration, round func(context.Context) error) {
	if r.sitOut > 0 {
		r.sitOut--
		return
	}
	done, ok := e.turn(ctx, name)
	if !ok {
		return
	}
	defer done()
	rctx, cancel := context.WithTimeout(ctx, roundLimit)
	defer cancel()
	start := time.Now()
	if err := round(rctx); err != nil && ctx.Err() == nil {
		e.log.Warn(what, "err", err)
		if e.b.Locker != nil && time.Since(start) > every {
			r.sitOut = sitOutRounds
		}
	}
}

// The locks of the instance whose turn it is to sweep, and to retry
// refunds.
const (
	sweepLock  = "sweep"
	refundLock = "refunds"
)

// turn takes the named lock for a round, kept while the round runs
// (keepExtending) and given up after it (done); ok is false when another
// instance holds it, and this round is skipped. Every instance sweeping
// every round was safe (each cancel is a conditional move, each refund
// idempotent at the provider) but did the work N times: each asked the
// provider about the same lapsed orders (and for the same refunds) and
// waited on the others' row locks (found by review: 25,000 lapsed orders
// came back in 2.27 s on three instances, 2.11 s on one). The lock only
// spares that work: a lease lost in a failover, or a Locker that fails
// (its Redis down: the round goes on anyway, for its cancels are SQL's),
// lets two do it at once, as before. An instance killed while holding it
// holds the rounds up for at most a lease (rebuildLease).
func (e *Engine) turn(ctx context.Context, name string) (done func(), ok bool) {
	if e.b.Locker == nil {
		return func() {}, true // the only instance
	}
	lease, ok, err := e.b.Locker.TryLock(ctx, name, rebuildLease)
	if err != nil {
		return func() {}, true
	}
	if !ok {
		return nil, false
	}
	stop := keepExtending(ctx, lease)
	return func() {
		stop()
		_ = lease.Release(context.WithoutCancel(ctx))
	}, true
}

// tick calls fn an interval after it starts, then an interval after each
// call returned, until ctx ends. Not a ticker's beat: a tick due during a
// long call came at once after it, so an instance that gave a turn up
// (turns) took it back before any other could.
func tick(ctx context.Context, every time.Duration, fn func()) {
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
		t.Reset(every)
	}
}
