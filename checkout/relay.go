package checkout

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime/debug"
	"sync"
	"time"

	"seckill"
)

// relayState lets the callers of RelayReturns share rounds. A cancel, a
// refund and a sweep each need a round that began after their commit; one
// round applies every row unapplied when it reads them, so callers that
// come while a round runs all wait for the next one (queued), which starts
// when that one ends. Without this a crowd of cancels on one instance
// queued on a lock and ran a round each, one after the other, most of them
// finding nothing left to apply: under a starved CPU (survivors of a kill
// taking its traffic) cancels waited seconds for each other (found by
// review).
type relayState struct {
	mu      sync.Mutex
	running *relayRun // the round under way, nil if none
	queued  *relayRun // the round to run after it, nil if nobody waits for one
	// life ends the rounds when the engine closes (stopRelays): they run
	// for all their waiters, on no caller's context.
	life    context.Context
	endLife context.CancelFunc
}

// relayRun is one relay round and what its waiters hear of it.
type relayRun struct {
	done     chan struct{} // closed when the round has ended; then returned and err are set
	returned int
	err      error
}

// relayTimeout bounds one relay round. A round cut short leaves its rows to
// the next, which applies them harmlessly.
const relayTimeout = 30 * time.Second

// RelayReturns gives the units of cancelled and refunded orders that the
// gate has not had yet to the gate, once each (StockGate.Return dedupes by
// order id), and marks them applied; a crash between the two re-applies
// them, which changes nothing. A unit of a sale the gate does not hold
// waits for its load, which reads it from SQL (and then its Return is a
// no-op), unless the gate no longer serves the sale (ended long ago): SQL
// keeps the unit and the row is marked. After a return this instance's
// sold-out flag of the sale and its shared reading of the units left
// clear, so the unit is offered and shown at once; other instances'
// flags and readings last at most soldOutFor and viewLeftFor.
//
// It returns once a round that began after the call has ended, with that
// round's count of units that went back (every caller sharing the round
// hears the same count) and its error. Concurrent callers share rounds
// (relayState). A round that fails is followed by one more before the
// error is returned: a crowd of cancels shares a round, and one blip of
// SQL or the gate must not leave all their units out until the sweeper's
// next relay (found by review). It returns early with ctx's error if ctx
// ends first (the round goes on for the others), and fails once the
// engine is closed.
func (e *Engine) RelayReturns(ctx context.Context) (int, error) {
	if e.lifecycle() == nil {
		return 0, nil
	}
	n, err := e.relayOnce(ctx)
	if err != nil && ctx.Err() == nil && e.relay.life.Err() == nil {
		n, err = e.relayOnce(ctx)
	}
	return n, err
}

// relayOnce waits for one relay round that begins after the call.
func (e *Engine) relayOnce(ctx context.Context) (int, error) {
	r := &e.relay
	r.mu.Lock()
	if r.life.Err() != nil {
		// Closed: stopRelays waits only for the rounds it can see.
		r.mu.Unlock()
		return 0, errors.New("relay returns: the engine is closed")
	}
	var run *relayRun
	switch {
	case r.running == nil:
		run = &relayRun{done: make(chan struct{})}
		r.running = run
		go e.relayRounds(run)
	case r.queued != nil:
		run = r.queued
	default:
		run = &relayRun{done: make(chan struct{})}
		r.queued = run
	}
	r.mu.Unlock()
	select {
	case <-run.done:
		return run.returned, run.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// relayRounds runs run, then each round queued meanwhile, until none is.
// The next round is in place before a round's waiters are told, so that
// stopRelays never finds a round ended but still running.
func (e *Engine) relayRounds(run *relayRun) {
	r := &e.relay
	for run != nil {
		run.returned, run.err = e.relaySafely()
		r.mu.Lock()
		next := r.queued
		r.queued, r.running = nil, next
		r.mu.Unlock()
		close(run.done)
		run = next
	}
}

// relaySafely runs one relay round on the engine's life. A panic in it
// becomes the round's error: the round runs on a goroutine of its own,
// where it would end the process (in a request's handler, as before
// rounds were shared, net/http recovered it).
func (e *Engine) relaySafely() (n int, err error) {
	ctx, cancel := context.WithTimeout(e.relay.life, relayTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("relay round panicked", "panic", p, "stack", string(debug.Stack()))
			n, err = 0, fmt.Errorf("relay returns: panic: %v", p)
		}
	}()
	return e.relayRound(ctx)
}

// stopRelays ends the relay rounds under way or queued and waits for them
// (Close): the stores they use close next. It must not be reached from
// within a round (a store or gate calling Close), which it would wait for
// forever.
func (e *Engine) stopRelays() {
	r := &e.relay
	r.endLife()
	for {
		r.mu.Lock()
		run := r.running
		r.mu.Unlock()
		if run == nil {
			return
		}
		<-run.done
	}
}

// relayRound is one round of RelayReturns; one runs at a time.
func (e *Engine) relayRound(ctx context.Context) (int, error) {
	lc := e.lifecycle()
	returned := 0
	// Pages by ledger id: rows left unapplied (their sale's gate cannot
	// take a unit now) must not hide the ones after them, or a full page
	// of one such sale would keep every other sale's units out of the
	// gate for as long as it lasts.
	var after int64
	waiting := map[int64]bool{} // sales served but not loaded: their rows wait for the load
	for {
		rs, err := lc.UnappliedReturns(ctx, after, seckill.MaxReturn) // a page is at most one Return a sale
		if err != nil {
			return returned, fmt.Errorf("relay returns: %w", err)
		}
		// One gate step per sale of the page, not one per unit: a lapse
		// of 25,000 orders took 18 s to reach the gate a unit at a time
		// (found by review), and its units could not be sold till then.
		var applied []int64
		for sale, page := range bySale(rs) {
			if waiting[sale] {
				continue
			}
			orders := make([]int64, len(page))
			for i, r := range page {
				orders[i] = r.OrderID
			}
			n, err := e.b.Gate.Return(ctx, sale, orders)
			if seckill.ErrorCode(err) == seckill.EBusy {
				if e.gateDropped(ctx, sale) {
					applied = appendLedgerIDs(applied, page)
				} else {
					waiting[sale] = true
				}
				continue
			}
			if err != nil {
				return returned, fmt.Errorf("relay returns: %w", err)
			}
			if n > 0 {
				returned += n
				// Offered at once: no local flag says sold out, and no
				// reading of the gate from before says how many are left
				// (a page refreshing after its cancel showed the old
				// figure for as long as nothing refreshed it again).
				e.soldOut.Delete(sale)
				e.viewLefts.Delete(sale)
			}
			applied = appendLedgerIDs(applied, page)
		}
		if len(applied) > 0 {
			if err := lc.MarkReturnsApplied(ctx, applied); err != nil {
				return returned, fmt.Errorf("relay returns: %w", err)
			}
		}
		if len(rs) < seckill.MaxReturn {
			return returned, nil
		}
		after = rs[len(rs)-1].LedgerID
	}
}

// bySale yields the returns of a page grouped by sale, sales in the order
// they first appear (by ledger id), each sale's in ledger order.
func bySale(rs []seckill.StockReturn) iter.Seq2[int64, []seckill.StockReturn] {
	return func(yield func(int64, []seckill.StockReturn) bool) {
		var order []int64
		groups := map[int64][]seckill.StockReturn{}
		for _, r := range rs {
			if _, ok := groups[r.SaleID]; !ok {
				order = append(order, r.SaleID)
			}
			groups[r.SaleID] = append(groups[r.SaleID], r)
		}
		for _, sale := range order {
			if !yield(sale, groups[sale]) {
				return
			}
		}
	}
}

// appendLedgerIDs appends the ledger ids of rs to ids.
func appendLedgerIDs(ids []int64, rs []seckill.StockReturn) []int64 {
	for _, r := range rs {
		ids = append(ids, r.LedgerID)
	}
	return ids
}

// gateDropped reports whether the gate no longer serves the sale (it ended
// over gateKeep ago, or is gone), so that no load of it will come. A sale
// the gate serves but has not loaded (a rebuild is due) is not dropped.
func (e *Engine) gateDropped(ctx context.Context, saleID int64) bool {
	s, err := e.b.Sales.Sale(ctx, saleID)
	if seckill.ErrorCode(err) == seckill.ENotFound {
		return true
	}
	return err == nil && !gateServes(s, e.SaleTime())
}
