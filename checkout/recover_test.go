package checkout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// TestRecoverRebuildsGate publishes requests straight to the queue (no
// writer runs) on top of orders already in SQL, checks that loadGate counts
// both, then lets Recover drain the queue and rebuild the gate from SQL.
func TestRecoverRebuildsGate(t *testing.T) {
	// The queue does not deduplicate: the same (sale, user) can be queued
	// twice (a publish retried after a timeout).
	v := newEnv(t)
	ctx := context.Background()
	a := v.openSale(10)
	b := v.openSale(5)
	c := v.openSale(2)
	u := v.users(11)

	v.writeOrders(a.ID, u[0], u[1])
	v.publish(a.ID, u[1], u[2], u[3], u[4]) // u[1] already bought in SQL
	v.publish(b.ID, u[5], u[2])             // another sale: not a's buyers
	v.writeOrders(c.ID, u[0])
	v.publish(c.ID, u[1], u[2], u[3]) // more queued than c has left in SQL
	v.publish(a.ID, u[3])             // queued a second time
	if got := v.pending(a.ID); got != 5 {
		t.Fatalf("sale a: %d requests queued, want 5", got)
	}

	e := v.engine(Config{}, nil)
	tests := []struct {
		name     string
		sale     int64
		sqlLeft  int64
		gateLeft int64   // SQL left − distinct queued users who are not SQL buyers
		holders  []int64 // SQL buyers and queued users: Duplicate at the gate
	}{
		{"sale a", a.ID, 8, 8 - 3, []int64{u[0], u[1], u[2], u[3], u[4]}},
		{"sale b", b.ID, 5, 5 - 2, []int64{u[5], u[2]}},
		{"sale c, never below zero", c.ID, 1, 0, []int64{u[0], u[1], u[2], u[3]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := v.stats(tt.sale).SQLStockLeft; got != tt.sqlLeft {
				t.Fatalf("SQL stock_left %d, want %d", got, tt.sqlLeft)
			}
			if ok, err := e.loadGate(ctx, tt.sale); err != nil || !ok {
				t.Fatalf("loadGate: %v, %v", ok, err)
			}
			if got := v.gateLeft(tt.sale); got != tt.gateLeft {
				t.Fatalf("gate left %d, want %d", got, tt.gateLeft)
			}
			holds := map[int64]bool{}
			for _, user := range tt.holders {
				holds[user] = true
				if r := v.reserve(tt.sale, user); r != seckill.Duplicate {
					t.Errorf("user %d: gate says %v, want duplicate", user, r)
				}
			}
			if got := v.gateLeft(tt.sale); got != tt.gateLeft {
				t.Fatalf("duplicates moved the gate to %d, want %d", got, tt.gateLeft)
			}
			// Every other user gets one of the units left, then sold out.
			reserved := int64(0)
			for _, user := range u {
				if holds[user] {
					continue
				}
				switch r := v.reserve(tt.sale, user); {
				case r == seckill.Reserved:
					reserved++
				case r == seckill.SoldOut && reserved == tt.gateLeft:
				default:
					t.Fatalf("user %d: gate says %v after %d reserved of %d", user, r, reserved, tt.gateLeft)
				}
			}
			if reserved != tt.gateLeft {
				t.Errorf("%d units reserved, want %d", reserved, tt.gateLeft)
			}
		})
	}
	if got := v.pending(0); got != 5+2+3 {
		t.Fatalf("loadGate changed the queue: %d requests queued, want 10", got)
	}

	// Recover drains the queue into SQL and rebuilds every gate from SQL,
	// throwing away the reservations made above.
	if err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.Ready() {
		t.Fatal("not ready after Recover")
	}
	if got := v.pending(0); got != 0 {
		t.Fatalf("%d requests queued after Recover", got)
	}
	for _, want := range []struct {
		sale         int64
		orders, left int64
		buyers       []int64
	}{
		{a.ID, 5, 5, []int64{u[0], u[1], u[2], u[3], u[4]}},
		{b.ID, 2, 3, []int64{u[5], u[2]}},
		{c.ID, 2, 0, []int64{u[0], u[1]}}, // u[1] was first in line for c's last unit
	} {
		st := v.checkAtRest(want.sale)
		if st.Orders != want.orders || st.SQLStockLeft != want.left {
			t.Errorf("sale %d: %d orders, %d left; want %d, %d", want.sale, st.Orders, st.SQLStockLeft, want.orders, want.left)
		}
		buyers := v.buyers(want.sale)
		for _, user := range want.buyers {
			if !buyers[user] {
				t.Errorf("sale %d: user %d has no order", want.sale, user)
			}
			if r := v.reserve(want.sale, user); r != seckill.Duplicate {
				t.Errorf("sale %d: buyer %d: gate says %v after Recover, want duplicate", want.sale, user, r)
			}
		}
	}
	// The queued requests c had no unit for ended as failures.
	for _, user := range []int64{u[2], u[3]} {
		r := waitResult(t, e, user, c.ID, seckill.ResultFailed)
		if r.Reason != seckill.ESoldOut {
			t.Errorf("user %d in sale c: reason %q, want %q", user, r.Reason, seckill.ESoldOut)
		}
	}
}

// salesDown is a sale store whose list of sales fails while down (the
// database away), counting the reads.
type salesDown struct {
	seckill.SaleStore
	down  atomic.Bool
	reads atomic.Int64
}

func (s *salesDown) Sales(ctx context.Context) ([]*seckill.Sale, error) {
	s.reads.Add(1)
	if s.down.Load() {
		return nil, seckill.Errorf(seckill.EBusy, "database away")
	}
	return s.SaleStore.Sales(ctx)
}

// TestFailedRebuildsBackOff: while the database is away, the purchases
// answered busy each ask for a rebuild, and a failed one waits before the
// next starts, longer after each failure (found by review: 150 rebuilds,
// and as many error lines, a second per instance); once the database is
// back a rebuild runs within rebuildRetryMost.
func TestFailedRebuildsBackOff(t *testing.T) {
	v := newEnv(t)
	b := v.backends()
	sales := &salesDown{SaleStore: b.Sales}
	sales.down.Store(true)
	b.Sales = sales
	e := v.engine(Config{}, &b)
	start := time.Now()
	for time.Since(start) < 500*time.Millisecond {
		e.maybeRebuild()
		time.Sleep(time.Millisecond)
	}
	// Attempts at 0, 0.1, 0.3 s (and 0.7 s): 3, or 4 on a slow machine.
	if n := sales.reads.Load(); n < 2 || n > 5 {
		t.Fatalf("%d rebuilds tried in 0.5 s with the database away, want 3 (backing off from %v)", n, rebuildRetryFirst)
	}
	sales.down.Store(false)
	waitFor(t, "a rebuild once the database is back", func() bool {
		e.maybeRebuild()
		e.rebuildMu.Lock()
		defer e.rebuildMu.Unlock()
		return e.rebuildFails == 0 // reset by a rebuild that went through
	})
}
