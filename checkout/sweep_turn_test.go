package checkout

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// runSweeper runs e's sweeper every 5 ms until the test ends.
func runSweeper(t *testing.T, e *Engine) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.RunSweeper(ctx, 5*time.Millisecond) }()
	t.Cleanup(func() { stop(); <-done })
}

// TestSweepersTakeTurns: of the instances sharing a Locker, one sweeps a
// round; the others skip it. Every instance sweeping every round asked the
// provider about the same lapsed orders once per instance and waited on
// the others' row locks. While another instance holds the sweep lock,
// nothing is swept here; once it lets go, the lapsed orders are.
func TestSweepersTakeTurns(t *testing.T) {
	v := newEnv(t)
	locker := inmem.NewLocker()
	v.locker = locker
	s, us := v.soldOut(3)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	opened := v.orderOf(s.ID, us[0])
	openPayment(t, e, opened) // so that its sweep asks the provider
	other, held, err := locker.TryLock(context.Background(), sweepLock, time.Minute)
	if err != nil || !held {
		t.Fatalf("take the sweep lock: %v, %v", held, err)
	}
	clock.pastDeadlines()
	runSweeper(t, e)

	time.Sleep(200 * time.Millisecond) // 40 rounds
	if st := v.stats(s.ID); st.Cancelled != 0 {
		t.Fatalf("%d orders cancelled while another instance held the sweep lock", st.Cancelled)
	}
	if n := p.queries.Load(); n != 0 {
		t.Fatalf("the provider asked %d times while another instance held the sweep lock", n)
	}

	if err := other.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lapsed orders swept once the lock is free", func() bool { return v.stats(s.ID).Cancelled == 3 })
	if n := p.queries.Load(); n != 1 {
		t.Errorf("the provider asked %d times about the one opened payment, want 1", n)
	}
	waitFor(t, "their units back at the gate", func() bool { return v.gateLeft(s.ID) == v.stats(s.ID).SQLStockLeft })
	v.checkAtRest(s.ID)
	// The round gave the lock up: another instance can take it.
	waitFor(t, "the sweep lock free between rounds", func() bool {
		l, ok, err := locker.TryLock(context.Background(), sweepLock, time.Minute)
		if ok {
			_ = l.Release(context.Background())
		}
		return ok && err == nil
	})
}

// downLocker is a Locker whose store goes down when down is set.
type downLocker struct {
	*inmem.Locker
	down atomic.Bool
}

func (l *downLocker) TryLock(ctx context.Context, name string, ttl time.Duration) (seckill.Lease, bool, error) {
	if l.down.Load() {
		return seckill.Lease{}, false, errors.New("locker down")
	}
	return l.Locker.TryLock(ctx, name, ttl)
}

// TestSweepWithoutTheLocker: a Locker that fails (its Redis down) does not
// stop the sweeps: a lapsed order's cancel is SQL's, and two instances
// sweeping at once is safe, only more work.
func TestSweepWithoutTheLocker(t *testing.T) {
	v := newEnv(t)
	locker := &downLocker{Locker: inmem.NewLocker()}
	v.locker = locker
	s, _ := v.soldOut(2)
	clock := &sharedClock{}
	e := v.lifecycleEngine(newFakeProvider(), clock)
	locker.down.Store(true)
	clock.pastDeadlines()
	runSweeper(t, e)
	waitFor(t, "the lapsed orders swept with the Locker down", func() bool { return v.stats(s.ID).Cancelled == 2 })
	waitFor(t, "their units back at the gate", func() bool { return v.gateLeft(s.ID) == v.stats(s.ID).SQLStockLeft })
	v.checkAtRest(s.ID)
}

// TestRefundRetriesTakeTurns: so do the rounds that retry the refunds
// due: while another instance holds their lock, the provider is not asked
// from here.
func TestRefundRetriesTakeTurns(t *testing.T) {
	v := newEnv(t)
	locker := inmem.NewLocker()
	v.locker = locker
	s, us := v.soldOut(1)
	p := newFakeProvider()
	e := v.lifecycleEngine(p, &sharedClock{})
	ctx := context.Background()
	// A late payment of a cancelled order is due a refund, which fails
	// at first (the provider down) and is left to the retries.
	o := v.orderOf(s.ID, us[0])
	if _, err := e.Cancel(ctx, us[0], o.ID); err != nil {
		t.Fatal(err)
	}
	p.failRef.Store(true)
	if _, err := e.applyPayment(ctx, seckill.Payment{OrderNo: o.OrderNo, TradeNo: "T" + o.OrderNo, AmountCents: o.PriceCents, PaidAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	other, held, err := locker.TryLock(ctx, refundLock, time.Minute)
	if err != nil || !held {
		t.Fatalf("take the refunds lock: %v, %v", held, err)
	}
	p.failRef.Store(false)
	runSweeper(t, e)

	time.Sleep(200 * time.Millisecond) // 40 rounds
	p.mu.Lock()
	asked := p.asked[o.OrderNo]
	p.mu.Unlock()
	if asked != 0 {
		t.Fatalf("the refund asked %d times while another instance held the refunds lock", asked)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refund retried once the lock is free", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.refunds[o.OrderNo] == 1
	})
}

// lifecycleStore is what an engine's order store is with a lifecycle.
type lifecycleStore interface {
	seckill.OrderStore
	seckill.OrderLifecycle
}

// slowFailingSweeps is an order store whose sweeps fail, slowly, while
// fail is set (a database that answers this instance only at its
// timeout).
type slowFailingSweeps struct {
	lifecycleStore
	fail atomic.Bool
}

func (s *slowFailingSweeps) ExpiredOrders(ctx context.Context, now time.Time, after seckill.OrderRef, limit int) ([]seckill.OrderRef, error) {
	if s.fail.Load() {
		time.Sleep(50 * time.Millisecond)
		return nil, errors.New("database away (test)")
	}
	return s.lifecycleStore.ExpiredOrders(ctx, now, after, limit)
}

// hungClock is a shared clock that does not answer this instance while
// hang is set, until its context ends or a while passes.
type hungClock struct {
	sharedClock
	hang atomic.Bool
}

func (c *hungClock) Now(ctx context.Context) (time.Time, error) {
	if c.hang.Load() {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		return time.Time{}, errors.New("database away (test)")
	}
	return c.sharedClock.Now(ctx)
}

// TestSweepTurnsPassOverAFailingInstance: an instance whose rounds fail
// (its database reads time out) does not keep the turn from the others.
// It won it back round after round: a tick due during its slow round came
// at once after it, before any other instance could take the turn, and a
// healthy one never swept (found by review: 0 of 3 lapsed orders in 60 s).
// An instance that cannot read the shared clock does not take the turn;
// one whose round failed sits the next rounds out.
func TestSweepTurnsPassOverAFailingInstance(t *testing.T) {
	for _, failing := range []string{"clock", "sweep"} {
		t.Run(failing, func(t *testing.T) {
			v := newEnv(t)
			v.locker = inmem.NewLocker()
			s, _ := v.soldOut(3)
			clock := &hungClock{}
			orders := &slowFailingSweeps{lifecycleStore: v.db.(lifecycleStore)}
			v.badThenGoodSweeper(orders, clock, &clock.sharedClock, func() {
				clock.pastDeadlines()
				if failing == "clock" {
					clock.hang.Store(true)
				} else {
					orders.fail.Store(true)
				}
			})
			waitFor(t, "the healthy instance to sweep the lapsed orders", func() bool { return v.stats(s.ID).Cancelled == 3 })
		})
	}
}

// stuckSweeps is an order store whose sweeps never answer while stuck is
// set, until their context ends (a database that stopped answering, with
// no --db-timeout).
type stuckSweeps struct {
	lifecycleStore
	stuck atomic.Bool
}

func (s *stuckSweeps) ExpiredOrders(ctx context.Context, now time.Time, after seckill.OrderRef, limit int) ([]seckill.OrderRef, error) {
	if s.stuck.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.lifecycleStore.ExpiredOrders(ctx, now, after, limit)
}

// TestSweepTurnNotHeldByAStuckRound: a round that stops making progress
// ends at roundLimit and gives the turn up, though its instance reaches
// the Locker and would extend the lease for ever (found by review: 0 of 3
// lapsed orders swept by the healthy instance in 15 s).
func TestSweepTurnNotHeldByAStuckRound(t *testing.T) {
	l := roundLimit
	t.Cleanup(func() { roundLimit = l }) // after the sweepers stop (runSweeper)
	roundLimit = 200 * time.Millisecond
	v := newEnv(t)
	v.locker = inmem.NewLocker()
	s, _ := v.soldOut(3)
	clock := &sharedClock{}
	orders := &stuckSweeps{lifecycleStore: v.db.(lifecycleStore)}
	v.badThenGoodSweeper(orders, clock, clock, func() {
		clock.pastDeadlines()
		orders.stuck.Store(true)
	})
	waitFor(t, "the healthy instance to sweep the lapsed orders", func() bool { return v.stats(s.ID).Cancelled == 3 })
}

// badThenGoodSweeper makes two instances sharing v's backends, A on orders
// and badClock, B on v's store and goodClock, calls fail, and runs their
// sweepers, A's first, so that it holds the turn when B's starts.
func (v *env) badThenGoodSweeper(orders seckill.OrderStore, badClock, goodClock seckill.Clock, fail func()) {
	v.t.Helper()
	bad := v.backends()
	bad.Orders, bad.Clock = orders, badClock
	a := v.recovered(Config{}, &bad)
	good := v.backends()
	good.Clock = goodClock
	b := v.engine(Config{}, &good)
	b.ready.Store(true)
	fail()
	runSweeper(v.t, a)
	time.Sleep(20 * time.Millisecond)
	runSweeper(v.t, b)
}

// endedCtxBus is a result bus that, as mq's does, reports an ended
// context as a failure of the publish.
type endedCtxBus struct {
	seckill.ResultBus
	refused atomic.Int32
}

func (b *endedCtxBus) PublishResults(ctx context.Context, rs []seckill.OrderResult) error {
	if err := ctx.Err(); err != nil {
		b.refused.Add(1)
		return err
	}
	return b.ResultBus.PublishResults(ctx, rs)
}

// TestStatusToldAfterTheRoundEnded: an order's move made by a round whose
// context ended meanwhile (a sweep round cut at roundLimit) is still told
// to its buyer's socket: the move is in SQL, and the publish waits for no
// one.
func TestStatusToldAfterTheRoundEnded(t *testing.T) {
	v := newEnv(t)
	bk := v.backends()
	bus := &endedCtxBus{ResultBus: bk.Bus}
	bk.Bus = bus
	e := v.recovered(Config{}, &bk)
	heard := make(chan seckill.OrderResult, 1)
	cancel, err := e.Results().SubscribeResults(func(r seckill.OrderResult) { heard <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	ctx, end := context.WithCancel(context.Background())
	end()
	e.publishStatus(ctx, &seckill.Order{ID: 7, SaleID: 1, UserID: 2, Status: seckill.OrderCancelled})
	select {
	case r := <-heard:
		if r.OrderID != 7 {
			t.Fatalf("heard %+v, want order 7's status", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the status of a move made by an ended round was not told (%d publishes refused)", bus.refused.Load())
	}
}
