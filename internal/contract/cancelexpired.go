package contract

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"seckill"
)

// testCancelExpired checks CancelExpired's outcomes: of the orders named it
// cancels exactly those pending and past their deadline, each as
// CancelOrder would (one unit back, one unapplied 'cancel' row), and
// reports the payments opened.
func testCancelExpired(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	a, b := storeNewSale(t, s.Stores, 20), storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 8)
	now := storeNow()
	// Deadlines in minutes from now; a: users 0..6, b: user 7 and 0.
	offsets := []int{-5, -1, -3, 1, -2, -4, 0}
	var oa []*seckill.Order
	for i, off := range offsets {
		oa = append(oa, lcOrders(t, s, a.ID, users[i:i+1], now.Add(time.Duration(off)*time.Minute))...)
	}
	ob := lcOrders(t, s, b.ID, []int64{users[7], users[0]}, now.Add(-time.Minute))

	// Nothing to do is no error.
	got, err := s.Lifecycle.CancelExpired(ctx, nil, now)
	storeNoErr(t, err)
	if len(got) != 0 {
		t.Fatalf("CancelExpired(no ids) = %+v", got)
	}

	_, _, err = s.Lifecycle.ApplyPayment(ctx, lcPayment(oa[2], "TR-cx-2", now)) // -3, paid
	storeNoErr(t, err)
	_, err = s.Lifecycle.CancelOrder(ctx, oa[5].ID, oa[5].UserID, now, false) // -4, cancelled by its buyer
	storeNoErr(t, err)
	storeNoErr(t, s.Lifecycle.MarkPayOpened(ctx, oa[4].ID)) // -2, opened
	storeNoErr(t, s.Lifecycle.MarkPayOpened(ctx, ob[1].ID))
	before, err := s.Lifecycle.UnappliedReturns(ctx, 0, 100)
	storeNoErr(t, err)

	// Every order, one twice, one unknown, out of order.
	ids := []int64{ob[1].ID, oa[6].ID, oa[3].ID, oa[0].ID, oa[2].ID, oa[5].ID, oa[1].ID, oa[4].ID, ob[0].ID, oa[0].ID, ob[1].ID + 1000}
	got, err = s.Lifecycle.CancelExpired(ctx, ids, now)
	storeNoErr(t, err)
	// -5, -1, -2 (opened), 0 (a deadline equal to now has passed), and b's two.
	want := []*seckill.Order{oa[0], oa[1], oa[4], oa[6], ob[0], ob[1]}
	slices.SortFunc(want, func(x, y *seckill.Order) int { return int(x.ID - y.ID) })
	if len(got) != len(want) {
		t.Fatalf("CancelExpired = %d orders, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		opened := w == oa[4] || w == ob[1]
		if g.ID != w.ID || g.SaleID != w.SaleID || g.UserID != w.UserID || g.OrderNo != w.OrderNo ||
			g.Status != seckill.OrderCancelled || g.CancelledAt == nil || !g.CancelledAt.Equal(now) ||
			!g.PayDeadline.Equal(w.PayDeadline) || g.PaidAt != nil || g.PayOpened != opened {
			t.Errorf("CancelExpired[%d] = %+v, want order %d cancelled at %v, opened %v", i, g, w.ID, now, opened)
		}
		stored := lcOrder(t, s, w.ID)
		if stored.Status != seckill.OrderCancelled || stored.CancelledAt == nil || !stored.CancelledAt.Equal(now) || stored.PayOpened != opened {
			t.Errorf("stored order = %+v, want cancelled at %v", stored, now)
		}
	}
	// The others did not move.
	for o, st := range map[*seckill.Order]seckill.OrderStatus{oa[2]: seckill.OrderPaid, oa[3]: seckill.OrderPending, oa[5]: seckill.OrderCancelled} {
		if g := lcOrder(t, s, o.ID); g.Status != st {
			t.Errorf("order %d is %s, want %s", o.ID, g.Status, st)
		}
	}
	// a: 20 - 7 orders + the buyer's cancel + 4 swept; b: 10 - 2 + 2.
	if st := lcCheckI4(t, s, a.ID); st.SQLStockLeft != 18 || st.Cancelled != 5 || st.Paid != 1 || st.Pending != 1 {
		t.Errorf("sale a: %+v, want 18 left, 5 cancelled, 1 paid, 1 pending", st)
	}
	if st := lcCheckI4(t, s, b.ID); st.SQLStockLeft != 10 || st.Cancelled != 2 {
		t.Errorf("sale b: %+v, want 10 left, 2 cancelled", st)
	}
	// One unapplied return per order cancelled, after the earlier ones.
	after, err := s.Lifecycle.UnappliedReturns(ctx, 0, 100)
	storeNoErr(t, err)
	rows := after[len(before):]
	if len(rows) != len(want) {
		t.Fatalf("%d returns after the cancel, want %d: %+v", len(rows), len(want), rows)
	}
	per := map[int64]int{}
	for _, r := range rows {
		per[r.OrderID]++
		if r.LedgerID <= before[len(before)-1].LedgerID {
			t.Errorf("return %+v not after the earlier ones", r)
		}
	}
	for _, w := range want {
		if per[w.ID] != 1 {
			t.Errorf("order %d has %d returns, want 1", w.ID, per[w.ID])
		}
	}
	for _, sale := range []int64{a.ID, b.ID} {
		ls, err := s.Lifecycle.LifecycleStats(ctx, sale)
		storeNoErr(t, err)
		wantN := int64(2)
		if sale == a.ID {
			wantN = 5
		}
		if ls.ReturnsUnapplied != wantN {
			t.Errorf("sale %d: %d unapplied returns, want %d", sale, ls.ReturnsUnapplied, wantN)
		}
	}

	// Again, and the pending one before its deadline: nothing moves.
	got, err = s.Lifecycle.CancelExpired(ctx, ids, now)
	storeNoErr(t, err)
	if len(got) != 0 {
		t.Errorf("CancelExpired again = %+v, want none", got)
	}
	// Past its deadline, the last one goes too.
	got, err = s.Lifecycle.CancelExpired(ctx, ids, now.Add(time.Minute))
	storeNoErr(t, err)
	if len(got) != 1 || got[0].ID != oa[3].ID {
		t.Errorf("CancelExpired a minute later = %+v, want order %d", got, oa[3].ID)
	}
	if st := lcCheckI4(t, s, a.ID); st.SQLStockLeft != 19 || st.Pending != 0 {
		t.Errorf("sale a: %+v, want 19 left, none pending", st)
	}
	// I2: the buyer swept stays a buyer.
	lcStaysBuyer(t, s, oa[0], 19, 7)
}

// testCancelExpiredRace has several sweepers cancel the same expired orders
// with CancelExpired, each its own overlapping pages in its own order and
// more than one transaction's worth at once, while buyers pay, open their
// payments and cancel. Each order ends paid or cancelled, cancelled by one
// call only; a paid order gave no unit back; every cancelled order gave
// exactly one unit through one ledger row, and its cancel reported the
// mark exactly when the mark succeeded; I4 holds.
func testCancelExpiredRace(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	const n = 1200
	sale := storeNewSale(t, s.Stores, n)
	users := lcUsers(t, s, n)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(-time.Second))
	ids := make([]int64, n)
	for i, o := range os {
		ids[i] = o.ID
	}

	var (
		mu      sync.Mutex
		cancels = map[int64]int{}  // order → calls that cancelled it
		opened  = map[int64]int{}  // order → cancels that reported it opened
		marked  = map[int64]bool{} // order → its mark succeeded
		paid    = map[int64]bool{} // order → its payment applied
	)
	cancelled := func(o *seckill.Order) {
		mu.Lock()
		defer mu.Unlock()
		cancels[o.ID]++
		if o.PayOpened {
			opened[o.ID]++
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for k := range 4 {
		wg.Go(func() {
			<-start
			mine := slices.Clone(ids)
			rand.New(rand.NewPCG(uint64(k), 7)).Shuffle(n, func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
			// Sweeper 3 takes them all at once (several transactions);
			// the others pages that overlap theirs.
			page := []int{100, 150, 200, n}[k]
			for p := range slices.Chunk(mine, page) {
				got, err := s.Lifecycle.CancelExpired(ctx, p, now)
				if err != nil {
					t.Errorf("sweeper %d: CancelExpired: %v", k, err)
					return
				}
				for _, o := range got {
					if o.Status != seckill.OrderCancelled || !slices.Contains(p, o.ID) {
						t.Errorf("sweeper %d: CancelExpired returned %+v", k, o)
					}
					cancelled(o)
				}
			}
		})
	}
	// Buyers, six at once in a shuffled order: every third pays, every
	// fourth opens its payment, every fifth cancels.
	work := make(chan int)
	for range 6 {
		wg.Go(func() {
			for i := range work {
				o := os[i]
				switch {
				case i%3 == 0:
					rec, _, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(o, "TR-cxr-"+o.OrderNo, now))
					if err != nil {
						t.Errorf("pay order %d: %v", o.ID, err)
						continue
					}
					if rec.Outcome == seckill.PaymentApplied {
						mu.Lock()
						paid[o.ID] = true
						mu.Unlock()
					}
				case i%4 == 0:
					err := s.Lifecycle.MarkPayOpened(ctx, o.ID)
					if seckill.ErrorCode(err) == seckill.ENotPayable {
						continue
					}
					if err != nil {
						t.Errorf("mark order %d: %v", o.ID, err)
						continue
					}
					mu.Lock()
					marked[o.ID] = true
					mu.Unlock()
				case i%5 == 0:
					got, err := s.Lifecycle.CancelOrder(ctx, o.ID, o.UserID, now, false)
					if seckill.ErrorCode(err) == seckill.ENotCancellable {
						continue
					}
					if err != nil {
						t.Errorf("cancel order %d: %v", o.ID, err)
						continue
					}
					cancelled(got)
				}
			}
		})
	}
	order := rand.New(rand.NewPCG(9, 9)).Perm(n)
	// The sweepers set off once the buyers are well under way.
	for k, i := range order {
		if k == n/4 {
			close(start)
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		return
	}

	var nPaid, nCancelled int64
	for _, o := range os {
		got := lcOrder(t, s, o.ID)
		switch got.Status {
		case seckill.OrderPaid:
			nPaid++
			if !paid[o.ID] || cancels[o.ID] != 0 {
				t.Errorf("paid order %d: payment applied %v, %d cancels", o.ID, paid[o.ID], cancels[o.ID])
			}
		case seckill.OrderCancelled:
			nCancelled++
			if paid[o.ID] || cancels[o.ID] != 1 {
				t.Errorf("cancelled order %d: payment applied %v, %d cancels, want 1", o.ID, paid[o.ID], cancels[o.ID])
			}
			if want := b2i(marked[o.ID]); opened[o.ID] != want || got.PayOpened != marked[o.ID] {
				t.Errorf("order %d: mark succeeded %v, its cancel reported it opened %d times, stored opened %v",
					o.ID, marked[o.ID], opened[o.ID], got.PayOpened)
			}
		default:
			t.Errorf("order %d ended %s", o.ID, got.Status)
		}
	}
	t.Logf("%d paid, %d cancelled", nPaid, nCancelled)
	st := lcCheckI4(t, s, sale.ID)
	if st.Paid != nPaid || st.Cancelled != nCancelled || st.Pending != 0 || st.SQLStockLeft != nCancelled {
		t.Errorf("stats = %+v, want %d paid, %d cancelled, %d left", st, nPaid, nCancelled, nCancelled)
	}
	returns, err := s.Lifecycle.UnappliedReturns(ctx, 0, 2*n)
	storeNoErr(t, err)
	per := map[int64]int{}
	for _, r := range returns {
		per[r.OrderID]++
	}
	if int64(len(returns)) != nCancelled {
		t.Errorf("%d returns, want %d", len(returns), nCancelled)
	}
	for _, o := range os {
		if want := b2i(cancels[o.ID] > 0); per[o.ID] != want {
			t.Errorf("order %d: %d returns, want %d", o.ID, per[o.ID], want)
		}
	}
}
