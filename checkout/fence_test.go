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
// connection). The reservation is no longer stale, so no round finds it
// again; SQL recorded the release before it was made, so nothing is left
// to do. Found by a review of the fence fix's second form, which recorded
// releases after making them.
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
		if n, err := e.Reconcile(ctx, 0); err != nil || n != 0 {
			t.Fatalf("the next round: released %d, %v; want 0 (nothing stale), nil", n, err)
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

// hookedOrders is an OrderStore whose WriteOrders runs beforeWrite first,
// and whose FenceTicket runs beforeFence first (once) and fails while
// failFence is set (nil, false: none).
type hookedOrders struct {
	seckill.OrderStore
	beforeWrite func(reqs []seckill.OrderRequest)
	beforeFence func()
	failFence   bool
}

func (h *hookedOrders) WriteOrders(ctx context.Context, reqs []seckill.OrderRequest, payBy time.Time) ([]seckill.OrderResult, error) {
	if f := h.beforeWrite; f != nil {
		f(reqs)
	}
	return h.OrderStore.WriteOrders(ctx, reqs, payBy)
}

func (h *hookedOrders) FenceTicket(ctx context.Context, saleID, userID int64, ticket string) (bool, error) {
	if f := h.beforeFence; f != nil {
		h.beforeFence = nil
		f()
	}
	if h.failFence {
		return false, seckill.Errorf(seckill.EBusy, "SQL unreachable")
	}
	return h.OrderStore.FenceTicket(ctx, saleID, userID, ticket)
}

// TestClaimBeforeFence: the reconciler's Stale lists V's reservation
// (publish stalled; V was answered 503 "may still go through"); before it
// records the release, V's request lands and the writer claims it at the
// gate and starts its SQL commit; Redis then loses the sale and is rebuilt
// while the commit is in flight. The fence commits first, so SQL refuses
// V's request and the reconciler withdraws its claimed reservation: the
// unit is W's, and a 202 for it must be an order. (The fence fix's first
// form recorded the release whatever came of it, while the writer went on
// to write the request: the rebuilt gate held a unit SQL did not have, I3.
// Found by a review of that fix.)
func TestClaimBeforeFence(t *testing.T) {
	forEachSharedGate(t, func(t *testing.T, v *env) {
		p := newStalledPurchase(t, v)
		ctx := context.Background()
		var finish func()
		p.h.beforeFence = func() { finish = p.claimInFlight(t, v) }
		if n, err := p.e.Reconcile(ctx, 0); err != nil || n != 1 {
			t.Fatalf("second round: released %d, %v; want 1 (withdrawn from the writer's claim)", n, err)
		}
		p.loseGateThenSellW(t, v, finish)
		if o, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.V); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("V's fenced request became order %+v (%v)", o, err)
		}
	})
}

// TestOrderBeforeFence: V's stalled request lands and is written before
// the reconciler records the release: the fence fails (the order is in
// SQL) and nothing is released; the reservation is settled.
func TestOrderBeforeFence(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cell string, v *env) {
		p := newStalledPurchase(t, v)
		ctx := context.Background()
		p.h.beforeFence = func() { p.claimInFlight(t, v)() }
		if n, err := p.e.Reconcile(ctx, 0); err != nil || n != 0 {
			t.Fatalf("second round: released %d, %v; want 0 (the order came first)", n, err)
		}
		if fenced, err := v.db.FencedTickets(ctx, p.s.ID); err != nil || len(fenced) != 0 {
			t.Fatalf("the release of a written request is recorded: %v, %v", fenced, err)
		}
		if _, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.V); err != nil {
			t.Fatalf("V's order: %v", err)
		}
		if rs, err := v.gate.Stale(ctx, p.s.ID, 0); err != nil || len(rs) != 0 {
			t.Fatalf("stale after the round: %+v, %v; want none", rs, err)
		}
		if _, err := p.e.Purchase(ctx, p.W, p.s.ID, path(t, p.e, p.W, p.s.ID)); seckill.ErrorCode(err) != seckill.ESoldOut {
			t.Fatalf("W after V's order: %v; want sold out", err)
		}
		v.checkAtRest(p.s.ID)
	})
}

// hookedGate is a gate whose Withdraw fails while fail is set, and with
// loseAnswer withdraws but answers an error (once), as a Redis whose reply
// was lost.
type hookedGate struct {
	seckill.StockGate
	fail, loseAnswer bool
	failSale         int64 // when set, Withdraw fails in this sale only
}

func (g *hookedGate) Withdraw(ctx context.Context, saleID, userID int64, ticket string) (bool, error) {
	if g.fail || saleID == g.failSale {
		return false, seckill.Errorf(seckill.EBusy, "gate unreachable")
	}
	ok, err := g.StockGate.Withdraw(ctx, saleID, userID, ticket)
	if g.loseAnswer {
		g.loseAnswer = false
		return false, seckill.Errorf(seckill.EBusy, "reply lost (withdrawn: %v, %v)", ok, err)
	}
	return ok, err
}

// TestFenceWrittenWithdrawFailedThenClaimed: the reconciler records the
// release, and its Withdraw fails (a Redis blip). The reservation stays;
// V's stalled request lands, the writer claims it at the live gate and
// starts its commit; Redis then loses the sale and is rebuilt meanwhile.
// SQL refuses V's request (fenced), the rebuild left it out, and the unit
// is W's. (The fence fix's first form had the writer write V's request
// after such a record: the gate held a unit SQL did not have, I3.)
func TestFenceWrittenWithdrawFailedThenClaimed(t *testing.T) {
	forEachSharedGate(t, func(t *testing.T, v *env) {
		p := newStalledPurchase(t, v)
		p.g.fail = true
		if _, err := p.e.Reconcile(context.Background(), 0); err == nil {
			t.Fatal("want the withdrawal to fail")
		}
		p.g.fail = false
		p.loseGateThenSellW(t, v, p.claimInFlight(t, v))
	})
}

// TestReconcilerDiesAfterFence: the reconciling instance records the
// release and dies before the gate gives the unit back (here: its
// withdrawal fails, and the instance is never used again). What it left
// is whole without it, whichever comes next, on every store and gate:
//   - V's request never lands: another instance's reconciler finds the
//     reservation stale and withdraws it;
//   - V's request lands and the writer claims it at the gate: SQL refuses
//     it, and the writer withdraws its unit;
//   - V's request lands and the gate loses its state: the rebuild (or the
//     embedded restart) leaves the fenced request out.
//
// W then buys the unit: a 202 must be an order, V's request none. (The
// fence fix's second form released first and recorded after, in memory
// until SQL took it: an instance dying in between left the release
// unrecorded, and a gate loss counted V's request as a buyer again.)
func TestReconcilerDiesAfterFence(t *testing.T) {
	for _, next := range []string{"reconciled", "claimed", "gate lost"} {
		t.Run(next, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, cell string, v *env) {
				ctx := context.Background()
				p := newStalledPurchase(t, v)
				p.g.fail = true
				if _, err := p.e.Reconcile(ctx, 0); err == nil {
					t.Fatal("want the withdrawal to fail")
				}
				if fenced, err := v.db.FencedTickets(ctx, p.s.ID); err != nil || !fenced[p.t1] {
					t.Fatalf("the release is not recorded: %v, %v", fenced, err)
				}
				cfg := Config{PublishTimeout: 50 * time.Millisecond}
				var e *Engine
				switch {
				case v.locker == nil:
					// Embedded: the instance is the process, which
					// restarts with a new gate and drains the queue.
					if next != "reconciled" {
						v.publishTicket(p.s.ID, p.V, p.t1)
					}
					p.e.Close()
					v.gate = inmem.NewGate()
					e = v.recovered(cfg, nil)
					drain(t, e)
				case next == "reconciled":
					e = v.recovered(cfg, nil)
					stalledRounds(t, e)
				case next == "claimed":
					v.publishTicket(p.s.ID, p.V, p.t1)
					e = v.recovered(cfg, nil)
					drain(t, e)
				default: // the shared gate lost the sale
					v.publishTicket(p.s.ID, p.V, p.t1)
					if err := v.gate.Forget(ctx, p.s.ID); err != nil {
						t.Fatal(err)
					}
					e = v.recovered(cfg, nil)
					drain(t, e)
				}
				// A gate slower than the 50 ms publish timeout (a loaded
				// machine) answers busy and gives the unit back: W tries
				// again, as a buyer would.
				_, err := e.Purchase(ctx, p.W, p.s.ID, path(t, e, p.W, p.s.ID))
				for try := 0; seckill.ErrorCode(err) == seckill.EBusy && try < 20; try++ {
					time.Sleep(20 * time.Millisecond)
					_, err = e.Purchase(ctx, p.W, p.s.ID, path(t, e, p.W, p.s.ID))
				}
				if err != nil {
					t.Fatalf("W buys the released unit: %v (gate left %d)", err, v.gateLeft(p.s.ID))
				}
				drain(t, e)
				if _, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.W); err != nil {
					t.Fatalf("I3: W was answered 202 and has no order (%v)", err)
				}
				if o, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.V); seckill.ErrorCode(err) != seckill.ENotFound {
					t.Fatalf("V's fenced request became order %+v (%v)", o, err)
				}
				v.checkAtRest(p.s.ID)
			})
		})
	}
}

// stalledRounds runs two rounds of e's reconciler, PublishTimeout apart,
// and wants the second to release one reservation.
func stalledRounds(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.Reconcile(ctx, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * e.cfg.PublishTimeout)
	if n, err := e.Reconcile(ctx, 0); err != nil || n != 1 {
		t.Fatalf("second round: released %d, %v; want 1", n, err)
	}
}

// TestRebuildBetweenChecksAndFence: the reconciler has found V's
// reservation neither queued nor in SQL; V's request then lands, and the
// gate loses the sale and is rebuilt from SQL and the queue, before the
// reconciler records the release. The rebuild read no fence, so it
// installed V's request under its ticket; the reconciler's fence then
// makes SQL refuse it, and its withdrawal gives the unit back from the
// rebuilt gate. Without the ticket the rebuilt gate would hold V as a
// buyer with no reservation, and the unit would be lost (I4).
func TestRebuildBetweenChecksAndFence(t *testing.T) {
	forEachSharedGate(t, func(t *testing.T, v *env) {
		p := newStalledPurchase(t, v)
		ctx := context.Background()
		p.h.beforeFence = func() {
			v.publishTicket(p.s.ID, p.V, p.t1)
			if err := v.gate.Forget(ctx, p.s.ID); err != nil {
				t.Fatal(err)
			}
			if err := p.e.RebuildGate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := p.e.Reconcile(ctx, 0); err != nil || n != 1 {
			t.Fatalf("second round: released %d, %v; want 1 (from the rebuilt gate)", n, err)
		}
		if _, err := p.e.Purchase(ctx, p.W, p.s.ID, path(t, p.e, p.W, p.s.ID)); err != nil {
			t.Fatalf("W buys the released unit: %v (gate left %d)", err, v.gateLeft(p.s.ID))
		}
		drain(t, p.e)
		if _, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.W); err != nil {
			t.Fatalf("I3: W was answered 202 and has no order (%v)", err)
		}
		if o, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.V); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("V's fenced request became order %+v (%v)", o, err)
		}
		v.checkAtRest(p.s.ID)
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
// finish lets the commit land and waits for the writer, whose error fails
// the test.
func (p *stalledPurchase) claimInFlight(t *testing.T, v *env) (finish func()) {
	return p.writeInFlight(t, v, func(err error) { t.Errorf("writer: %v", err) })
}

// writeInFlight is claimInFlight, with the writer's error (if any) handed
// to onErr.
func (p *stalledPurchase) writeInFlight(t *testing.T, v *env, onErr func(error)) (finish func()) {
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := p.e.WriteBatch(context.Background()); err != nil {
			onErr(err)
		}
	}()
	<-claimed
	return func() { close(commit); <-done }
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

// TestFenceFailsNothingReleased: SQL refuses the release's record: the
// unit stays with V's reservation, and the next round, with SQL back,
// records it and releases it.
func TestFenceFailsNothingReleased(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	p := newStalledPurchase(t, v)
	p.h.failFence = true
	if n, err := p.e.Reconcile(ctx, 0); err == nil || n != 0 {
		t.Fatalf("round with SQL down: released %d, %v; want 0 and the record's error", n, err)
	}
	if left := v.gateLeft(p.s.ID); left != 0 {
		t.Fatalf("gate left %d after a release SQL did not record; want 0", left)
	}
	p.h.failFence = false
	if n, err := p.e.Reconcile(ctx, 0); err != nil || n != 1 {
		t.Fatalf("round with SQL back: released %d, %v; want 1, nil", n, err)
	}
	if fenced, err := v.db.FencedTickets(ctx, p.s.ID); err != nil || !fenced[p.t1] {
		t.Fatalf("the release is not recorded after SQL came back: %v, %v", fenced, err)
	}
}

// fenceReadOrders is hookedOrders whose FencedTickets (the rebuild's last
// read, gateState) runs afterFences once it has read, before it answers.
type fenceReadOrders struct {
	*hookedOrders
	afterFences func()
}

func (h *fenceReadOrders) FencedTickets(ctx context.Context, saleID int64) (map[string]bool, error) {
	f, err := h.hookedOrders.FencedTickets(ctx, saleID)
	if hook := h.afterFences; hook != nil {
		h.afterFences = nil
		hook()
	}
	return f, err
}

// newStalledPurchaseFR is newStalledPurchase with the engine's orders
// behind a fenceReadOrders.
func newStalledPurchaseFR(t *testing.T, v *env) (*stalledPurchase, *fenceReadOrders) {
	t.Helper()
	p := &stalledPurchase{s: v.openSale(1)}
	us := v.users(2)
	p.V, p.W = us[0], us[1]
	p.h, p.g = &hookedOrders{OrderStore: v.db}, &hookedGate{StockGate: v.gate}
	fr := &fenceReadOrders{hookedOrders: p.h}
	b := v.backends()
	b.Orders, b.Gate = fr, p.g
	p.e = v.recovered(Config{PublishTimeout: 50 * time.Millisecond}, &b)
	p.t1 = stalledReservation(t, v, p.e, p.s.ID, p.V)
	return p, fr
}

// TestWithdrawsLandBeforeRebuildInstalls: V's stalled request T1 lands
// after the reconciler looked at the queue, and the writer claims it at
// the live gate and starts its commit. Redis then loses the sale; the
// rebuild reads the queue (T1, unacked), SQL and the fences (none yet).
// Before it installs, the reconciler fences T1 and withdraws it from the
// unloaded sale, and the writer's commit refuses T1 (EExpired) and
// withdraws it too. Found by a break review: both withdrawals answered
// false, nil there, the writer acked T1, and the rebuild then installed
// T1 as a claimed reservation that no one would ever settle or withdraw:
// a unit stuck (I4), W refused sold out. Withdraw now answers EBusy on an
// unloaded sale: the writer naks, and its redelivery meets T1 installed
// and withdraws it.
func TestWithdrawsLandBeforeRebuildInstalls(t *testing.T) {
	forEachSharedGate(t, func(t *testing.T, v *env) {
		ctx := context.Background()
		p, fr := newStalledPurchaseFR(t, v)
		rebuilt := make(chan error, 1)
		var finish func()
		var readFences, install chan struct{}
		p.h.beforeFence = func() {
			// After the reconciler found T1 neither queued nor in SQL:
			// T1 lands, the writer claims it on the live gate (its nak
			// later is expected), and Redis loses the sale.
			finish = p.writeInFlight(t, v, func(err error) { t.Logf("writer: %v (nacked)", err) })
			if err := v.gate.Forget(ctx, p.s.ID); err != nil {
				t.Fatal(err)
			}
			readFences, install = make(chan struct{}), make(chan struct{})
			fr.afterFences = func() { close(readFences); <-install }
			go func() { rebuilt <- p.e.RebuildGate(ctx) }()
			<-readFences // the rebuild read the queue, SQL and no fence
		}
		// The reconciler fences T1 and withdraws it from the unloaded sale.
		n, err := p.e.Reconcile(ctx, 0) // its withdrawal meets the unloaded sale: EBusy, nothing released
		t.Logf("reconcile: released %d, %v", n, err)
		if f, err := v.db.FencedTickets(ctx, p.s.ID); err != nil || !f[p.t1] {
			t.Fatalf("T1 not fenced: %v %v", f, err)
		}
		finish()       // the writer: SQL refuses T1 (EExpired); its withdrawal meets the unloaded sale, and it naks
		close(install) // the rebuild installs what it read: T1 claimed
		if err := <-rebuilt; err != nil {
			t.Fatal(err)
		}
		drain(t, p.e) // whatever the writer left in the queue
		if o, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.V); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("V's fenced request became order %+v (%v)", o, err)
		}
		// Later rounds do not find it either.
		time.Sleep(2 * p.e.cfg.PublishTimeout)
		p.e.Reconcile(ctx, 0)
		time.Sleep(2 * p.e.cfg.PublishTimeout)
		p.e.Reconcile(ctx, 0)
		if _, err := p.e.Purchase(ctx, p.W, p.s.ID, path(t, p.e, p.W, p.s.ID)); err != nil {
			t.Errorf("I4: W cannot buy the unit SQL still has: %v (gate left %d)", err, v.gateLeft(p.s.ID))
		}
		drain(t, p.e)
		v.checkAtRest(p.s.ID)
	})
}

// TestLateFencedRequestOfABuyerWithAnOrder (found by a break review): V's publish of
// T1 stalled (V answered 503 "may still go through"); the reconciler
// fenced T1 and gave its unit back; V bought again (T2, 202) and T2 became
// V's order. Then T1 lands late, and is handled by an instance that does
// not hold V's success (started since, or a minute later: keepSuccess
// swept it). The writer's Claim allows T1 (V is a buyer with nothing
// pending), SQL refuses it as fenced (EExpired) and the failure is
// published: every instance records it as V's result, and V — whose 202
// is an order — is told failed. (Before the SQL fence, T1 met V's order
// in SQL and answered its success.)
func TestLateFencedRequestOfABuyerWithAnOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cell string, v *env) {
		ctx := context.Background()
		p := newStalledPurchase(t, v)
		if n, err := p.e.Reconcile(ctx, 0); err != nil || n != 1 {
			t.Fatalf("second round: released %d, %v; want 1", n, err)
		}
		if _, err := p.e.Purchase(ctx, p.V, p.s.ID, path(t, p.e, p.V, p.s.ID)); err != nil {
			t.Fatalf("V buys again: %v", err)
		}
		drain(t, p.e)
		o, err := v.db.OrderBySaleUser(ctx, p.s.ID, p.V)
		if err != nil {
			t.Fatalf("V's order: %v", err)
		}
		cfg := Config{PublishTimeout: 50 * time.Millisecond}
		var e2 *Engine
		arrived := make(chan struct{})
		var once sync.Once
		cancel, err := v.queue.SubscribeResults(func(r seckill.OrderResult) {
			if r.Ticket == p.t1 {
				once.Do(func() { close(arrived) })
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		v.publishTicket(p.s.ID, p.V, p.t1) // the stalled publish lands
		if v.locker == nil {
			// The embedded server restarts: its drain meets T1.
			p.e.Close()
			v.gate = inmem.NewGate()
			e2 = v.recovered(cfg, nil)
		} else {
			// Another instance, started after V's success.
			e2 = v.recovered(cfg, nil)
		}
		drain(t, e2)
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("T1's result never came")
		}
		time.Sleep(200 * time.Millisecond) // e2's subscriber hears it too
		var r seckill.Result
		if r, err = e2.Result(ctx, p.V, p.s.ID); err != nil || r.Status != seckill.ResultSuccess || r.OrderID != o.ID {
			t.Errorf("I3: V holds order %d (its 202), and is told %+v (%v)", o.ID, r, err)
		}
		v.checkAtRest(p.s.ID)
	})
}

// TestLateRequestRefusedAtClaimAfterRebuy: the SQL-side answer of
// TestLateFencedRequestOfABuyerWithAnOrder has a twin at the gate (found
// by a second break review). V's publish of T1 stalled; the reconciler fenced T1 and gave
// its unit back; V bought again (T2, reserved, its publish on its way).
// T1 lands late and writer B fetches it (with W's request): Claim refuses
// T1, since V's pending reservation has another ticket, and B answers it
// EExpired in the batch's results (claim's expired), with no look at SQL.
// B is slow to finish its batch (W's commit waits on SQL); meanwhile T2
// lands, writer A writes it: V's order, success published. An instance
// that does not hold V's success (started since, or a minute later:
// keepSuccess swept it) then hears B's EExpired for (sale, V) and records
// it: V, whose 202 is an order, was told failed (I3). A failure of that
// kind is now checked against SQL when it is read, where the order wins.
func TestLateRequestRefusedAtClaimAfterRebuy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cell string, v *env) {
		ctx := context.Background()
		s := v.openSale(2)
		us := v.users(2)
		V, W := us[0], us[1]
		h := &hookedOrders{OrderStore: v.db}
		b := v.backends()
		b.Orders = h
		cfg := Config{PublishTimeout: 50 * time.Millisecond}
		e := v.recovered(cfg, &b)

		t1 := stalledReservation(t, v, e, s.ID, V)
		if n, err := e.Reconcile(ctx, 0); err != nil || n != 1 {
			t.Fatalf("second round: released %d, %v; want 1", n, err)
		}
		// V buys again: T2 reserved, its publish on its way.
		t2 := newTicket()
		if r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: s.ID, UserID: V, Ticket: t2, At: time.Now()}); err != nil || r != seckill.Reserved {
			t.Fatalf("V's second reservation: %v %v", r, err)
		}
		v.publishTicket(s.ID, V, t1) // T1 lands late
		if _, err := e.Purchase(ctx, W, s.ID, path(t, e, W, s.ID)); err != nil {
			t.Fatalf("W buys: %v", err)
		}

		// Writer B takes [T1, W]: T1 refused at the claim; W's commit stalls.
		claimed, commit := make(chan struct{}), make(chan struct{})
		var once sync.Once
		h.beforeWrite = func(reqs []seckill.OrderRequest) {
			for _, r := range reqs {
				if r.UserID == W {
					once.Do(func() { close(claimed); <-commit })
				}
			}
		}
		bDone := make(chan struct{})
		go func() {
			defer close(bDone)
			if _, err := e.WriteBatch(context.Background()); err != nil {
				t.Errorf("writer B: %v", err)
			}
		}()
		<-claimed

		// T2 lands; writer A writes it: V's order, success published.
		v.publishTicket(s.ID, V, t2)
		if _, err := e.WriteBatch(ctx); err != nil {
			t.Fatalf("writer A: %v", err)
		}
		o, err := v.db.OrderBySaleUser(ctx, s.ID, V)
		if err != nil {
			t.Fatalf("V's order from T2: %v", err)
		}

		// An instance started since V's success (it holds no entry for V).
		e3 := v.engine(cfg, nil)
		arrived := make(chan struct{})
		var once2 sync.Once
		cancel, err := v.queue.SubscribeResults(func(r seckill.OrderResult) {
			if r.Ticket == t1 {
				once2.Do(func() { close(arrived) })
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()

		close(commit) // B finishes: W's order, and T1's EExpired published
		<-bDone
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("T1's result never came")
		}
		time.Sleep(200 * time.Millisecond) // e3's subscriber hears it too
		if r, err := e3.Result(ctx, V, s.ID); err != nil || r.Status != seckill.ResultSuccess || r.OrderID != o.ID {
			t.Errorf("I3: V holds order %d (its 202, T2), and is told %+v (%v)", o.ID, r, err)
		}
		drain(t, e)
		v.checkAtRest(s.ID)
	})
}

// TestForeignAnswerPutBackOnASkewedInstance (second break review): ea8c381
// puts another user's captcha back so that only its user's answer uses it
// up. The put-back is a PutCaptcha on the answering instance's store,
// which sets the key's life from that instance's clock (ExpiresAt minus
// its now). Instances' clocks may be minutes apart (rdb.CaptchaStore says
// so); on one ahead by more than the captcha's remaining life the
// put-back deletes it (ttl < 1 ms), and on one behind it outlives
// CaptchaTTL by the skew. Mallory, who learned Bob's captcha id, answers
// it on an instance 3 minutes ahead: Bob's right answer then finds it
// gone.
