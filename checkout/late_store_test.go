package checkout

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"seckill"
)

// lateQueue answers the publishes it holds as sent but not acknowledged,
// and stores them only when told: a server that receives a message long
// after its publisher gave up (a partition between an instance and NATS
// that heals before the client's ping timeout, minutes by default, with
// the message waiting in the kernel's send buffer).
type lateQueue struct {
	seckill.OrderQueue
	mu   sync.Mutex
	hold bool
	held []seckill.OrderRequest
}

func (q *lateQueue) Publish(ctx context.Context, r seckill.OrderRequest) error {
	q.mu.Lock()
	hold := q.hold
	if hold {
		q.held = append(q.held, r)
	}
	q.mu.Unlock()
	if hold {
		return fmt.Errorf("%w: %w", seckill.Errorf(seckill.EBusy, "no ack (test)"), seckill.ErrMaybeStored)
	}
	return q.OrderQueue.Publish(ctx, r)
}

// arrive stores what was held and stops holding.
func (q *lateQueue) arrive(t *testing.T) {
	t.Helper()
	q.mu.Lock()
	held := q.held
	q.held, q.hold = nil, false
	q.mu.Unlock()
	for _, r := range held {
		if err := q.OrderQueue.Publish(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLateStoreAfterRelease: a publish sent but not acknowledged keeps its
// reservation (ErrMaybeStored); the reconciler releases it once it is
// older than its age and neither queued nor in SQL. If the message reaches
// the server only after that, it must not become an order: the unit went
// back to stock and sells again, and writing both would leave the next
// buyer, answered 202, refused by SQL (I3) and the first buyer free to be
// admitted again (I2). The writer claims the reservations of its batch at
// the gate before writing: the released one is refused and answered failed
// (expired), its unit being back in stock.
func TestLateStoreAfterRelease(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	u := v.users(2)
	lq := &lateQueue{OrderQueue: v.queue, hold: true}
	bk := v.backends()
	bk.Queue = lq
	e := v.recovered(Config{}, &bk)

	_, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID))
	wantCode(t, err, seckill.EBusy) // "may still go through"
	v.gateNow.advance(time.Minute)
	if n, err := reconcileTwice(ctx, e, 30*time.Second); err != nil || n != 1 {
		t.Fatalf("reconcile released %d, %v; want 1", n, err)
	}
	lq.arrive(t) // the message lands after all

	ticket, err := e.Purchase(ctx, u[1], s.ID, path(t, e, u[1], s.ID))
	if err != nil {
		t.Fatalf("second buyer: %v", err)
	}
	runWriter(t, e)
	r := waitResultNot(t, e, u[1], s.ID, seckill.ResultQueued)
	if r.Status != seckill.ResultSuccess {
		t.Errorf("I3: buyer %d was answered 202 (ticket %s) and ends %+v; the unit went to buyer %d, answered 503, whose request landed after its reservation was released", u[1], ticket, r, u[0])
	}
	if r := waitResultNot(t, e, u[0], s.ID, seckill.ResultNone); r.Status != seckill.ResultFailed || r.Reason != seckill.EExpired {
		t.Errorf("buyer %d, whose request landed after its reservation was released, ends %+v; want failed: %s", u[0], r, seckill.EExpired)
	}
	v.checkAtRest(s.ID)
	if st := v.stats(s.ID); st.Pending+st.Paid != 1 {
		t.Errorf("%d live orders, want 1 (buyer %d's)", st.Pending+st.Paid, u[1])
	}
}

// TestClaimedNotReleased: the other order of the race. The writer claims a
// request's reservation before the reconciler, which looked at the queue
// before the request reached it, releases it: the release is a no-op, the
// request becomes an order and its unit is not sold again.
func TestClaimedNotReleased(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	u := v.users(2)
	// The reconciler's look at the queue finds nothing: the message is
	// still in flight.
	bk := v.backends()
	bk.Queue = &blindQueue{OrderQueue: v.queue}
	e := v.recovered(Config{}, &bk)
	if _, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID)); err != nil {
		t.Fatal(err)
	}
	held := &holdWriteOrders{OrderStore: bk.Orders, claimed: make(chan struct{}), proceed: make(chan struct{})}
	bk.Orders = held
	w := v.engine(Config{}, &bk)
	done := make(chan error, 1)
	go func() { _, err := w.WriteBatch(ctx); done <- err }()
	<-held.claimed // claimed at the gate, not yet in SQL
	v.gateNow.advance(time.Minute)
	if _, err := reconcileTwice(ctx, e, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if left, _, _ := v.gate.Left(ctx, s.ID); left != 0 {
		t.Fatalf("the reconciler gave back the unit of a claimed reservation: %d left", left)
	}
	close(held.proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitResult(t, e, u[0], s.ID, seckill.ResultSuccess)
	_, err := e.Purchase(ctx, u[1], s.ID, path(t, e, u[1], s.ID))
	wantCode(t, err, seckill.ESoldOut)
	v.checkAtRest(s.ID)
}

// blindQueue shows no pending requests to the reconciler.
type blindQueue struct{ seckill.OrderQueue }

func (blindQueue) PendingRequests(context.Context, int64) ([]seckill.OrderRequest, error) {
	return nil, nil
}

// holdWriteOrders stops the writer between its claim and its SQL write.
type holdWriteOrders struct {
	seckill.OrderStore
	claimed, proceed chan struct{}
}

func (o *holdWriteOrders) WriteOrders(ctx context.Context, reqs []seckill.OrderRequest, payBy time.Time) ([]seckill.OrderResult, error) {
	close(o.claimed)
	<-o.proceed
	return o.OrderStore.WriteOrders(ctx, reqs, payBy)
}

// waitResultNot waits until the user's result is other than status.
func waitResultNot(t *testing.T, e *Engine, userID, saleID int64, status string) seckill.Result {
	t.Helper()
	var r seckill.Result
	waitFor(t, fmt.Sprintf("a result of user %d in sale %d other than %q", userID, saleID, status), func() bool {
		r = result(t, e, userID, saleID)
		return r.Status != status
	})
	return r
}

// TestWriterWaitsForTheGate: a served sale the gate lost (a shared gate's
// Redis restarted empty) cannot be claimed: the writer writes nothing and
// leaves the batch queued until the sale is rebuilt from SQL and the queue,
// which counts the queued request as on its way; then it writes it. Here
// the rebuild is the one the writer's busy starts (no Locker: the gate is
// the instance's own), or else the test's own load.
func TestWriterWaitsForTheGate(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(2)
	u := v.users(1)
	e := v.recovered(Config{}, nil)
	if _, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID)); err != nil {
		t.Fatal(err)
	}
	if err := v.gate.Forget(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteBatch(ctx); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("WriteBatch with the sale not loaded: %v, want busy", err)
	}
	if st := v.stats(s.ID); st.Pending != 0 || v.pending(s.ID) != 1 {
		t.Fatalf("%d orders, %d queued; want none written, the request still queued", st.Pending, v.pending(s.ID))
	}
	if _, err := e.loadGate(ctx, s.ID); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	// Our load may have lost its claim to the writer's rebuild, which
	// then installs the sale a moment later.
	waitFor(t, "the sale rebuilt", func() bool {
		_, loaded, err := v.gate.Left(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return loaded
	})
	drain(t, e)
	waitResult(t, e, u[0], s.ID, seckill.ResultSuccess)
	v.checkAtRest(s.ID)
}

// TestWriterEndedSaleUnclaimed: the gate no longer serves a sale that
// ended over gateKeep ago (nothing loads it), so its requests still queued
// are written without a claim, as the reconciler no longer releases their
// reservations either.
func TestWriterEndedSaleUnclaimed(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	old := v.sale(2, now.Add(-3*time.Hour), now.Add(-gateKeep-time.Minute))
	u := v.users(1)
	v.publish(old.ID, u[0])
	e := v.engine(Config{}, nil)
	if _, err := e.WriteBatch(ctx); err != nil {
		t.Fatal(err)
	}
	if st := v.stats(old.ID); st.Pending != 1 || v.pending(old.ID) != 0 {
		t.Fatalf("%d orders, %d queued; want the request written", st.Pending, v.pending(old.ID))
	}
}
