package checkout

import (
	"context"
	"sync/atomic"
	"testing"

	"seckill"
)

// countingGate counts the gate's Reserve calls.
type countingGate struct {
	seckill.StockGate
	reserves atomic.Int64
	last     atomic.Value // the last Reservation
}

func (g *countingGate) Reserve(ctx context.Context, r seckill.Reservation) (seckill.GateResult, error) {
	g.reserves.Add(1)
	g.last.Store(r)
	return g.StockGate.Reserve(ctx, r)
}

// TestKnownBuyerAnsweredLocally: a buyer this instance admitted is told
// duplicate without a gate call (issue 14); another instance, which did
// not see the admission, asks the gate and learns it there.
func TestKnownBuyerAnsweredLocally(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	u := v.users(2)
	g := &countingGate{StockGate: v.gate}
	bk := v.backends()
	bk.Gate = g
	e := v.recovered(Config{}, &bk)
	p := path(t, e, u[0], s.ID)
	if _, err := e.Purchase(ctx, u[0], s.ID, p); err != nil {
		t.Fatal(err)
	}
	if n := g.reserves.Load(); n != 1 {
		t.Fatalf("%d gate calls for the first press, want 1", n)
	}
	for range 3 {
		_, err := e.Purchase(ctx, u[0], s.ID, p)
		wantCode(t, err, seckill.EDuplicate)
	}
	if n := g.reserves.Load(); n != 1 {
		t.Fatalf("%d gate calls after 3 more presses of the admitted buyer, want still 1", n)
	}

	// Another instance on the same gate did not see the admission: it
	// asks the gate once, then knows.
	g2 := &countingGate{StockGate: v.gate}
	bk2 := v.backends()
	bk2.Gate = g2
	other := v.engine(Config{}, &bk2)
	other.ready.Store(true) // the gate is loaded already (a Recover would reload the in-process one)
	for range 3 {
		_, err := other.Purchase(ctx, u[0], s.ID, p)
		wantCode(t, err, seckill.EDuplicate)
	}
	if n := g2.reserves.Load(); n != 1 {
		t.Fatalf("the other instance made %d gate calls, want 1", n)
	}
	// A cancelled buyer stays a buyer at the gate, and here.
	drain(t, e)
	v.checkAtRest(s.ID)
}

// TestReleasedBuyerRetries: a buyer whose publish failed definitively
// (reservation released) may retry: the retry reaches the gate and wins;
// once queued, the buyer's next press is answered here.
func TestReleasedBuyerRetries(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	u := v.users(1)
	q := &flakyQueue{OrderQueue: v.queue}
	g := &countingGate{StockGate: v.gate}
	bk := v.backends()
	bk.Queue, bk.Gate = q, g
	e := v.recovered(Config{}, &bk)
	p := path(t, e, u[0], s.ID)
	q.fail.Store(true)
	_, err := e.Purchase(ctx, u[0], s.ID, p)
	wantCode(t, err, seckill.EBusy)
	q.fail.Store(false)
	if _, err := e.Purchase(ctx, u[0], s.ID, p); err != nil {
		t.Fatalf("retry after a released reservation: %v", err)
	}
	_, err = e.Purchase(ctx, u[0], s.ID, p)
	wantCode(t, err, seckill.EDuplicate)
	if n := g.reserves.Load(); n != 2 {
		t.Fatalf("%d gate calls, want 2 (the failed press and the retry)", n)
	}
	drain(t, e)
	v.checkAtRest(s.ID)
}

// TestReleaseForgetsKnownBuyer: Admit's release after a failed publish
// drops a buyer the instance learned from a concurrent Duplicate.
func TestReleaseForgetsKnownBuyer(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	u := v.users(1)
	q := &flakyQueue{OrderQueue: v.queue}
	bk := v.backends()
	bk.Queue = q
	e := v.recovered(Config{}, &bk)
	p := path(t, e, u[0], s.ID)
	e.learnBuyer(s, u[0], false, e.uptime()) // a Duplicate seen while the press below was pending
	// Not yet reachable by CheckPurchase alone: admit past it.
	a := Admission{userID: u[0], sale: s, now: e.SaleTime(), up: e.uptime()}
	q.fail.Store(true)
	_, err := e.Admit(ctx, a)
	wantCode(t, err, seckill.EBusy)
	q.fail.Store(false)
	if e.knownBuyer(s.ID, u[0], e.uptime()) {
		t.Fatal("a released buyer is still known as one")
	}
	if _, err := e.Purchase(ctx, u[0], s.ID, p); err != nil {
		t.Fatalf("retry after the release: %v", err)
	}
}

// TestPurchaseLimitInTheGate: the per-user purchase limit travels with the
// reservation, and an empty bucket answers rate limited.
func TestPurchaseLimitInTheGate(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(5)
	u := v.users(1)
	g := &countingGate{StockGate: v.gate}
	bk := v.backends()
	bk.Gate = g
	lim := seckill.Bucket{PerSecond: 0.001, Burst: 1}
	e := v.recovered(Config{PurchaseLimit: lim}, &bk)
	p := path(t, e, u[0], s.ID)
	e.learnBuyer(s, u[0], true, e.uptime())
	e.forgetBuyers(s.ID) // stand-in for a fresh instance
	if _, err := e.Purchase(ctx, u[0], s.ID, p); err != nil {
		t.Fatal(err)
	}
	if got := g.last.Load().(seckill.Reservation).Limit; got != lim {
		t.Fatalf("reservation's limit %+v, want %+v", got, lim)
	}
	// The reserving press took no token; the duplicate takes the one.
	e.forgetBuyers(s.ID) // so the presses reach the gate
	_, err := e.Purchase(ctx, u[0], s.ID, p)
	wantCode(t, err, seckill.EDuplicate)
	e.forgetBuyers(s.ID) // so the press reaches the gate's empty bucket
	_, err = e.Purchase(ctx, u[0], s.ID, p)
	wantCode(t, err, seckill.ERateLimited)
}
