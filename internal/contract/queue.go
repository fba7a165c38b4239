package contract

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"seckill"
)

// QueueUnderTest is one fresh, empty order queue and its result bus.
type QueueUnderTest struct {
	Queue seckill.OrderQueue
	Bus   seckill.ResultBus
	// Reopen closes Queue and Bus and opens them again on the same storage,
	// as a restart of the process would. Nil when the backend cannot.
	Reopen func(t *testing.T) (seckill.OrderQueue, seckill.ResultBus)
}

// TestOrderQueue runs the contract of seckill.OrderQueue and
// seckill.ResultBus. open is called once per subtest and must return an
// empty queue that it closes in t.Cleanup.
func TestOrderQueue(t *testing.T, open func(t *testing.T) QueueUnderTest) {
	t.Run("RoundTrip", func(t *testing.T) {
		q := open(t).Queue
		want := seckill.OrderRequest{SaleID: 7, UserID: 42, Ticket: "T-7-42-xyz", PriceCents: 1999,
			At: time.Date(2026, 11, 11, 0, 0, 0, 123456789, time.UTC)}
		queuePublish(t, q, want)
		ds := queueFetchN(t, q, 1, 5*time.Second)
		checkOrderRequest(t, ds[0].Request(), want)
		queueAck(t, ds...)
		queueWantPending(t, q, 7, 0)
		if ds := queueFetch(t, q, 10, 200*time.Millisecond); len(ds) != 0 {
			t.Fatalf("fetch after ack: got %d deliveries, want 0", len(ds))
		}
	})

	t.Run("ZeroTimeAndLocalTime", func(t *testing.T) {
		q := open(t).Queue
		now := time.Now()
		rs := []seckill.OrderRequest{
			{SaleID: 1, UserID: 1, Ticket: ""},
			{SaleID: 1, UserID: 2, Ticket: "t", At: now, PriceCents: -5},
		}
		for _, r := range rs {
			queuePublish(t, q, r)
		}
		got := deliveryRequests(queueFetchN(t, q, 2, 5*time.Second))
		sortOrderRequests(got)
		for i := range rs {
			checkOrderRequest(t, got[i], rs[i])
		}
	})

	t.Run("SamePairTwiceIsDeliveredTwice", func(t *testing.T) {
		// The queue does not deduplicate (the gate does, and SQL's unique
		// key settles a pair once): a retried publish must not be lost.
		q := open(t).Queue
		first := orderReq(3, 9)
		second := first
		second.Ticket = "another ticket"
		queuePublish(t, q, first)
		queuePublish(t, q, second)
		queuePublish(t, q, orderReq(4, 9))
		queueWantPending(t, q, 3, 2)
		queueWantPending(t, q, 0, 3)
		got := deliveryRequests(queueFetchN(t, q, 3, 5*time.Second))
		sortOrderRequests(got)
		checkOrderRequests(t, got, []seckill.OrderRequest{first, second, orderReq(4, 9)})
	})

	t.Run("FetchDoesNotWaitToFillBatch", func(t *testing.T) {
		q := open(t).Queue
		for u := int64(1); u <= 3; u++ {
			queuePublish(t, q, orderReq(1, u))
		}
		const wait = 10 * time.Second
		start := time.Now()
		var got []seckill.Delivery
		for len(got) < 3 && time.Since(start) < wait {
			got = append(got, queueFetch(t, q, 100, wait)...)
		}
		if d := time.Since(start); d > wait/2 {
			t.Fatalf("3 messages, max 100: fetch took %v, want it to return once they are there (wait %v)", d, wait)
		}
		if len(got) != 3 {
			t.Fatalf("got %d deliveries, want 3", len(got))
		}
		queueAck(t, got...)
	})

	t.Run("FetchEmptyWaits", func(t *testing.T) {
		q := open(t).Queue
		const wait = 300 * time.Millisecond
		start := time.Now()
		ds := queueFetch(t, q, 10, wait)
		d := time.Since(start)
		if len(ds) != 0 {
			t.Fatalf("empty queue: got %d deliveries", len(ds))
		}
		if d < wait*2/3 || d > wait+3*time.Second {
			t.Fatalf("empty queue: fetch returned after %v, want about %v", d, wait)
		}
	})

	t.Run("FetchRespectsContext", func(t *testing.T) {
		q := open(t).Queue
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		ds, _ := q.Fetch(ctx, 10, 30*time.Second)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("fetch with a 200ms context returned after %v", d)
		}
		if len(ds) != 0 {
			t.Fatalf("empty queue: got %d deliveries", len(ds))
		}
		// A message published now is still delivered.
		queuePublish(t, q, orderReq(1, 1))
		queueAck(t, queueFetchN(t, q, 1, 5*time.Second)...)
	})

	t.Run("NakRedelivers", func(t *testing.T) {
		q := open(t).Queue
		queuePublish(t, q, orderReq(2, 5))
		ds := queueFetchN(t, q, 1, 5*time.Second)
		if err := ds[0].Nak(t.Context()); err != nil {
			t.Fatalf("nak: %v", err)
		}
		again := queueFetchN(t, q, 1, 10*time.Second)
		checkOrderRequest(t, again[0].Request(), orderReq(2, 5))
		queueAck(t, again...)
		queueWantPending(t, q, 2, 0)
	})

	t.Run("Pending", func(t *testing.T) {
		q := open(t).Queue
		queueWantPending(t, q, 0, 0)
		for u := int64(1); u <= 3; u++ {
			queuePublish(t, q, orderReq(10, u))
		}
		for u := int64(1); u <= 2; u++ {
			queuePublish(t, q, orderReq(11, u))
		}
		queueWantPending(t, q, 10, 3)
		queueWantPending(t, q, 11, 2)
		queueWantPending(t, q, 12, 0)
		queueWantPending(t, q, 0, 5)

		ds := queueFetchN(t, q, 5, 5*time.Second)
		// Fetched but not acked is still pending.
		queueWantPending(t, q, 10, 3)
		queueWantPending(t, q, 0, 5)
		for _, d := range ds {
			if d.Request().SaleID == 10 {
				queueAck(t, d)
			}
		}
		queueWantPending(t, q, 10, 0)
		queueWantPending(t, q, 11, 2)
		queueWantPending(t, q, 0, 2)
	})

	t.Run("PendingRequests", func(t *testing.T) {
		q := open(t).Queue
		var want []seckill.OrderRequest
		for u := int64(1); u <= 4; u++ {
			r := orderReq(20, u)
			queuePublish(t, q, r)
			want = append(want, r)
		}
		queuePublish(t, q, orderReq(21, 1))
		checkOrderRequests(t, queuePendingRequests(t, q, 20), want)

		// Listing did not consume anything.
		ds := queueFetchN(t, q, 5, 5*time.Second)
		checkOrderRequests(t, queuePendingRequests(t, q, 20), want)
		for _, d := range ds {
			if r := d.Request(); r.SaleID == 20 && r.UserID%2 == 1 {
				queueAck(t, d)
			}
		}
		checkOrderRequests(t, queuePendingRequests(t, q, 20), []seckill.OrderRequest{orderReq(20, 2), orderReq(20, 4)})
		checkOrderRequests(t, queuePendingRequests(t, q, 21), []seckill.OrderRequest{orderReq(21, 1)})
		checkOrderRequests(t, queuePendingRequests(t, q, 22), nil)
	})

	t.Run("UnackedComeBackAfterReopen", func(t *testing.T) {
		qt := open(t)
		if qt.Reopen == nil {
			t.Skip("backend cannot reopen")
		}
		q := qt.Queue
		for u := int64(1); u <= 3; u++ {
			queuePublish(t, q, orderReq(30, u))
		}
		ds := queueFetchN(t, q, 3, 5*time.Second)
		queueAck(t, ds[0])
		q, _ = qt.Reopen(t)
		queueWantPending(t, q, 30, 2)
		// Allow for an AckWait before redelivery.
		got := queueFetchN(t, q, 2, 45*time.Second)
		users := map[int64]bool{}
		for _, d := range got {
			users[d.Request().UserID] = true
		}
		if users[ds[0].Request().UserID] || len(users) != 2 {
			t.Fatalf("redelivered users %v; acked %d before reopen", users, ds[0].Request().UserID)
		}
		queueAck(t, got...)
		queueWantPending(t, q, 0, 0)
	})

	t.Run("PublishedSurviveReopen", func(t *testing.T) {
		qt := open(t)
		if qt.Reopen == nil {
			t.Skip("backend cannot reopen")
		}
		var want []seckill.OrderRequest
		for u := int64(1); u <= 5; u++ {
			r := orderReq(31, u)
			queuePublish(t, qt.Queue, r)
			want = append(want, r)
		}
		q, _ := qt.Reopen(t)
		queueWantPending(t, q, 31, 5)
		checkOrderRequests(t, queuePendingRequests(t, q, 31), want)
		got := deliveryRequests(queueFetchN(t, q, 5, 5*time.Second))
		checkOrderRequests(t, got, want)
	})

	t.Run("ResultBus", func(t *testing.T) {
		bus := open(t).Bus
		a, b := &collector[seckill.OrderResult]{}, &collector[seckill.OrderResult]{}
		cancelA, err := bus.SubscribeResults(a.add)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		defer cancelA()
		cancelB, err := bus.SubscribeResults(b.add)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		rs := []seckill.OrderResult{
			{SaleID: 1, UserID: 1, Result: seckill.Result{Ticket: "a", Status: seckill.ResultSuccess, OrderID: 10}},
			{SaleID: 1, UserID: 2, Result: seckill.Result{Ticket: "b", Status: seckill.ResultFailed, Reason: seckill.ESoldOut}},
		}
		if err := bus.PublishResults(t.Context(), rs); err != nil {
			t.Fatalf("publish results: %v", err)
		}
		a.waitFor(t, 2)
		b.waitFor(t, 2)
		for i, got := range a.all() {
			if got != rs[i] {
				t.Fatalf("result %d: got %+v, want %+v", i, got, rs[i])
			}
		}
		cancelB()
		cancelB() // twice is fine
		if err := bus.PublishResults(t.Context(), rs[:1]); err != nil {
			t.Fatalf("publish results: %v", err)
		}
		a.waitFor(t, 3)
		time.Sleep(100 * time.Millisecond)
		if n := len(b.all()); n != 2 {
			t.Fatalf("cancelled subscriber got %d results, want 2", n)
		}
		if err := bus.PublishResults(t.Context(), nil); err != nil {
			t.Fatalf("publish no results: %v", err)
		}
	})

	t.Run("RequestFeed", func(t *testing.T) {
		q := open(t).Queue
		feed, ok := q.(seckill.RequestFeed)
		if !ok {
			t.Skip("backend has no request feed")
		}
		seen := &collector[seckill.OrderRequest]{}
		cancel, err := feed.SubscribeRequests(seen.add, func() {})
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		// Published at once, so a backend that groups requests into one
		// message hands each of them to the feed.
		var want []seckill.OrderRequest
		var wg sync.WaitGroup
		for u := int64(1); u <= 20; u++ {
			r := orderReq(41, u)
			want = append(want, r)
			wg.Go(func() { queuePublish(t, q, r) })
		}
		wg.Wait()
		seen.waitFor(t, len(want))
		checkOrderRequests(t, seen.all(), want)
		cancel()
		cancel() // twice is fine
		queuePublish(t, q, orderReq(41, 99))
		time.Sleep(100 * time.Millisecond)
		if n := len(seen.all()); n != len(want) {
			t.Fatalf("cancelled feed got %d requests, want %d", n, len(want))
		}
		queueAck(t, queueFetchN(t, q, len(want)+1, 5*time.Second)...)
	})

	t.Run("ConcurrentPublishers", func(t *testing.T) {
		q := open(t).Queue
		const publishers, perPublisher = 50, 100
		// Every user twice from its own publisher, and every tenth also from
		// the next publisher: each publish is delivered once.
		plan := make([][]int64, publishers)
		want := map[int64]int{}
		total := 0
		for p := range publishers {
			for i := range perPublisher {
				u := int64(p*perPublisher + i + 1)
				plan[p] = append(plan[p], u, u)
				if i%10 == 0 {
					plan[p] = append(plan[p], int64(((p+1)%publishers)*perPublisher+i+1))
				}
			}
			for _, u := range plan[p] {
				want[u]++
				total++
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, publishers+2)
		for p := range publishers {
			wg.Go(func() {
				for _, u := range plan[p] {
					if err := q.Publish(context.Background(), orderReq(40+u%2, u)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		// Two writers fetch while the publishers run.
		var mu sync.Mutex
		seen := make(map[int64]int, len(want))
		n := 0
		deadline := time.Now().Add(60 * time.Second)
		var fetchers sync.WaitGroup
		for range 2 {
			fetchers.Go(func() {
				for time.Now().Before(deadline) {
					mu.Lock()
					done := n >= total
					mu.Unlock()
					if done {
						return
					}
					ds, err := q.Fetch(t.Context(), 100, 200*time.Millisecond)
					if err != nil {
						errs <- err
						return
					}
					for _, d := range ds {
						r := d.Request()
						if r.SaleID != 40+r.UserID%2 {
							errs <- fmt.Errorf("request %+v: wrong sale", r)
						}
						mu.Lock()
						seen[r.UserID]++
						n++
						mu.Unlock()
						if err := d.Ack(t.Context()); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		fetchers.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n != total || len(seen) != len(want) {
			t.Fatalf("fetched %d requests of %d users, want %d of %d", n, len(seen), total, len(want))
		}
		for u, k := range want {
			if seen[u] != k {
				t.Fatalf("user %d fetched %d times, want %d", u, seen[u], k)
			}
		}
		queueWantPending(t, q, 0, 0)
		if ds := queueFetch(t, q, 10, 100*time.Millisecond); len(ds) != 0 {
			t.Fatalf("fetch after all acked: %d deliveries", len(ds))
		}
	})
}

func orderReq(sale, user int64) seckill.OrderRequest {
	return seckill.OrderRequest{
		SaleID: sale, UserID: user,
		Ticket:     fmt.Sprintf("T%d-%d", sale, user),
		PriceCents: 100 + user,
		At:         time.Unix(1_800_000_000+user, user*1000).UTC(),
	}
}

func queuePublish(t *testing.T, q seckill.OrderQueue, r seckill.OrderRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := q.Publish(ctx, r); err != nil {
		t.Fatalf("publish %+v: %v", r, err)
	}
}

func queueFetch(t *testing.T, q seckill.OrderQueue, max int, wait time.Duration) []seckill.Delivery {
	t.Helper()
	ds, err := q.Fetch(t.Context(), max, wait)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if len(ds) > max {
		t.Fatalf("fetch max %d: got %d", max, len(ds))
	}
	return ds
}

// fetchN fetches until it has exactly n deliveries, failing after wait or
// when more arrive.
func queueFetchN(t *testing.T, q seckill.OrderQueue, n int, wait time.Duration) []seckill.Delivery {
	t.Helper()
	deadline := time.Now().Add(wait)
	var ds []seckill.Delivery
	for len(ds) < n {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("fetched %d deliveries in %v, want %d", len(ds), wait, n)
		}
		ds = append(ds, queueFetch(t, q, n-len(ds), left)...)
	}
	if more := queueFetch(t, q, 10, 50*time.Millisecond); len(more) != 0 {
		t.Fatalf("fetched %d more deliveries than the %d expected", len(more), n)
	}
	return ds
}

func queueAck(t *testing.T, ds ...seckill.Delivery) {
	t.Helper()
	for _, d := range ds {
		if err := d.Ack(t.Context()); err != nil {
			t.Fatalf("ack %+v: %v", d.Request(), err)
		}
	}
}

func queueWantPending(t *testing.T, q seckill.OrderQueue, sale, want int64) {
	t.Helper()
	got, err := q.Pending(t.Context(), sale)
	if err != nil {
		t.Fatalf("pending %d: %v", sale, err)
	}
	if got != want {
		t.Fatalf("pending %d: got %d, want %d", sale, got, want)
	}
}

func queuePendingRequests(t *testing.T, q seckill.OrderQueue, sale int64) []seckill.OrderRequest {
	t.Helper()
	rs, err := q.PendingRequests(t.Context(), sale)
	if err != nil {
		t.Fatalf("pending requests %d: %v", sale, err)
	}
	return rs
}

func deliveryRequests(ds []seckill.Delivery) []seckill.OrderRequest {
	rs := make([]seckill.OrderRequest, len(ds))
	for i, d := range ds {
		rs[i] = d.Request()
	}
	return rs
}

func sortOrderRequests(rs []seckill.OrderRequest) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].SaleID != rs[j].SaleID {
			return rs[i].SaleID < rs[j].SaleID
		}
		if rs[i].UserID != rs[j].UserID {
			return rs[i].UserID < rs[j].UserID
		}
		return rs[i].Ticket < rs[j].Ticket
	})
}

func checkOrderRequest(t *testing.T, got, want seckill.OrderRequest) {
	t.Helper()
	if got.SaleID != want.SaleID || got.UserID != want.UserID || got.Ticket != want.Ticket ||
		got.PriceCents != want.PriceCents || !got.At.Equal(want.At) {
		t.Fatalf("request: got %+v, want %+v", got, want)
	}
}

// checkRequests compares regardless of order.
func checkOrderRequests(t *testing.T, got, want []seckill.OrderRequest) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d requests %+v, want %d %+v", len(got), got, len(want), want)
	}
	got = append([]seckill.OrderRequest(nil), got...)
	want = append([]seckill.OrderRequest(nil), want...)
	sortOrderRequests(got)
	sortOrderRequests(want)
	for i := range got {
		checkOrderRequest(t, got[i], want[i])
	}
}

// collector gathers what a subscription hands it (results, requests).
type collector[T any] struct {
	mu    sync.Mutex
	items []T
}

func (c *collector[T]) add(x T) {
	c.mu.Lock()
	c.items = append(c.items, x)
	c.mu.Unlock()
}

func (c *collector[T]) all() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.items...)
}

// waitFor waits up to 5 s for exactly n items.
func (c *collector[T]) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.all()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d in 5s, want %d", len(c.all()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(c.all()); got != n {
		t.Fatalf("got %d, want %d", got, n)
	}
}
