package checkout

import (
	"context"
	"fmt"
	"sync"
	"time"

	"seckill"
)

// relayState lets the callers of RelayReturns share rounds. A cancel, a
// refund and a sweep each need a round that began after their commit; one
// round applies every row unapplied when it reads them, so callers that
// come while a round runs all wait for the next one, which one of them
// runs for all. Without this a crowd of cancels on one instance queued on
// a lock and ran a round each, one after the other, most of them finding
// nothing left to apply: under a starved CPU (survivors of a kill taking
// its traffic) cancels waited seconds for each other (found by review).
type relayState struct {
	mu       sync.Mutex
	running  bool
	started  uint64        // rounds begun
	finished uint64        // rounds ended; they run one at a time, in order
	done     chan struct{} // closed when the running round ends
	returned int           // of the latest round ended
	err      error         // of the latest round ended
}

// relayTimeout bounds one relay round. A round runs for every caller
// waiting on it, so none of their contexts ends it; a round cut short
// leaves its rows to the next, which applies them harmlessly.
const relayTimeout = 30 * time.Second

// RelayReturns gives the units of cancelled and refunded orders that the
// gate has not had yet to the gate, once each (StockGate.Return dedupes by
// order id), and marks them applied; a crash between the two re-applies
// them, which changes nothing. A unit of a sale the gate does not hold
// waits for its load, which reads it from SQL (and then its Return is a
// no-op), unless the gate no longer serves the sale (ended long ago): SQL
// keeps the unit and the row is marked. After a return this instance's
// sold-out flag of the sale clears, so the unit is offered at once; other
// instances' flags last at most soldOutFor.
//
// It returns once a round that began after the call has ended, with that
// round's count of units that went back and its error; concurrent callers
// share rounds (relayState). It returns early with ctx's error if ctx
// ends first, and the round goes on for the others.
func (e *Engine) RelayReturns(ctx context.Context) (int, error) {
	if e.lifecycle() == nil {
		return 0, nil
	}
	r := &e.relay
	r.mu.Lock()
	want := r.started + 1 // the first round to begin after now
	for r.finished < want {
		if !r.running {
			e.startRelayRound(ctx)
		}
		done := r.done
		r.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		r.mu.Lock()
	}
	n, err := r.returned, r.err
	r.mu.Unlock()
	return n, err
}

// startRelayRound starts the next relay round, on ctx's values but not its
// end; e.relay.mu must be held, and no round running.
func (e *Engine) startRelayRound(ctx context.Context) {
	r := &e.relay
	r.running = true
	r.started++
	r.done = make(chan struct{})
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relayTimeout)
	go func() {
		defer cancel()
		n, err := e.relayRound(rctx)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.running = false
		r.finished = r.started
		r.returned, r.err = n, err
		close(r.done)
	}()
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
		rs, err := lc.UnappliedReturns(ctx, after, sweepBatch)
		if err != nil {
			return returned, fmt.Errorf("relay returns: %w", err)
		}
		var applied []int64
		for _, r := range rs {
			if waiting[r.SaleID] {
				continue
			}
			ok, err := e.b.Gate.Return(ctx, r.SaleID, r.OrderID)
			if seckill.ErrorCode(err) == seckill.EBusy {
				if e.gateDropped(ctx, r.SaleID) {
					applied = append(applied, r.LedgerID)
				} else {
					waiting[r.SaleID] = true
				}
				continue
			}
			if err != nil {
				return returned, fmt.Errorf("relay returns: %w", err)
			}
			if ok {
				returned++
				e.soldOut.Delete(r.SaleID)
			}
			applied = append(applied, r.LedgerID)
		}
		if len(applied) > 0 {
			if err := lc.MarkReturnsApplied(ctx, applied); err != nil {
				return returned, fmt.Errorf("relay returns: %w", err)
			}
		}
		if len(rs) < sweepBatch {
			return returned, nil
		}
		after = rs[len(rs)-1].LedgerID
	}
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
