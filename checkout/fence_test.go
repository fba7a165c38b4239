package checkout

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// TestReleasedRequestLandsAfterGateLoss: V's purchase reserved the last
// unit and its publish stalled; the reconciler found the reservation
// neither queued nor in SQL and released it, and W bought the unit (202).
// Then V's request landed in the queue after all, and the gate lost its
// state before the writer reached either request: a Redis restarted empty
// (the shared gate is rebuilt from SQL and the queue), or the embedded
// server restarted (Recover drains the queue with a new, empty gate). The
// gate's memory of the release went with it; the release SQL recorded
// must still refuse V's request, or it takes W's unit and W's 202 ends
// failed (I3). Found by a break review.
func TestReleasedRequestLandsAfterGateLoss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cell string, v *env) { lateRequestAfterGateLoss(t, v, false) })
}

// TestReleaseAnswerLost: as TestReleasedRequestLandsAfterGateLoss, but the
// gate's answer to the release was lost (a Redis reply lost on the
// connection). The reservation is no longer stale, so no round would find
// it again: the reconciler asks the gate again in its next round, which
// answers released (the user holds nothing and is no buyer), and records
// it. Found by a review of the fence fix.
func TestReleaseAnswerLost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cell string, v *env) { lateRequestAfterGateLoss(t, v, true) })
}

// lateRequestAfterGateLoss: V reserves the only unit and its publish
// stalls; the reconciler releases it (its answer lost when loseAnswer);
// V's request lands late, W buys the unit, the gate loses its state (a
// Redis restarted empty, or the embedded server restarted). W's 202 must
// be an order, and V's request none.
func lateRequestAfterGateLoss(t *testing.T, v *env, loseAnswer bool) {
	ctx := context.Background()
	s := v.openSale(1)
	us := v.users(2)
	V, W := us[0], us[1]
	cfg := Config{PublishTimeout: 50 * time.Millisecond}
	g := &hookedGate{StockGate: v.gate}
	b := v.backends()
	b.Gate = g
	e := v.recovered(cfg, &b)

	t1 := stalledReservation(t, v, e, s.ID, V)
	if loseAnswer {
		g.loseAnswer = true
		if _, err := e.Reconcile(ctx, 0); err == nil {
			t.Fatal("the round whose answer was lost: want its error")
		}
		if n, err := e.Reconcile(ctx, 0); err != nil || n != 1 {
			t.Fatalf("the next round: released %d, %v; want 1 (asked again), nil", n, err)
		}
	} else if n, err := e.Reconcile(ctx, 0); err != nil || n != 1 {
		t.Fatalf("second round: released %d, %v; want 1", n, err)
	}
	if fenced, err := v.db.FencedTickets(ctx, s.ID); err != nil || !fenced[t1] {
		t.Fatalf("the release is not recorded: %v, %v", fenced, err)
	}
	v.publishTicket(s.ID, V, t1) // the stalled publish lands
	if _, err := e.Purchase(ctx, W, s.ID, path(t, e, W, s.ID)); err != nil {
		t.Fatalf("W buys the released unit: %v", err)
	}

	if v.locker != nil {
		// Redis lost the sale; an instance rebuilds it.
		if err := v.gate.Forget(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if err := e.RebuildGate(ctx); err != nil {
			t.Fatal(err)
		}
	} else {
		// The embedded server restarts: a new process, a new gate.
		e.Close()
		v.gate = inmem.NewGate()
		e = v.recovered(cfg, nil)
	}
	drain(t, e)

	if _, err := v.db.OrderBySaleUser(ctx, s.ID, W); err != nil {
		o, _ := v.db.OrderBySaleUser(ctx, s.ID, V)
		t.Fatalf("I3: W was answered 202 and has no order (%v); V, whose reservation was released, holds %+v", err, o)
	}
	if o, err := v.db.OrderBySaleUser(ctx, s.ID, V); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("V's released request became order %+v (%v)", o, err)
	}
	v.checkAtRest(s.ID)
}

// hookedOrders is an OrderStore whose WriteOrders runs a hook first (nil:
// none).
type hookedOrders struct {
	seckill.OrderStore
	beforeWrite func(reqs []seckill.OrderRequest)
}

func (h *hookedOrders) WriteOrders(ctx context.Context, reqs []seckill.OrderRequest, payBy time.Time) ([]seckill.OrderResult, error) {
	if f := h.beforeWrite; f != nil {
		f(reqs)
	}
	return h.OrderStore.WriteOrders(ctx, reqs, payBy)
}

// TestFenceOfClaimedRequestOversellsAfterRebuild: the reconciler's Stale
// lists V's reservation (publish stalled; V was answered 503 "may still go
// through"); before its Release, V's request lands and the writer claims
// it at the gate (the claim wins: the Release is a no-op) and starts its
// SQL commit. Redis then loses the sale and is rebuilt while the commit is
// in flight. The fix's first form recorded the release before releasing,
// whatever came of it: the rebuild left V's queued request out, SQL did
// not show V's order yet, and the rebuilt gate held a unit too many, which
// W was answered 202 for and SQL refused (I3). Found by a review of that
// fix; a release the claim overtook is recorded no more.
func TestFenceOfClaimedRequestOversellsAfterRebuild(t *testing.T) {
	forEachSharedGate(t, func(t *testing.T, v *env) {
		p := newStalledPurchase(t, v)
		ctx := context.Background()
		var finish func()
		p.g.beforeRelease = func() {
			// Between the reconciler's checks and its release: V's stalled
			// publish lands, and the writer claims it and starts writing.
			finish = p.claimInFlight(t, v)
		}
		if n, err := p.e.Reconcile(ctx, 0); err != nil || n != 0 {
			t.Fatalf("second round: released %d, %v; want 0 (the claim came first)", n, err)
		}
		if fenced, err := v.db.FencedTickets(ctx, p.s.ID); err != nil || len(fenced) != 0 {
			t.Fatalf("a release the claim overtook is recorded: %v, %v", fenced, err)
		}
		p.loseGateThenSellW(t, v, finish)
	})
}

// hookedGate is a gate whose Release runs beforeRelease first (once),
// fails while fail is set, and with loseAnswer releases but answers an
// error (once), as a Redis whose reply was lost.
type hookedGate struct {
	seckill.StockGate
	fail, loseAnswer bool
	beforeRelease    func()
}

func (g *hookedGate) Release(ctx context.Context, saleID, userID int64, ticket string) (bool, error) {
	if f := g.beforeRelease; f != nil {
		g.beforeRelease = nil
		f()
	}
	if g.fail {
		return false, seckill.Errorf(seckill.EBusy, "gate unreachable")
	}
	ok, err := g.StockGate.Release(ctx, saleID, userID, ticket)
	if g.loseAnswer {
		g.loseAnswer = false
		return false, seckill.Errorf(seckill.EBusy, "reply lost (released: %v, %v)", ok, err)
	}
	return ok, err
}

// TestFenceWrittenReleaseFailedThenClaimed: the reconciler's Release of
// V's reservation fails (a Redis blip). The reservation stays pending; V's
// stalled request lands, the writer claims it at the live gate and starts
// its commit; Redis then loses the sale and is rebuilt meanwhile. The
// fix's first form had recorded the release before the Release failed, so
// the rebuild left V's request out and the gate held a unit SQL did not
// have: W was answered 202 for it and ended failed (I3). Found by a
// review of that fix.
func TestFenceWrittenReleaseFailedThenClaimed(t *testing.T) {
	forEachSharedGate(t, func(t *testing.T, v *env) {
		p := newStalledPurchase(t, v)
		p.g.fail = true
		if _, err := p.e.Reconcile(context.Background(), 0); err == nil {
			t.Fatal("want the release to fail")
		}
		p.g.fail = false
		p.loseGateThenSellW(t, v, p.claimInFlight(t, v))
	})
}

// forEachSharedGate runs fn on every store with the Redis gate: the cells
// of backendMatrix whose gate can lose a sale while the writer runs.
func forEachSharedGate(t *testing.T, fn func(t *testing.T, v *env)) {
	for _, c := range backendMatrix() {
		if strings.HasSuffix(c.name, "/redis") {
			t.Run(c.name, func(t *testing.T) { fn(t, newEnv(t, c.opts...)) })
		}
	}
}

// stalledPurchase is a sale of one unit on a shared gate, which V reserved
// with ticket t1 and whose publish stalled; one round of e's reconciler
// has seen the reservation stale, long enough ago for the next to release
// it. W is another buyer.
type stalledPurchase struct {
	s    *seckill.Sale
	V, W int64
	t1   string
	e    *Engine
	h    *hookedOrders
	g    *hookedGate
}

func newStalledPurchase(t *testing.T, v *env) *stalledPurchase {
	t.Helper()
	p := &stalledPurchase{s: v.openSale(1)}
	us := v.users(2)
	p.V, p.W = us[0], us[1]
	p.h, p.g = &hookedOrders{OrderStore: v.db}, &hookedGate{StockGate: v.gate}
	b := v.backends()
	b.Orders, b.Gate = p.h, p.g
	p.e = v.recovered(Config{PublishTimeout: 50 * time.Millisecond}, &b)
	p.t1 = stalledReservation(t, v, p.e, p.s.ID, p.V)
	return p
}

// stalledReservation reserves a unit of saleID for userID at the gate, as
// an Admit whose publish stalled, and has e's reconciler see it stale in a
// first round (releasing nothing), long enough ago that the next round
// releases it. It returns the reservation's ticket.
func stalledReservation(t *testing.T, v *env, e *Engine, saleID, userID int64) string {
	t.Helper()
	ctx := context.Background()
	ticket := newTicket()
	if r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: saleID, UserID: userID, Ticket: ticket, At: time.Now()}); err != nil || r != seckill.Reserved {
		t.Fatalf("the reservation of user %d: %v %v", userID, r, err)
	}
	// Two rounds of the reconciler, at least PublishTimeout apart,
	// release it: this is the first.
	if n, err := e.Reconcile(ctx, 0); err != nil || n != 0 {
		t.Fatalf("first round: released %d, %v; want 0 (first sighting)", n, err)
	}
	time.Sleep(2 * e.cfg.PublishTimeout)
	return ticket
}

// claimInFlight lands V's stalled request in the queue and has the writer
// claim it and start its commit; it returns once the commit is under way.
// finish lets the commit land and waits for the writer.
func (p *stalledPurchase) claimInFlight(t *testing.T, v *env) (finish func()) {
	v.publishTicket(p.s.ID, p.V, p.t1)
	claimed, commit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	p.h.beforeWrite = func(reqs []seckill.OrderRequest) {
		for _, r := range reqs {
			if r.UserID == p.V {
				once.Do(func() { close(claimed); <-commit })
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := p.e.WriteBatch(context.Background()); err != nil {
			t.Errorf("writer: %v", err)
		}
	}()
	<-claimed
	return func() { close(commit); wg.Wait() }
}

// loseGateThenSellW has Redis lose the sale and rebuilds it while V's
// commit is in flight, lets the commit land (finish), then W tries to buy:
// a 202 must be an order (I3), and the gate must agree with SQL.
func (p *stalledPurchase) loseGateThenSellW(t *testing.T, v *env, finish func()) {
	ctx := context.Background()
	if err := v.gate.Forget(ctx, p.s.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.e.RebuildGate(ctx); err != nil {
		t.Fatal(err)
	}
	finish()
	if _, err := p.e.Purchase(ctx, p.W, p.s.ID, path(t, p.e, p.W, p.s.ID)); err == nil {
		drain(t, p.e)
		if _, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.W); err != nil {
			t.Errorf("I3: W was answered 202 and has no order (%v); gate left %d", err, v.gateLeft(p.s.ID))
		}
	}
	v.checkAtRest(p.s.ID)
}

// failingFence is an OrderStore whose FenceTicket fails while fail is set.
type failingFence struct {
	seckill.OrderStore
	fail bool
}

func (f *failingFence) FenceTicket(ctx context.Context, saleID, userID int64, ticket string) error {
	if f.fail {
		return seckill.Errorf(seckill.EBusy, "SQL unreachable")
	}
	return f.OrderStore.FenceTicket(ctx, saleID, userID, ticket)
}

// TestFenceRecordedLaterWhenSQLFails: the release took effect but its
// record in SQL failed; the reservation is no longer stale, so no later
// round would find it again. The reconciler keeps it and records it in
// its next round.
func TestFenceRecordedLaterWhenSQLFails(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	V := v.users(1)[0]
	cfg := Config{PublishTimeout: 20 * time.Millisecond}
	f := &failingFence{OrderStore: v.db}
	b := v.backends()
	b.Orders = f
	e := v.recovered(cfg, &b)
	t1 := stalledReservation(t, v, e, s.ID, V)
	f.fail = true
	if n, err := e.Reconcile(ctx, 0); err == nil || n != 1 {
		t.Fatalf("round with SQL down: released %d, %v; want 1 and the record's error", n, err)
	}
	if _, err := e.Reconcile(ctx, 0); err == nil {
		t.Fatal("round with SQL still down: want the record's error")
	}
	f.fail = false
	if n, err := e.Reconcile(ctx, 0); err != nil || n != 0 {
		t.Fatalf("round with SQL back: released %d, %v; want 0, nil", n, err)
	}
	if fenced, err := v.db.FencedTickets(ctx, s.ID); err != nil || !fenced[t1] {
		t.Fatalf("the release is not recorded after SQL came back: %v, %v", fenced, err)
	}
}
