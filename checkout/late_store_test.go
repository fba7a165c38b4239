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
// the server only after that, it still becomes an order: the buyer, told
// 503, has an order while the gate gave the unit back and forgot them. The
// unit then sells again: the next buyer is answered 202 and SQL, which has
// no unit for them, refuses them — a 202 that ends without an order and
// without a unit going back (I3), and the first buyer may be admitted
// again (I2). Nothing stops a message stored after the reconciler looked
// from being written: the reconcile age is a guess of how late a publish
// can land, not a fence.
func TestLateStoreAfterRelease(t *testing.T) {
	t.Skip("reproduces hole: a request stored after the reconciler released its reservation still becomes an order (reconcile.go Reconcile, writer.go WriteBatch); needs a fence between release and write, e.g. the writer claiming reservations at the gate before writing")
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
	if n, err := e.Reconcile(ctx, 30*time.Second); err != nil || n != 1 {
		t.Fatalf("reconcile released %d, %v; want 1", n, err)
	}
	lq.arrive(t) // the message lands after all

	ticket, err := e.Purchase(ctx, u[1], s.ID, path(t, e, u[1], s.ID))
	if err != nil {
		t.Fatalf("second buyer: %v", err)
	}
	runWriter(t, e)
	waitResult(t, e, u[0], s.ID, seckill.ResultSuccess)
	r := waitResultNot(t, e, u[1], s.ID, seckill.ResultQueued)
	if r.Status != seckill.ResultSuccess {
		t.Errorf("I3: buyer %d was answered 202 (ticket %s) and ends %+v; the unit went to buyer %d, answered 503, whose request landed after its reservation was released", u[1], ticket, r, u[0])
	}
	v.checkAtRest(s.ID)
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
