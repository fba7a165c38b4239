package checkout

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// TestReconcile: of three old reservations — one never published (its
// instance died), one still queued, one written but never settled — only
// the first is released; young reservations are left alone.
func TestReconcile(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(10)
	u := v.users(4)
	e := v.recovered(Config{}, nil)
	tickets := map[int64]string{}
	for _, user := range u {
		if user == u[3] {
			v.gateNow.advance(time.Minute) // u[3] is young: its publish may still be in flight
		}
		tickets[user] = newTicket()
		r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: s.ID, UserID: user, Ticket: tickets[user]})
		if err != nil || r != seckill.Reserved {
			t.Fatalf("reserve %d: %v %v", user, r, err)
		}
	}
	v.publishTicket(s.ID, u[1], tickets[u[1]]) // queued, not yet written
	v.writeOrders(s.ID, u[2])                  // written; the writer's settle was lost
	if got := v.gateLeft(s.ID); got != 6 {
		t.Fatalf("gate left %d, want 6", got)
	}

	// The first round only notes what it finds stale: its publish may be in
	// flight still if the gate's clock stepped forward.
	if released, err := e.Reconcile(ctx, 30*time.Second); err != nil || released != 0 {
		t.Fatalf("first round released %d, %v; want 0 (a reservation is released only when seen stale twice)", released, err)
	}
	released, err := reconcileAgain(ctx, e, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if released != 1 {
		t.Fatalf("released %d reservations, want 1", released)
	}
	if got := v.gateLeft(s.ID); got != 7 {
		t.Fatalf("gate left %d after reconcile, want 7 (one unit back)", got)
	}
	// The released user may buy again; the others are still buyers.
	if r := v.reserve(s.ID, u[0]); r != seckill.Reserved {
		t.Fatalf("released user: %v, want reserved", r)
	}
	for _, user := range u[1:] {
		if r := v.reserve(s.ID, user); r != seckill.Duplicate {
			t.Fatalf("user %d: %v, want duplicate", user, r)
		}
	}
	stale, err := v.gate.Stale(ctx, s.ID, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0].UserID != u[1] {
		t.Fatalf("stale after reconcile %+v, want only the queued user %d", stale, u[1])
	}
	// Once the writer has settled it, nothing is stale.
	drain(t, e)
	left := map[int64]bool{}
	stale, _ = v.gate.Stale(ctx, s.ID, 0)
	for _, r := range stale {
		left[r.UserID] = true
	}
	if len(stale) != 2 || !left[u[0]] || !left[u[3]] {
		t.Fatalf("pending after the writer %+v, want the two never published (%d, %d)", stale, u[0], u[3])
	}
}

// TestWriterSettlesReservations: reservations are forgotten once their
// requests are settled in SQL, so the reconciler never looks at them.
func TestWriterSettlesReservations(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(3)
	u := v.users(3)
	e := v.recovered(Config{}, nil)
	for _, user := range u {
		if _, err := e.Purchase(ctx, user, s.ID, path(t, e, user, s.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if stale, _ := v.gate.Stale(ctx, s.ID, 0); len(stale) != 3 {
		t.Fatalf("%d reservations before the writer, want 3", len(stale))
	}
	drain(t, e)
	if stale, _ := v.gate.Stale(ctx, s.ID, 0); len(stale) != 0 {
		t.Fatalf("%d reservations left after the writer, want 0", len(stale))
	}
	v.checkAtRest(s.ID)
}

// TestRebuildAfterGateLoss: a shared gate that lost its state answers busy;
// the instance holding the lock rebuilds it from SQL plus the queue while
// another instance, without the lock, keeps answering busy.
func TestRebuildAfterGateLoss(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(10)
	u := v.users(5)
	locker := inmem.NewLocker()
	b := v.backends()
	b.Locker = locker
	e := v.recovered(Config{PublishTimeout: 50 * time.Millisecond}, &b)
	v.writeOrders(s.ID, u[0])
	v.publish(s.ID, u[1])
	before := e.rebuilds.Load()                // the shared recovery loaded the new sale
	if err := v.gate.Unload(ctx); err != nil { // the gate "restarts empty"
		t.Fatal(err)
	}
	// Another instance holds the lock: this one must not rebuild.
	lease, ok, _ := locker.TryLock(ctx, rebuildLock, time.Minute)
	if !ok {
		t.Fatal("could not take the lock")
	}
	_, err := e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID))
	wantCode(t, err, seckill.EBusy)
	// The busy answer started a rebuild attempt (maybeRebuild flags it
	// before answering); once it is over, it must have done nothing.
	waitFor(t, "the rebuild attempt to end", func() bool { return !e.rebuilding.Load() })
	if _, loaded, _ := v.gate.Left(ctx, s.ID); loaded {
		t.Fatal("gate rebuilt without the lock")
	}
	_ = lease.Release(ctx)

	// Now this instance gets the lock and rebuilds.
	_, err = e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID))
	wantCode(t, err, seckill.EBusy)
	waitFor(t, "the gate rebuilt", func() bool { _, loaded, _ := v.gate.Left(ctx, s.ID); return loaded })
	// SQL has 9 left, one more is queued: 8; both buyers are duplicates.
	if got := v.gateLeft(s.ID); got != 8 {
		t.Fatalf("rebuilt gate left %d, want 8", got)
	}
	for _, user := range u[:2] {
		if _, err := e.Purchase(ctx, user, s.ID, path(t, e, user, s.ID)); seckill.ErrorCode(err) != seckill.EDuplicate {
			t.Fatalf("user %d after rebuild: %v, want duplicate", user, err)
		}
	}
	if _, err := e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID)); err != nil {
		t.Fatalf("purchase after rebuild: %v", err)
	}
	drain(t, e)
	v.checkAtRest(s.ID)
	if n := e.rebuilds.Load() - before; n != 1 {
		t.Fatalf("%d rebuilds after the loss, want 1", n)
	}
}

// TestRecoverShared: an instance joining a shared gate mid-sale neither
// drains the queue nor reloads what the gate holds (others are admitting);
// it loads only what is missing, and waits while another instance does.
func TestRecoverShared(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	held := v.openSale(10)
	lost := v.openSale(5)
	u := v.users(3)
	locker := inmem.NewLocker()
	b := v.backends()
	b.Locker = locker
	v.setGate(held.ID, 7, u[0]) // live state of the others
	v.publish(held.ID, u[1])

	// Another instance is rebuilding: this one waits, not ready.
	lease, _, _ := locker.TryLock(ctx, rebuildLock, time.Minute)
	probe := &refusalCounter{Locker: locker}
	b.Locker = probe
	e := v.engine(Config{PublishTimeout: 10 * time.Millisecond}, &b)
	done := make(chan error, 1)
	go func() { done <- e.Recover(ctx) }()
	// Two refusals: Recover found the sale missing, waited and asked
	// again, instead of declaring itself ready.
	waitFor(t, "Recover to be refused the lock twice", func() bool { return probe.refused.Load() >= 2 })
	if e.Ready() {
		t.Fatal("ready while the gate lacks a sale")
	}
	_ = lease.Release(ctx)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Recover did not finish after the lock was freed")
	}
	if !e.Ready() {
		t.Fatal("not ready after Recover")
	}
	if got := v.gateLeft(held.ID); got != 7 {
		t.Fatalf("held sale reloaded: left %d, want the live 7", got)
	}
	if got := v.gateLeft(lost.ID); got != 5 {
		t.Fatalf("lost sale left %d, want 5", got)
	}
	if got := v.pending(held.ID); got != 1 {
		t.Fatalf("queue drained by a joining instance: %d pending, want 1", got)
	}
}

// ackHookQueue runs onAck after the writer's batch ack, before WriteBatch
// goes on: whatever onAck does happens between the ack and the rest.
type ackHookQueue struct {
	seckill.OrderQueue
	acker seckill.BatchAcker
	onAck func()
}

func (q ackHookQueue) AckAll(ctx context.Context, ds []seckill.Delivery) error {
	err := q.acker.AckAll(ctx, ds)
	if q.onAck != nil {
		q.onAck()
	}
	return err
}

// failSettleGate is a gate whose Settle fails while fail is set.
type failSettleGate struct {
	seckill.StockGate
	fail atomic.Bool
}

func (g *failSettleGate) Settle(ctx context.Context, saleID int64, settled []seckill.Settled) error {
	if g.fail.Load() {
		return seckill.Errorf(seckill.EBusy, "settle fails (test)")
	}
	return g.StockGate.Settle(ctx, saleID, settled)
}

// TestReconcileRefusedRequest: a request the gate admitted but SQL refused
// (sold out in SQL) holds a unit SQL never had; the writer deliberately
// keeps it from the gate. The reconciler must not hand it back, whether it
// looks just after the writer's ack or after a settle that failed.
func TestReconcileRefusedRequest(t *testing.T) {
	// setup makes a sold-out sale (u[0], u[1] hold its two units) and the
	// env's backends; each test then sets the gate one unit above SQL.
	setup := func(t *testing.T, b *Backends) (*env, *seckill.Sale, []int64) {
		v := newEnv(t)
		s := v.openSale(2)
		u := v.users(3)
		v.writeOrders(s.ID, u[0], u[1])
		*b = v.backends()
		return v, s, u
	}
	check := func(t *testing.T, v *env, released int, s *seckill.Sale, u []int64) {
		t.Helper()
		if released != 0 {
			t.Errorf("reconciler released %d reservations, want 0", released)
		}
		if got := v.gateLeft(s.ID); got != 0 {
			t.Errorf("gate left %d, want 0: the unit SQL never had came back", got)
		}
		if r := v.reserve(s.ID, u[2]); r != seckill.Duplicate {
			t.Errorf("refused user: %v, want duplicate (one try per sale)", r)
		}
	}

	t.Run("reconciler between ack and the rest", func(t *testing.T) {
		var b Backends
		v, s, u := setup(t, &b)
		ctx := context.Background()
		var e *Engine
		released, calls := 0, 0
		b.Queue = ackHookQueue{OrderQueue: v.queue, acker: v.queue, onAck: func() {
			calls++
			n, err := reconcileTwice(ctx, e, 0)
			if err != nil {
				t.Error(err)
			}
			released += n
		}}
		e = v.recovered(Config{}, &b)
		v.setGate(s.ID, 1, u[0], u[1]) // Recover reloaded it from SQL
		if _, err := e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.WriteBatch(ctx); err != nil {
			t.Fatal(err)
		}
		if calls != 1 {
			t.Fatalf("ack hook ran %d times, want 1", calls)
		}
		check(t, v, released, s, u)
	})

	t.Run("settle fails", func(t *testing.T) {
		var b Backends
		v, s, u := setup(t, &b)
		ctx := context.Background()
		gate := &failSettleGate{StockGate: v.gate}
		b.Gate = gate
		e := v.recovered(Config{}, &b)
		v.setGate(s.ID, 1, u[0], u[1]) // Recover reloaded it from SQL
		if _, err := e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID)); err != nil {
			t.Fatal(err)
		}
		gate.fail.Store(true)
		if _, err := e.WriteBatch(ctx); err == nil {
			t.Error("WriteBatch: no error although settling failed")
		}
		released, err := reconcileTwice(ctx, e, 0)
		if err != nil {
			t.Fatal(err)
		}
		check(t, v, released, s, u)
		// Settling works again: the redelivered request is settled and
		// acked, still refused.
		gate.fail.Store(false)
		drain(t, e)
		if stale, _ := v.gate.Stale(ctx, s.ID, 0); len(stale) != 0 {
			t.Errorf("pending after the writer: %+v, want none", stale)
		}
		waitResult(t, e, u[2], s.ID, seckill.ResultFailed)
		check(t, v, 0, s, u)
	})
}

// TestReconcileClockSkew: an instance whose clock runs an hour ahead
// reconciles a reservation another instance made a moment ago, whose
// publish may still be in flight. Ages come from the gate's clock, so it is
// young, and left alone.
func TestReconcileClockSkew(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(5)
	u := v.users(1)
	v.recovered(Config{}, nil)
	ahead := v.engine(Config{Now: func() time.Time { return time.Now().Add(time.Hour) }}, nil)
	// The admitting instance's clock is behind: it stamps an old time.
	r := seckill.Reservation{SaleID: s.ID, UserID: u[0], Ticket: newTicket(), At: time.Now().Add(-time.Hour)}
	if res, err := v.gate.Reserve(ctx, r); err != nil || res != seckill.Reserved {
		t.Fatalf("reserve: %v %v", res, err)
	}
	released, err := reconcileTwice(ctx, ahead, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if released != 0 || v.gateLeft(s.ID) != 4 {
		t.Fatalf("released %d, gate left %d; want a reservation in flight kept (0, 4)", released, v.gateLeft(s.ID))
	}
	// Once it is old on the gate's clock, it is released.
	v.gateNow.advance(time.Minute)
	if released, err = reconcileTwice(ctx, ahead, 30*time.Second); err != nil || released != 1 {
		t.Fatalf("after a minute: released %d, %v; want 1", released, err)
	}
}

// hookSales runs afterCreate once a sale is in SQL, before CreateSale goes
// on to the gate.
type hookSales struct {
	seckill.SaleStore
	afterCreate func(*seckill.Sale)
}

func (h *hookSales) CreateSale(ctx context.Context, s *seckill.Sale) error {
	err := h.SaleStore.CreateSale(ctx, s)
	if err == nil && h.afterCreate != nil {
		h.afterCreate(s)
	}
	return err
}

// TestCreateSaleRacesRebuild: a rebuild finds a new sale in SQL before its
// creator loaded it into the gate, loads it, and a buyer is admitted. The
// creator's load must not wipe that reservation (the buyer could buy
// twice).
func TestCreateSaleRacesRebuild(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	u := v.users(1)
	hs := &hookSales{SaleStore: v.db}
	b := v.backends()
	b.Sales, b.Locker = hs, inmem.NewLocker()
	e := v.recovered(Config{PublishTimeout: 250 * time.Millisecond}, &b)
	hs.afterCreate = func(s *seckill.Sale) {
		if err := e.RebuildGate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID)); err != nil {
			t.Fatalf("purchase after the rebuild loaded the sale: %v", err)
		}
	}
	s := &seckill.Sale{Name: "phone", PriceCents: 100, Stock: 3, StartsAt: time.Now().Add(-time.Minute), EndsAt: time.Now().Add(time.Hour)}
	if err := e.CreateSale(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := v.gateLeft(s.ID); got != 2 {
		t.Fatalf("gate left %d after CreateSale, want 2: the reservation made after the rebuild was wiped", got)
	}
	if _, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID)); seckill.ErrorCode(err) != seckill.EDuplicate {
		t.Fatalf("second purchase of the same buyer: %v, want duplicate", err)
	}
	drain(t, e)
	v.checkAtRest(s.ID)
}

// afterReadQueue runs after once after its first PendingRequests: what it
// does happens while a rebuild is between reading the queue and loading.
type afterReadQueue struct {
	seckill.OrderQueue
	once  sync.Once
	after func()
}

func (q *afterReadQueue) PendingRequests(ctx context.Context, saleID int64) ([]seckill.OrderRequest, error) {
	rs, err := q.OrderQueue.PendingRequests(ctx, saleID)
	q.once.Do(q.after)
	return rs, err
}

// TestRebuildOvertaken: instance A rebuilds a lost sale slowly; meanwhile
// its lease is lost (modelled by a second lock table: B takes the lock
// too), B rebuilds the sale and admits a buyer. A's snapshot misses that
// buyer, so A must not install it: not over B's live sale, and not after
// the gate lost B's load again (a restarted Redis), when the sale looks
// unloaded but A's claim went with the rest.
func TestRebuildOvertaken(t *testing.T) {
	for _, gateLost := range []bool{false, true} {
		name := "over a live sale"
		if gateLost {
			name = "after the gate lost the newer load"
		}
		t.Run(name, func(t *testing.T) {
			v := newEnv(t)
			ctx := context.Background()
			s := v.openSale(5)
			u := v.users(1)
			cfg := Config{PublishTimeout: 250 * time.Millisecond}
			bb := v.backends()
			bb.Locker = inmem.NewLocker()
			eb := v.engine(cfg, &bb)
			q := &afterReadQueue{OrderQueue: v.queue, after: func() {
				if err := eb.Recover(ctx); err != nil { // B loads the sale
					t.Fatal(err)
				}
				if _, err := eb.Purchase(ctx, u[0], s.ID, path(t, eb, u[0], s.ID)); err != nil {
					t.Fatal(err)
				}
				if gateLost {
					if err := v.gate.Unload(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}}
			ba := v.backends()
			ba.Queue, ba.Locker = q, inmem.NewLocker()
			ea := v.engine(cfg, &ba)
			if err := ea.RebuildGate(ctx); err != nil {
				t.Fatal(err)
			}
			if gateLost {
				if _, loaded, _ := v.gate.Left(ctx, s.ID); loaded {
					t.Fatalf("A installed a snapshot older than B's load: gate left %d", v.gateLeft(s.ID))
				}
				// The next rebuild reads afresh: the buyer is queued.
				if err := ea.RebuildGate(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if got := v.gateLeft(s.ID); got != 4 {
				t.Fatalf("gate left %d, want 4 (one unit queued for the buyer)", got)
			}
			if r := v.reserve(s.ID, u[0]); r != seckill.Duplicate {
				t.Fatalf("the admitted buyer: %v at the gate, want duplicate", r)
			}
			drain(t, eb)
			v.checkAtRest(s.ID)
		})
	}
}

// refusalCounter counts the TryLock calls the locker refused.
type refusalCounter struct {
	seckill.Locker
	refused atomic.Int64
}

func (l *refusalCounter) TryLock(ctx context.Context, name string, ttl time.Duration) (seckill.Lease, bool, error) {
	lease, ok, err := l.Locker.TryLock(ctx, name, ttl)
	if err == nil && !ok {
		l.refused.Add(1)
	}
	return lease, ok, err
}

// reconcileTwice runs two rounds of e's reconciler, the second as if
// e.staleWait had passed on e's monotonic clock since the first (the first
// round's sightings are moved back by as much), and returns how many
// reservations they released. A reservation is released only in a round
// that finds it stale at least staleWait after a round before it did.
func reconcileTwice(ctx context.Context, e *Engine, age time.Duration) (int, error) {
	n, err := e.Reconcile(ctx, age)
	if err != nil {
		return n, err
	}
	m, err := reconcileAgain(ctx, e, age)
	return n + m, err
}

// TestReconcileSaleFailureSparesOthers: a round whose withdrawal fails in
// one sale (its gate being rebuilt, a Redis blip) still releases the lost
// reservations of the other sales, and settles the reservation it found
// written in the failing one; the failing sale's lost reservation goes in
// the next round. (A round used to stop at the first error: one sale whose
// gate kept answering busy held every later sale's lost units.)
func TestReconcileSaleFailureSparesOthers(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	a, b := v.openSale(5), v.openSale(5)
	u := v.users(2)
	g := &hookedGate{StockGate: v.gate}
	bk := v.backends()
	bk.Gate = g
	e := v.recovered(Config{}, &bk)
	reserve := func(sale, user int64) string {
		t.Helper()
		ticket := newTicket()
		if r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: sale, UserID: user, Ticket: ticket}); err != nil || r != seckill.Reserved {
			t.Fatalf("reserve %d in %d: %v %v", user, sale, r, err)
		}
		return ticket
	}
	reserve(a.ID, u[0]) // lost: its instance died before the publish
	reserve(a.ID, u[1]) // written; the writer's settle was lost
	reserve(b.ID, u[0]) // lost
	v.writeOrders(a.ID, u[1])
	if n, err := e.Reconcile(ctx, 0); err != nil || n != 0 {
		t.Fatalf("first round: released %d, %v; want 0 (seen stale once)", n, err)
	}

	g.failSale = a.ID
	n, err := reconcileAgain(ctx, e, 0)
	if err == nil || n != 1 {
		t.Fatalf("round with sale %d's withdrawal failing: released %d, %v; want 1 (sale %d's) and the error", a.ID, n, err, b.ID)
	}
	if left := v.gateLeft(b.ID); left != 5 {
		t.Errorf("sale %d's gate left %d after its lost reservation's round, want 5", b.ID, left)
	}
	if stale, err := v.gate.Stale(ctx, a.ID, 0); err != nil || len(stale) != 1 || stale[0].UserID != u[0] {
		t.Errorf("sale %d pending after the failed round: %+v, %v; want only the lost %d (the written one settled)", a.ID, stale, err, u[0])
	}

	g.failSale = 0
	if n, err := reconcileAgain(ctx, e, 0); err != nil || n != 1 {
		t.Fatalf("round with the gate back: released %d, %v; want 1", n, err)
	}
	if left := v.gateLeft(a.ID); left != 4 {
		t.Errorf("sale %d's gate left %d, want 4 (one order)", a.ID, left)
	}
	v.checkAtRest(a.ID)
	v.checkAtRest(b.ID)
}

// reconcileAgain is the second round of reconcileTwice.
func reconcileAgain(ctx context.Context, e *Engine, age time.Duration) (int, error) {
	e.staleMu.Lock()
	for _, seen := range e.staleSeen {
		for k, at := range seen {
			seen[k] = at.Add(-e.staleWait)
		}
	}
	e.staleMu.Unlock()
	return e.Reconcile(ctx, age)
}
