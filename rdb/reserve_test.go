package rdb

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"seckill"
)

// TestReserveBatchAnswersInOrder runs one script for several reservations
// and checks that each is answered as if alone, in order: a user twice in
// one script is a buyer the second time, the units run out in the middle,
// and a user's bucket is taken once per reservation.
func TestReserveBatchAnswersInOrder(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		mustLoad(t, g, 1, 2, []int64{9})
		mustLoad(t, g, 2, 5, nil)
		if err := g.fresh(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := g.fresh(ctx, 2); err != nil {
			t.Fatal(err)
		}
		batch := func(key reserveKey, users ...int64) []int64 {
			t.Helper()
			calls := runBatch(g, key, users...)
			got := make([]int64, len(calls))
			for i, c := range calls {
				if !isDone(c.done) || c.err != nil {
					t.Fatalf("call %d: done %v, err %v", i, isDone(c.done), c.err)
				}
				got[i] = c.res
			}
			return got
		}
		want := func(got []int64, want ...seckill.GateResult) {
			t.Helper()
			for i := range want {
				if i >= len(got) || got[i] != int64(want[i]) {
					t.Fatalf("answers %v, want %v", got, want)
				}
			}
		}
		want(batch(reserveKey{sale: 1, burst: 1}, 1, 1, 9, 2, 3, 2),
			seckill.Reserved, seckill.Duplicate, seckill.Duplicate, seckill.Reserved, seckill.SoldOut, seckill.Duplicate)
		left, _, err := g.Left(ctx, 1)
		if err != nil || left != 0 {
			t.Fatalf("left %d, %v; want 0", left, err)
		}
		rs, err := g.Stale(ctx, 1, 0)
		if err != nil || len(rs) != 2 {
			t.Fatalf("pending %+v, %v; want users 1 and 2", rs, err)
		}
		for _, r := range rs {
			if want := map[int64]string{1: "T0", 2: "T3"}[r.UserID]; r.Ticket != want {
				t.Fatalf("user %d pending with ticket %q, want %q", r.UserID, r.Ticket, want)
			}
		}
		// A bucket of two: one user pressing four times in one script.
		// The press that reserves takes no token, the refused ones do.
		slow := reserveKey{sale: 2, rate: 0.001, burst: 2}
		want(batch(slow, 5, 5, 5, 6, 5), seckill.Reserved, seckill.Duplicate, seckill.Duplicate, seckill.Reserved, seckill.Limited)
		want(batch(slow, 6, 6, 6), seckill.Duplicate, seckill.Duplicate, seckill.Limited)
		if left, _, err := g.Left(ctx, 2); err != nil || left != 3 {
			t.Fatalf("left %d, %v; want 3", left, err)
		}
		// A sale not loaded answers so for every reservation.
		want(batch(reserveKey{sale: 3, burst: 1}, 1, 2), -1, -1)
	})
}

// TestReserveOneUserConcurrently: many presses of one user at once, most
// sharing scripts, reserve one unit.
func TestReserveOneUserConcurrently(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		mustLoad(t, g, 1, 10, nil)
		var (
			wg                  sync.WaitGroup
			mu                  sync.Mutex
			reserved, duplicate int
		)
		for i := range 200 {
			wg.Go(func() {
				r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 7, Ticket: strconv.Itoa(i)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Error(err)
				case r == seckill.Reserved:
					reserved++
				case r == seckill.Duplicate:
					duplicate++
				default:
					t.Errorf("press answered %v", r)
				}
			})
		}
		wg.Wait()
		if reserved != 1 || duplicate != 199 {
			t.Fatalf("%d reserved, %d duplicate; want 1 and 199", reserved, duplicate)
		}
		if left, _, err := g.Left(ctx, 1); err != nil || left != 9 {
			t.Fatalf("left %d, %v; want 9", left, err)
		}
		waitQueuesEmpty(t, g)
	})
}

// TestReserveCallerGaveUp: a reservation whose caller's context ended
// before its script left is answered with the context's error and never
// sent: the user is no buyer and can reserve afterwards.
func TestReserveCallerGaveUp(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		loadChecked(t, g, 1, 1)
		gone, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := g.Reserve(gone, seckill.Reservation{SaleID: 1, UserID: 7, Ticket: "gone"}); err == nil {
			t.Fatal("a cancelled reservation answered without error")
		}
		if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 7, Ticket: "here"}); err != nil || r != seckill.Reserved {
			t.Fatalf("Reserve after the cancelled one = %v, %v; want reserved", r, err)
		}
	})
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// runBatch runs one reserve script for users, the i-th with ticket "Ti",
// and returns their calls, answered.
func runBatch(g *Gate, key reserveKey, users ...int64) []*reserveCall {
	calls := make([]*reserveCall, len(users))
	for i, u := range users {
		calls[i] = &reserveCall{ctx: context.Background(), user: strconv.FormatInt(u, 10), ticket: "T" + strconv.Itoa(i), done: make(chan struct{})}
	}
	g.reserveBatch(key, calls)
	return calls
}

// waitReturned waits for every caller of wg, failing the test after a
// minute.
func waitReturned(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal(what + " never returned")
	}
}

// waitQueuesEmpty waits until the gate holds no sale's reserve queue.
func waitQueuesEmpty(t *testing.T, g *Gate) {
	t.Helper()
	waitFor(t, "reserve queues to empty", func() bool {
		g.resvMu.Lock()
		defer g.resvMu.Unlock()
		return len(g.resv) == 0
	})
}

// loadChecked loads a sale the gate does not hold and checks it against
// its server (Gate.fresh), as the first Reserve would.
func loadChecked(t *testing.T, g *Gate, saleID, left int64) {
	t.Helper()
	mustLoad(t, g, saleID, left, nil)
	if err := g.fresh(context.Background(), saleID); err != nil {
		t.Fatal(err)
	}
}

// TestForgetDropsWhatTheClientKeeps: a sale this client reserved in
// leaves no entry in the client's own maps once forgotten (before, the
// sales it had checked and their buckets stayed for the life of the
// process, and every new server checked them all again), and a second
// Forget, of a sale already gone, is no error.
func TestForgetDropsWhatTheClientKeeps(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		mustLoad(t, g, 1, 2, nil)
		if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 7, Ticket: "t7", At: time.Now(), Limit: seckill.Bucket{PerSecond: 5, Burst: 10}}); err != nil || r != seckill.Reserved {
			t.Fatalf("reserve: %v %v", r, err)
		}
		if _, ok := g.checked.Load(int64(1)); !ok {
			t.Fatal("the reserved sale is not among the checked ones")
		}
		if _, ok := g.buckets.Load(int64(1)); !ok {
			t.Fatal("the reserved sale's bucket is not remembered")
		}
		for range 2 {
			if err := g.Forget(ctx, 1); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := g.checked.Load(int64(1)); ok {
			t.Error("a forgotten sale is still checked on every new server")
		}
		if _, ok := g.buckets.Load(int64(1)); ok {
			t.Error("a forgotten sale's bucket is still remembered")
		}
	})
}
