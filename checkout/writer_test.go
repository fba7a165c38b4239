package checkout

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// downOrders is an OrderStore whose WriteOrders fails, writing nothing,
// while down is set, and records when it failed.
type downOrders struct {
	seckill.OrderStore
	down atomic.Bool

	mu       sync.Mutex
	failures []time.Time
	ok       int // successful calls
}

func (o *downOrders) WriteOrders(ctx context.Context, reqs []seckill.OrderRequest, payBy time.Time) ([]seckill.OrderResult, error) {
	if o.down.Load() {
		o.mu.Lock()
		o.failures = append(o.failures, time.Now())
		o.mu.Unlock()
		return nil, errors.New("sql down (test)")
	}
	rs, err := o.OrderStore.WriteOrders(ctx, reqs, payBy)
	if err == nil {
		o.mu.Lock()
		o.ok++
		o.mu.Unlock()
	}
	return rs, err
}

// span is the time from the first failed call to the nth.
func (o *downOrders) span(n int) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failures[n-1].Sub(o.failures[0])
}

// failuresWithin counts failed calls in the d after the first one.
func (o *downOrders) failuresWithin(d time.Duration) (n, total int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, at := range o.failures {
		if at.Sub(o.failures[0]) < d {
			n++
		}
	}
	return n, len(o.failures)
}

func TestWriterRetriesWhileSQLDown(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(50)
	users := v.users(20)
	orders := &downOrders{OrderStore: v.db}
	orders.down.Store(true)
	b := v.backends()
	b.Orders = orders
	e := v.recovered(Config{}, &b)
	runWriter(t, e)

	// Admission goes on while SQL is down: the queue holds the requests.
	tickets := map[int64]string{}
	for _, u := range users {
		tk, err := e.Purchase(ctx, u, s.ID, path(t, e, u, s.ID))
		if err != nil {
			t.Fatalf("purchase of user %d while SQL is down: %v", u, err)
		}
		tickets[u] = tk
	}
	// A writer without backoff fails again at once (nacked messages come
	// back at once): four failures within microseconds. With backoff
	// (50, 100, 200 ms…) the fourth comes 350 ms after the first; a loaded
	// machine only spreads them further, so the bound cannot flake.
	waitFor(t, "four failed writes", func() bool { _, total := orders.failuresWithin(0); return total >= 4 })
	if span := orders.span(4); span < 100*time.Millisecond {
		t.Errorf("four failed writes within %v: the writer does not back off", span)
	}
	if got := v.pending(s.ID); got != int64(len(users)) {
		t.Errorf("%d requests queued while SQL is down, want %d", got, len(users))
	}
	for _, u := range users[:3] {
		if r := result(t, e, u, s.ID); r.Status != seckill.ResultQueued {
			t.Errorf("user %d while SQL is down: %+v, want queued", u, r)
		}
	}
	// I4 in flight: the gate is SQL stock_left less what is queued.
	if st, err := e.Stats(ctx, s.ID); err != nil {
		t.Fatal(err)
	} else if st.Queued != int64(len(users)) || st.GateLeft != st.SQLStockLeft-st.Queued {
		t.Errorf("stats while SQL is down: gate %d, SQL %d, queued %d; want gate = SQL - queued = %d",
			st.GateLeft, st.SQLStockLeft, st.Queued, 50-len(users))
	}

	orders.down.Store(false)
	waitFor(t, "the queue to empty", func() bool { return v.pending(s.ID) == 0 })
	_, failed := orders.failuresWithin(0)
	if failed < 2 {
		t.Errorf("%d failed writes; want the batch retried at least once", failed)
	}
	st := v.checkAtRest(s.ID)
	if st.Orders != int64(len(users)) || st.SQLStockLeft != 50-int64(len(users)) {
		t.Errorf("%d orders, %d left; want %d, %d", st.Orders, st.SQLStockLeft, len(users), 50-len(users))
	}
	buyers := v.buyers(s.ID)
	for _, u := range users {
		if !buyers[u] {
			t.Errorf("user %d: request lost, no order", u)
			continue
		}
		o, err := v.db.OrderBySaleUser(ctx, s.ID, u)
		if err != nil {
			t.Fatal(err)
		}
		if o.OrderNo != tickets[u] {
			t.Errorf("user %d: order no %q, want the ticket %q", u, o.OrderNo, tickets[u])
		}
		if r := waitResult(t, e, u, s.ID, seckill.ResultSuccess); r.OrderID != o.ID {
			t.Errorf("user %d: result order %d, want %d", u, r.OrderID, o.ID)
		}
	}
}

func TestWriterRefusedOrders(t *testing.T) {
	t.Run("no such sale", func(t *testing.T) {
		v := newEnv(t)
		ctx := context.Background()
		u := v.users(2)
		const ghost = 999 // in the gate and the queue, not in SQL
		e := v.engine(Config{}, nil)
		bus := subscribeResults(t, v.queue)
		v.setGate(ghost, 1)
		if r := v.reserve(ghost, u[0]); r != seckill.Reserved {
			t.Fatalf("gate: %v", r)
		}
		v.publish(ghost, u[0])

		if n, err := e.WriteBatch(ctx); err != nil || n != 1 {
			t.Fatalf("WriteBatch: %d, %v; want 1, nil", n, err)
		}
		if got := v.pending(0); got != 0 {
			t.Errorf("refused request still queued (%d): it must be acked", got)
		}
		checkKept(t, v, ghost, u[0], 0)
		checkFailed(t, e, bus, ghost, u[0], "", seckill.ENotFound)
	})

	t.Run("sold out in SQL", func(t *testing.T) {
		v := newEnv(t)
		ctx := context.Background()
		s := v.openSale(2)
		u := v.users(3)
		v.writeOrders(s.ID, u[0], u[1])
		e := v.recovered(Config{}, nil)
		bus := subscribeResults(t, v.queue)
		// The gate believes one unit is left although SQL has none.
		v.setGate(s.ID, 1, u[0], u[1])
		ticket, err := e.Purchase(ctx, u[2], s.ID, path(t, e, u[2], s.ID))
		if err != nil {
			t.Fatalf("purchase: %v", err)
		}
		if got := v.gateLeft(s.ID); got != 0 {
			t.Fatalf("gate left %d after the purchase, want 0", got)
		}
		if n, err := e.WriteBatch(ctx); err != nil || n != 1 {
			t.Fatalf("WriteBatch: %d, %v; want 1, nil", n, err)
		}
		// The gate, one unit above SQL before, now agrees with it.
		checkKept(t, v, s.ID, u[2], 0)
		checkFailed(t, e, bus, s.ID, u[2], ticket, seckill.ESoldOut)
		st := v.stats(s.ID)
		if st.Orders != 2 || st.SQLStockLeft != 0 || st.LedgerSum != 0 {
			t.Errorf("SQL changed: %d orders, %d left, ledger %d; want 2, 0, 0", st.Orders, st.SQLStockLeft, st.LedgerSum)
		}
		if v.buyers(s.ID)[u[2]] {
			t.Errorf("refused user %d has an order", u[2])
		}
	})
}

// checkKept asserts that a refusal left the gate alone: the unit the gate
// held beyond SQL is not handed out again (left is what it must show), and
// the user keeps their one try (a retry is a duplicate).
func checkKept(t *testing.T, v *env, saleID, userID, left int64) {
	t.Helper()
	if got := v.gateLeft(saleID); got != left {
		t.Errorf("gate left %d after the refusal, want %d", got, left)
	}
	if r := v.reserve(saleID, userID); r != seckill.Duplicate {
		t.Errorf("user %d: gate says %v after the refusal, want duplicate", userID, r)
	}
}

// checkFailed asserts that the bus carried the failure and that the
// engine's result shows it with the reason. An empty ticket is not checked.
func checkFailed(t *testing.T, e *Engine, bus *collectResults, saleID, userID int64, ticket, reason string) {
	t.Helper()
	var got seckill.OrderResult
	waitFor(t, "the failed result on the bus", func() bool {
		var ok bool
		got, ok = bus.find(saleID, userID)
		return ok
	})
	if got.Status != seckill.ResultFailed || got.Reason != reason || got.OrderID != 0 || (ticket != "" && got.Ticket != ticket) {
		t.Errorf("bus result %+v, want failed %q with ticket %q", got, reason, ticket)
	}
	// Polled directly: until the engine hears the result, a sale SQL
	// does not have is not_found there.
	var r seckill.Result
	waitFor(t, "the engine's failed result", func() bool {
		var err error
		r, err = e.Result(context.Background(), userID, saleID)
		if err != nil && seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatal(err)
		}
		return err == nil && r.Status == seckill.ResultFailed
	})
	if r.Reason != reason || r.OrderID != 0 {
		t.Errorf("engine result %+v, want failed with reason %q", r, reason)
	}
}

// TestRetryAfterRefusal: a user whose order SQL refused keeps a terminal
// failed result, and a retry is a duplicate at the gate. A restart rebuilds
// the gate from SQL, which has no unit left: a retry is sold out. (The
// queue does not deduplicate; had a unit come back, the retry would be a
// purchase like any other.)
func TestRetryAfterRefusal(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(2)
	u := v.users(3)
	v.writeOrders(s.ID, u[0], u[1])
	e := v.recovered(Config{}, nil)
	v.setGate(s.ID, 1, u[0], u[1])
	p := path(t, e, u[2], s.ID)
	if _, err := e.Purchase(ctx, u[2], s.ID, p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteBatch(ctx); err != nil {
		t.Fatal(err)
	}
	waitResult(t, e, u[2], s.ID, seckill.ResultFailed)

	_, err := e.Purchase(ctx, u[2], s.ID, p)
	if seckill.ErrorCode(err) != seckill.EDuplicate {
		t.Fatalf("retry after refusal: %v, want duplicate", err)
	}
	if r := result(t, e, u[2], s.ID); r.Status != seckill.ResultFailed {
		t.Fatalf("result after the duplicate retry %+v, want the first failure", r)
	}
	// A restart rebuilds the gate from SQL, where the user has no order
	// and no unit is left: the retry is sold out, and nothing is queued.
	if err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.gateLeft(s.ID); got != 0 {
		t.Fatalf("gate left %d after the rebuild, want 0", got)
	}
	_, err = e.Purchase(ctx, u[2], s.ID, p)
	if seckill.ErrorCode(err) != seckill.ESoldOut {
		t.Fatalf("retry after restart: %v, want sold out", err)
	}
	if got := v.pending(s.ID); got != 0 {
		t.Fatalf("%d requests queued after the retry, want 0", got)
	}
}
