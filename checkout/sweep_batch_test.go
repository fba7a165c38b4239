package checkout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// countedCancels is the env's store that counts the sweeper's cancel calls.
type countedCancels struct {
	envStore
	seckill.OrderLifecycle
	single, batch atomic.Int32 // CancelOrder, CancelExpired calls
}

func (c *countedCancels) CancelOrder(ctx context.Context, orderID, userID int64, now time.Time, onlyIfExpired bool) (*seckill.Order, error) {
	c.single.Add(1)
	return c.OrderLifecycle.CancelOrder(ctx, orderID, userID, now, onlyIfExpired)
}

func (c *countedCancels) CancelExpired(ctx context.Context, ids []int64, now time.Time) ([]*seckill.Order, error) {
	c.batch.Add(1)
	return c.OrderLifecycle.CancelExpired(ctx, ids, now)
}

// countedReturns is a gate that counts Return calls and notes how many
// CancelExpired calls came before the first.
type countedReturns struct {
	seckill.StockGate
	cancels    *countedCancels
	calls      atomic.Int32
	firstAfter atomic.Int32 // CancelExpired calls before the first Return, plus one
}

func (c *countedReturns) Return(ctx context.Context, saleID int64, orderIDs []int64) (int, error) {
	c.calls.Add(1)
	c.firstAfter.CompareAndSwap(0, c.cancels.batch.Load()+1)
	return c.StockGate.Return(ctx, saleID, orderIDs)
}

// TestSweepCancelsAPageAtOnce: a sweep cancels each page of expired orders
// in at most two calls (those without a payment, then those whose opened
// payment the provider says to cancel), not one transaction per order:
// per order, three instances on PostgreSQL gave back ~350 units/s, and
// 25,000 lapsed orders took ~70 s to come back to stock. Everything else
// holds: every unit back in SQL and the gate, the opened payments closed,
// the buyers told. The units go back to the gate a page at a time, each
// page's in one Return, as soon as the page is cancelled: a unit at a
// time, after the last page, a lapse of 25,000 orders reached the gate
// 18 s after its cancels began (found by review).
func TestSweepCancelsAPageAtOnce(t *testing.T) {
	for _, cell := range []struct {
		name string
		opt  []envOption
	}{{"inmem", nil}, {"sqlite", []envOption{withSQLite}}} {
		t.Run(cell.name, func(t *testing.T) {
			v := newEnv(t, cell.opt...)
			const n, nOpened = 2*sweepBatch + 100, 30
			s, _, orders := v.soldOutOrders(n)
			p, clock := newFakeProvider(), &sharedClock{}
			store := &countedCancels{envStore: v.db, OrderLifecycle: v.db.(seckill.OrderLifecycle)}
			b := v.backends()
			b.Orders, b.Payments, b.Clock = store, p, clock
			gate := &countedReturns{StockGate: b.Gate, cancels: store}
			b.Gate = gate
			e := v.recovered(Config{}, &b)
			for _, o := range orders[:nOpened] {
				openPayment(t, e, o)
			}
			results := subscribeResults(t, v.queue)
			clock.pastDeadlines()
			got, err := e.Sweep(context.Background())
			if err != nil || got != n {
				t.Fatalf("Sweep = %d, %v; want %d cancelled", got, err, n)
			}
			pages := (n + sweepPage - 1) / sweepPage
			if single, batch := store.single.Load(), store.batch.Load(); single != 0 || batch > int32(2*pages) {
				t.Errorf("the sweep of %d orders made %d CancelOrder and %d CancelExpired calls; want none and at most %d",
					n, single, batch, 2*pages)
			}
			if calls, first, all := gate.calls.Load(), gate.firstAfter.Load()-1, store.batch.Load(); calls > int32(pages) || first >= all {
				t.Errorf("the units went back in %d Return calls (want at most %d, one a page), the first after %d of %d cancel calls (want before the last)",
					calls, pages, first, all)
			}
			for _, o := range orders {
				if st := v.order(o.ID).Status; st != seckill.OrderCancelled {
					t.Fatalf("order %d is %s after the sweep", o.ID, st)
				}
			}
			if st := v.checkAtRest(s.ID); st.Cancelled != n || st.SQLStockLeft != n {
				t.Errorf("after the sweep: %+v; want %d cancelled and back", st, n)
			}
			if left := v.gateLeft(s.ID); left != n {
				t.Errorf("gate left %d, want %d", left, n)
			}
			waitFor(t, "the opened payments closed", func() bool { return p.closes() == nOpened })
			for _, o := range orders[nOpened:] {
				if p.wasClosed(o.OrderNo) {
					t.Fatalf("order %d was never opened and its payment was closed", o.ID)
				}
			}
			results.waitStatus(t, orders[0], seckill.OrderCancelled)
			results.waitStatus(t, orders[n-1], seckill.OrderCancelled)
		})
	}
}

// hungGate is a gate whose Return does not answer until its caller gives
// up (its Redis stalled, or its packets dropped).
type hungGate struct{ seckill.StockGate }

func (hungGate) Return(ctx context.Context, _ int64, _ []int64) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestSweepNotHeldUpByAHungGate: the relay after each page does not hold
// the next pages' cancels up, nor the one after the last the next sweep. With a gate that does not answer, a sweep
// that waited for the relay after each page cancelled one page per relay
// timeout (found by review: 4,903 lapsed orders pending ~37 s on 3
// instances with the gate's Redis paused).
func TestSweepNotHeldUpByAHungGate(t *testing.T) {
	defer func(w, f time.Duration) { sweepRelayWait, sweepFinalRelayWait = w, f }(sweepRelayWait, sweepFinalRelayWait)
	sweepRelayWait, sweepFinalRelayWait = 100*time.Millisecond, 200*time.Millisecond
	for _, cell := range []struct {
		name string
		opt  []envOption
	}{{"inmem", nil}, {"sqlite", []envOption{withSQLite}}} {
		t.Run(cell.name, func(t *testing.T) {
			v := newEnv(t, cell.opt...)
			const n = 2*sweepBatch + 100
			_, _, orders := v.soldOutOrders(n)
			p, clock := newFakeProvider(), &sharedClock{}
			b := v.backends()
			b.Payments, b.Clock = p, clock
			b.Gate = hungGate{b.Gate}
			e := v.recovered(Config{}, &b)
			clock.pastDeadlines()
			// Waiting for the hung relay, a sweep ends with this context
			// (an error); not waiting, it takes its bounded waits and its
			// SQL, well under half of it even under -race on a loaded
			// machine (2.2 s seen in CI with a bound of 2 s, now 10).
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			got, err := e.Sweep(ctx)
			if took := time.Since(start); got != n || err != nil || took > 10*time.Second {
				t.Errorf("a sweep with the gate hung cancelled %d of %d expired orders in %v (%v); want all, within 10 s, and no error", got, n, took, err)
			}
			for _, o := range orders {
				if st := v.order(o.ID).Status; st != seckill.OrderCancelled {
					t.Fatalf("order %d is %s after the sweep", o.ID, st)
				}
			}
		})
	}
}
