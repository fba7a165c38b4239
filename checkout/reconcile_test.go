package checkout

import (
	"context"
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
	old := time.Now().Add(-time.Minute)
	tickets := map[int64]string{}
	for _, user := range u {
		at := old
		if user == u[3] {
			at = time.Now() // young: its publish may still be in flight
		}
		tickets[user] = newTicket()
		r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: s.ID, UserID: user, Ticket: tickets[user], At: at})
		if err != nil || r != seckill.Reserved {
			t.Fatalf("reserve %d: %v %v", user, r, err)
		}
	}
	v.publishTicket(s.ID, u[1], tickets[u[1]]) // queued, not yet written
	v.writeOrders(s.ID, u[2])                  // written; the writer's settle was lost
	if got := v.gateLeft(s.ID); got != 6 {
		t.Fatalf("gate left %d, want 6", got)
	}

	released, err := e.Reconcile(ctx, 30*time.Second)
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
	stale, err := v.gate.Stale(ctx, s.ID, time.Now().Add(-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0].UserID != u[1] {
		t.Fatalf("stale after reconcile %+v, want only the queued user %d", stale, u[1])
	}
	// Once the writer has settled it, nothing is stale.
	drain(t, e)
	left := map[int64]bool{}
	stale, _ = v.gate.Stale(ctx, s.ID, time.Now().Add(time.Second))
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
	if stale, _ := v.gate.Stale(ctx, s.ID, time.Now().Add(time.Second)); len(stale) != 3 {
		t.Fatalf("%d reservations before the writer, want 3", len(stale))
	}
	drain(t, e)
	if stale, _ := v.gate.Stale(ctx, s.ID, time.Now().Add(time.Second)); len(stale) != 0 {
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
	release, ok, _ := locker.TryLock(ctx, rebuildLock, time.Minute)
	if !ok {
		t.Fatal("could not take the lock")
	}
	_, err := e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID))
	wantCode(t, err, seckill.EBusy)
	time.Sleep(200 * time.Millisecond)
	if _, loaded, _ := v.gate.Left(ctx, s.ID); loaded {
		t.Fatal("gate rebuilt without the lock")
	}
	_ = release(ctx)

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
	if err := v.gate.Load(ctx, held.ID, 7, []int64{u[0]}); err != nil { // live state of the others
		t.Fatal(err)
	}
	v.publish(held.ID, u[1])

	// Another instance is rebuilding: this one waits, not ready.
	release, _, _ := locker.TryLock(ctx, rebuildLock, time.Minute)
	e := v.engine(Config{PublishTimeout: 10 * time.Millisecond}, &b)
	done := make(chan error, 1)
	go func() { done <- e.Recover(ctx) }()
	time.Sleep(300 * time.Millisecond)
	if e.Ready() {
		t.Fatal("ready while the gate lacks a sale")
	}
	_ = release(ctx)
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
