package checkout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// lossyBus is a result bus that loses every result published on it, as
// core pub/sub may (a restart, a disconnect, a slow subscriber, a writer
// dying before it publishes); subscribing works.
type lossyBus struct{ seckill.ResultBus }

func (lossyBus) PublishResults(context.Context, []seckill.OrderResult) error { return nil }

// countedOrders counts the look-ups of one order in SQL.
type countedOrders struct {
	seckill.OrderStore
	lookups atomic.Int64
}

func (s *countedOrders) OrderBySaleUser(ctx context.Context, saleID, userID int64) (*seckill.Order, error) {
	s.lookups.Add(1)
	return s.OrderStore.OrderBySaleUser(ctx, saleID, userID)
}

// lostResultEnv is an engine whose result messages are all lost, on a
// clock that moves only when told, with a listener subscribed through
// Results as the WebSockets are.
type lostResultEnv struct {
	v      *env
	clock  *fakeClock
	orders *countedOrders
	e      *Engine
	heard  *collectResults
	sale   *seckill.Sale
}

const testRecheck = 5 * time.Second

func newLostResultEnv(t *testing.T) *lostResultEnv {
	t.Helper()
	v := newEnv(t)
	clock := newFakeClock(base)
	b := v.backends()
	orders := &countedOrders{OrderStore: v.db}
	b.Orders, b.Bus = orders, lossyBus{v.queue}
	e := v.recovered(Config{Now: clock.Now, ResultRecheck: testRecheck}, &b)
	return &lostResultEnv{v: v, clock: clock, orders: orders, e: e,
		heard: subscribeResults(t, e.Results()),
		sale:  v.sale(10, base.Add(-time.Hour), base.Add(time.Hour))}
}

// buy admits a purchase of user and writes it into SQL; its result
// message is lost.
func (l *lostResultEnv) buy(t *testing.T, user int64) {
	t.Helper()
	if _, err := l.e.b.Gate.Load(context.Background(), l.sale.ID, seckill.GateState(l.sale.Stock, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.e.Purchase(context.Background(), user, l.sale.ID, path(t, l.e, user, l.sale.ID)); err != nil {
		t.Fatal(err)
	}
	drain(t, l.e)
	if _, err := l.v.db.OrderBySaleUser(context.Background(), l.sale.ID, user); err != nil {
		t.Fatalf("the order is not in SQL: %v", err)
	}
}

// TestLostResultFoundByPoll: the result of a purchase written into SQL is
// lost on its way. Polling answers queued without asking SQL until the
// purchase has been queued for ResultRecheck; then it finds the order, and
// the WebSocket listeners hear of it.
func TestLostResultFoundByPoll(t *testing.T) {
	l := newLostResultEnv(t)
	u := l.v.users(1)[0]
	l.buy(t, u)

	l.clock.set(base.Add(testRecheck - time.Nanosecond))
	if r := result(t, l.e, u, l.sale.ID); r.Status != seckill.ResultQueued {
		t.Fatalf("result before the recheck bound: %+v, want queued", r)
	}
	if n := l.orders.lookups.Load(); n != 0 {
		t.Fatalf("%d look-ups in SQL before the recheck bound, want none", n)
	}
	l.clock.set(base.Add(testRecheck))
	r := result(t, l.e, u, l.sale.ID)
	o, err := l.v.db.OrderBySaleUser(context.Background(), l.sale.ID, u)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != seckill.ResultSuccess || r.OrderID != o.ID {
		t.Fatalf("result after the recheck bound: %+v, want success with order %d", r, o.ID)
	}
	if pushed, ok := l.heard.find(l.sale.ID, u); !ok || pushed.Status != seckill.ResultSuccess || pushed.OrderID != o.ID {
		t.Errorf("listeners heard %+v (%v), want the success", pushed, ok)
	}
	// Recorded: later polls need SQL no more.
	result(t, l.e, u, l.sale.ID)
	if n := l.orders.lookups.Load(); n != 1 {
		t.Errorf("%d look-ups in SQL, want 1", n)
	}
}

// TestLostResultFoundBySweep: a buyer who never polls learns of the order
// through the background recheck, once the purchase has been queued for
// ResultRecheck.
func TestLostResultFoundBySweep(t *testing.T) {
	l := newLostResultEnv(t)
	u := l.v.users(1)[0]
	l.buy(t, u)
	ctx := context.Background()

	l.clock.set(base.Add(testRecheck - time.Nanosecond))
	if n, err := l.e.RecheckQueued(ctx); err != nil || n != 0 {
		t.Fatalf("recheck before the bound: %d, %v; want 0", n, err)
	}
	if n := l.orders.lookups.Load(); n != 0 {
		t.Fatalf("%d look-ups in SQL before the recheck bound, want none", n)
	}
	l.clock.set(base.Add(testRecheck))
	if n, err := l.e.RecheckQueued(ctx); err != nil || n != 1 {
		t.Fatalf("recheck after the bound: %d, %v; want 1", n, err)
	}
	if pushed, ok := l.heard.find(l.sale.ID, u); !ok || pushed.Status != seckill.ResultSuccess || pushed.OrderID == 0 {
		t.Fatalf("listeners heard %+v (%v), want the success", pushed, ok)
	}
	if r := result(t, l.e, u, l.sale.ID); r.Status != seckill.ResultSuccess {
		t.Errorf("result %+v, want success", r)
	}
	if n, err := l.e.RecheckQueued(ctx); err != nil || n != 0 {
		t.Errorf("a second recheck: %d, %v; want nothing left", n, err)
	}
	if n := l.orders.lookups.Load(); n != 1 {
		t.Errorf("%d look-ups in SQL, want 1", n)
	}
}

// TestQueuedNotYetInSQL: while the writer is behind, a recheck finds no
// order and the purchase stays queued; it is looked up again only after
// ResultRecheck more, and then found.
func TestQueuedNotYetInSQL(t *testing.T) {
	l := newLostResultEnv(t)
	u := l.v.users(1)[0]
	ctx := context.Background()
	if _, err := l.e.b.Gate.Load(ctx, l.sale.ID, seckill.GateState(l.sale.Stock, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.e.Purchase(ctx, u, l.sale.ID, path(t, l.e, u, l.sale.ID)); err != nil {
		t.Fatal(err)
	}
	l.clock.set(base.Add(testRecheck))
	for range 2 {
		if r := result(t, l.e, u, l.sale.ID); r.Status != seckill.ResultQueued {
			t.Fatalf("result with the request still queued: %+v", r)
		}
	}
	if n, err := l.e.RecheckQueued(ctx); err != nil || n != 0 {
		t.Fatalf("recheck: %d, %v; want 0", n, err)
	}
	if n := l.orders.lookups.Load(); n != 1 {
		t.Fatalf("%d look-ups in SQL within one recheck bound, want 1", n)
	}
	drain(t, l.e)
	l.clock.set(base.Add(2*testRecheck - time.Nanosecond))
	if r := result(t, l.e, u, l.sale.ID); r.Status != seckill.ResultQueued {
		t.Fatalf("result before the next recheck: %+v, want queued", r)
	}
	l.clock.set(base.Add(2 * testRecheck))
	if r := result(t, l.e, u, l.sale.ID); r.Status != seckill.ResultSuccess {
		t.Fatalf("result after the next recheck bound: %+v, want success", r)
	}
	if n := l.orders.lookups.Load(); n != 2 {
		t.Errorf("%d look-ups in SQL, want 2", n)
	}
}

// TestClaimQueuedBounded: one recheck round claims at most its batch of
// stale queued purchases, the next round the rest, and a claimed purchase
// is not claimed again until it is stale again.
func TestClaimQueuedBounded(t *testing.T) {
	rm := newResultMap()
	now := base
	rm.now = func() time.Time { return now }
	const n = recheckBatch + 44
	for u := range int64(n) {
		rm.queue(1, u+1, "t")
	}
	rm.settle(seckill.OrderResult{SaleID: 1, UserID: n + 1, Result: seckill.Result{Status: seckill.ResultFailed}})
	now = now.Add(time.Minute)
	stale := now.Add(-testRecheck)
	seen := map[resultKey]bool{}
	for round, want := range []int{recheckBatch, 44, 0} {
		ks := rm.claimQueued(stale, recheckBatch)
		if len(ks) != want {
			t.Fatalf("round %d claimed %d, want %d", round, len(ks), want)
		}
		for _, k := range ks {
			if seen[k] {
				t.Fatalf("round %d claimed %v again", round, k)
			}
			seen[k] = true
		}
	}
	now = now.Add(testRecheck)
	if ks := rm.claimQueued(now.Add(-testRecheck), 2*n); len(ks) != n {
		t.Fatalf("once stale again: %d claimed, want %d", len(ks), n)
	}
}
