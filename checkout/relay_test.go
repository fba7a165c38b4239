package checkout

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// heldRelay is the env's store whose relay rounds are counted, and whose
// first round waits after its first read until release is closed. Its
// reads fail once their context has ended.
type heldRelay struct {
	envStore
	seckill.OrderLifecycle
	rounds  atomic.Int32
	fail    int32         // the round whose first read fails (a blip of SQL), none if 0
	cancels atomic.Int32  // CancelOrder calls returned
	held    chan struct{} // closed once the first round waits
	release chan struct{}
}

func (h *heldRelay) UnappliedReturns(ctx context.Context, afterID int64, limit int) ([]seckill.StockReturn, error) {
	var round int32
	if afterID == 0 {
		round = h.rounds.Add(1)
	}
	if err := ctx.Err(); err != nil {
		return nil, err // as SQL answers; the in-memory store would not tell
	}
	if afterID != 0 {
		return h.OrderLifecycle.UnappliedReturns(ctx, afterID, limit)
	}
	if round == h.fail {
		return nil, seckill.Errorf(seckill.EBusy, "a blip of SQL (test)")
	}
	rs, err := h.OrderLifecycle.UnappliedReturns(ctx, afterID, limit)
	if round == 1 {
		close(h.held)
		<-h.release
	}
	return rs, err
}

// soldOutOrders is soldOut with the buyers' orders.
func (v *env) soldOutOrders(n int) (*seckill.Sale, []int64, []*seckill.Order) {
	v.t.Helper()
	s, us := v.soldOut(n)
	orders := make([]*seckill.Order, n)
	for i, u := range us {
		orders[i] = v.orderOf(s.ID, u)
	}
	return s, us, orders
}

// heldRelayEngine returns a recovered engine on the env's store as a
// heldRelay.
func (v *env) heldRelayEngine(failRound int32) (*heldRelay, *Engine) {
	store := &heldRelay{envStore: v.db, OrderLifecycle: v.db.(seckill.OrderLifecycle), fail: failRound,
		held: make(chan struct{}), release: make(chan struct{})}
	b := v.backends()
	b.Orders = store
	return store, v.recovered(Config{}, &b)
}

func (h *heldRelay) CancelOrder(ctx context.Context, orderID, userID int64, now time.Time, onlyIfExpired bool) (*seckill.Order, error) {
	defer h.cancels.Add(1)
	return h.OrderLifecycle.CancelOrder(ctx, orderID, userID, now, onlyIfExpired)
}

// TestCancelsShareRelayRounds: a crowd of cancels on one instance while a
// relay round is slow. Each cancel still returns only once its unit is in
// the gate (a round that began after its commit ended), but they share
// rounds: before, each ran a round of its own behind one lock, one after
// the other, and a starved round held them all (after a kill, cancels on
// the survivors waited up to 8 s). The first canceller hangs up while its
// round runs: the round goes on for the others, its unit comes back all
// the same.
func TestCancelsShareRelayRounds(t *testing.T) {
	v := newEnv(t)
	const n = 40
	s, us, orders := v.soldOutOrders(n)
	store, e := v.heldRelayEngine(0)

	// The first cancel's round waits in its read; its buyer hangs up.
	ctx, hangUp := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := e.Cancel(ctx, us[0], orders[0].ID); first <- err }()
	<-store.held
	hangUp()
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("cancel whose buyer hung up during the relay: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(store.release)
		t.Fatal("a cancel whose buyer hung up still waits for the relay round it started")
	}

	var wg sync.WaitGroup
	var late atomic.Int32 // cancels that returned with their unit not yet applied
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.Cancel(context.Background(), us[i], orders[i].ID); err != nil {
				t.Errorf("cancel %d: %v", i, err)
				return
			}
			rs, err := v.lc().UnappliedReturns(context.Background(), 0, 10*n)
			if err != nil {
				t.Error(err)
				return
			}
			if slices.ContainsFunc(rs, func(r seckill.StockReturn) bool { return r.OrderID == orders[i].ID }) {
				late.Add(1)
			}
		}()
	}
	for store.cancels.Load() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the cancels reach the relay
	close(store.release)
	wg.Wait()

	if l := late.Load(); l > 0 {
		t.Errorf("%d cancels returned before their unit was relayed to the gate", l)
	}
	// The held round, then one for everyone who came meanwhile (a third
	// if one of them reached the relay only after that one began).
	if r := store.rounds.Load(); r > 3 {
		t.Errorf("%d cancels ran %d relay rounds; want them to share rounds (2, at most 3)", n, r)
	}
	if got := v.gateLeft(s.ID); got != n {
		t.Errorf("gate left %d after %d cancels, want %d", got, n, n)
	}
	v.checkAtRest(s.ID)
}

// TestRelayWaitsForARoundBegunAfterIt: a relay called while a round runs
// does not take that round's end for its own: the round may have read the
// returns before the caller's commit.
func TestRelayWaitsForARoundBegunAfterIt(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(2)
	store, e := v.heldRelayEngine(0)
	first := make(chan error, 1)
	go func() { _, err := e.RelayReturns(context.Background()); first <- err }()
	<-store.held // a round that has read, and found nothing
	v.cancelInSQL(v.orderOf(s.ID, us[0]))
	second := make(chan int, 1)
	go func() { n, _ := e.RelayReturns(context.Background()); second <- n }()
	time.Sleep(20 * time.Millisecond)
	close(store.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-second
	if got := v.gateLeft(s.ID); got != 1 {
		t.Errorf("gate left %d after the second relay returned, want 1", got)
	}
}

// TestCloseEndsTheRelayRounds: a relay round runs on no caller's context
// (its canceller hung up here); Close ends it and waits for it, since the
// stores it uses close next (found by review: the round ran on for up to
// its 30 s timeout against closed stores).
func TestCloseEndsTheRelayRounds(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(1)
	store, e := v.heldRelayEngine(0)
	o := v.orderOf(s.ID, us[0])
	ctx, hangUp := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() { _, err := e.Cancel(ctx, us[0], o.ID); cancelled <- err }()
	<-store.held
	hangUp()
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a relay round was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(store.release) // the held store call returns; the round sees its context ended
	<-closed
	rounds := store.rounds.Load()
	if _, err := e.RelayReturns(context.Background()); err == nil {
		t.Error("a relay after Close succeeded; want an error")
	}
	if r := store.rounds.Load(); r != rounds {
		t.Errorf("a relay after Close ran %d rounds on the stores Close left to be closed", r-rounds)
	}
}

// TestRelayBlipStrandsNoCancels: the round a crowd of cancels shares
// fails once (a blip of SQL). Each cancel still answers with its unit in
// the gate: one more round is run before a failure is reported (found by
// review: all 20 units stayed out of the gate, sold out, until the
// sweeper's next relay, where each cancel running its own round had lost
// one).
func TestRelayBlipStrandsNoCancels(t *testing.T) {
	v := newEnv(t)
	const n = 20
	s, us, orders := v.soldOutOrders(n)
	store, e := v.heldRelayEngine(2)
	go func() { _, _ = e.RelayReturns(context.Background()) }()
	<-store.held // round 1 has read, before any cancel
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.Cancel(context.Background(), us[i], orders[i].ID); err != nil {
				t.Errorf("cancel %d: %v", i, err)
			}
		}()
	}
	for store.cancels.Load() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the cancels reach the relay: they share round 2, which fails
	close(store.release)
	wg.Wait()
	if got := v.gateLeft(s.ID); got != n {
		t.Errorf("after %d cancels answered, gate left %d, want %d: one failed round stranded them", n, got, n)
	}
	v.checkAtRest(s.ID)
}

// panicsOnce is the env's store whose first read of the returns panics.
type panicsOnce struct {
	envStore
	seckill.OrderLifecycle
	done atomic.Bool
}

func (p *panicsOnce) UnappliedReturns(ctx context.Context, afterID int64, limit int) ([]seckill.StockReturn, error) {
	if !p.done.Swap(true) {
		panic("a bug in a store (test)")
	}
	return p.OrderLifecycle.UnappliedReturns(ctx, afterID, limit)
}

// TestRelayPanicIsTheRoundsError: a round runs on a goroutine of its own,
// where a panic would end the process; it is the round's error instead,
// and the next round runs.
func TestRelayPanicIsTheRoundsError(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(1)
	b := v.backends()
	b.Orders = &panicsOnce{envStore: v.db, OrderLifecycle: v.db.(seckill.OrderLifecycle)}
	e := v.recovered(Config{}, &b)
	v.cancelInSQL(v.orderOf(s.ID, us[0]))
	// The first round panics, the one run after it returns the unit.
	if n, err := e.RelayReturns(context.Background()); err != nil || n != 1 {
		t.Errorf("relay after a round panicked = %d, %v; want 1 unit back, no error", n, err)
	}
	if got := v.gateLeft(s.ID); got != 1 {
		t.Errorf("gate left %d, want 1", got)
	}
}
