package contract

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"seckill"
)

// lcPaid writes one order per user in sale and pays each with trade
// "TR-<prefix>-<i>", returning the orders (paid) in user order.
func lcPaid(t *testing.T, s LifecycleStores, sale int64, users []int64, prefix string, now time.Time) []*seckill.Order {
	t.Helper()
	os := lcOrders(t, s, sale, users, now.Add(time.Minute))
	for i, o := range os {
		rec, got, err := s.Lifecycle.ApplyPayment(context.Background(), lcPayment(o, fmt.Sprintf("TR-%s-%d", prefix, i), now))
		storeNoErr(t, err)
		if rec.Outcome != seckill.PaymentApplied {
			t.Fatalf("payment of order %d: %s", o.ID, rec.Outcome)
		}
		os[i] = got
	}
	return os
}

// lcReturns counts the unapplied returns per order.
func lcReturns(t *testing.T, s LifecycleStores) map[int64]int {
	t.Helper()
	rs, err := s.Lifecycle.UnappliedReturns(context.Background(), 0, 100000)
	storeNoErr(t, err)
	per := map[int64]int{}
	for _, r := range rs {
		per[r.OrderID]++
	}
	return per
}

// testRefundOrder: an admin refunds a paid order: it moves paid →
// refunded, its unit goes back to stock through the outbox, its payment
// becomes due back, and the buyer stays a buyer; any other order is
// refused and nothing changes.
func testRefundOrder(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	sale := storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 4)
	now := storeNow()
	paidAt := now.Add(-time.Second)
	os := lcOrders(t, s, sale.ID, users, now.Add(time.Minute))
	_, _, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(os[0], "TR-ref-0", paidAt))
	storeNoErr(t, err)
	_, err = s.Lifecycle.CancelOrder(ctx, os[2].ID, 0, now, false)
	storeNoErr(t, err)

	// Refused: no such order, pending, cancelled. Nothing changes.
	before := lcCheckI4(t, s, sale.ID)
	_, err = s.Lifecycle.RefundOrder(ctx, os[3].ID+1000, now)
	storeWantCode(t, err, seckill.ENotFound)
	_, err = s.Lifecycle.RefundOrder(ctx, os[1].ID, now)
	storeWantCode(t, err, seckill.ENotCancellable)
	_, err = s.Lifecycle.RefundOrder(ctx, os[2].ID, now)
	storeWantCode(t, err, seckill.ENotCancellable)
	if after := lcCheckI4(t, s, sale.ID); *after != *before {
		t.Fatalf("refused refunds changed the sale: %+v, was %+v", after, before)
	}
	if due, err := s.Lifecycle.PaymentsToRefund(ctx, 0, 100); err != nil || len(due) != 0 {
		t.Fatalf("refused refunds made payments due: %+v, %v", due, err)
	}
	if per := lcReturns(t, s); len(per) != 1 || per[os[2].ID] != 1 {
		t.Fatalf("returns after refused refunds: %v, want the cancel's only", per)
	}

	refundedAt := now.Add(time.Second)
	got, err := s.Lifecycle.RefundOrder(ctx, os[0].ID, refundedAt)
	storeNoErr(t, err)
	if got.ID != os[0].ID || got.Status != seckill.OrderRefunded || got.RefundedAt == nil || !got.RefundedAt.Equal(refundedAt) ||
		got.PaidAt == nil || !got.PaidAt.Equal(paidAt) || got.CancelledAt != nil {
		t.Errorf("RefundOrder = %+v, want order %d refunded at %v, paid at %v", got, os[0].ID, refundedAt, paidAt)
	}
	stored := lcOrder(t, s, os[0].ID)
	if stored.Status != seckill.OrderRefunded || stored.RefundedAt == nil || !stored.RefundedAt.Equal(refundedAt) ||
		stored.PaidAt == nil || !stored.PaidAt.Equal(paidAt) {
		t.Errorf("stored order = %+v, want refunded at %v", stored, refundedAt)
	}
	st := lcCheckI4(t, s, sale.ID)
	if st.Refunded != 1 || st.Paid != 0 || st.Cancelled != 1 || st.Pending != 2 || st.SQLStockLeft != 8 {
		t.Errorf("after a refund: %+v, want 1 refunded, 1 cancelled, 2 pending, 8 left", st)
	}
	// The unit goes through the outbox, once; the payment is due back.
	if per := lcReturns(t, s); len(per) != 2 || per[os[0].ID] != 1 || per[os[2].ID] != 1 {
		t.Errorf("returns after a refund: %v, want one each for orders %d and %d", per, os[0].ID, os[2].ID)
	}
	due, err := s.Lifecycle.PaymentsToRefund(ctx, 0, 100)
	storeNoErr(t, err)
	if len(due) != 1 || due[0].TradeNo != "TR-ref-0" || due[0].OrderID != os[0].ID || due[0].Outcome != seckill.PaymentRefundDue ||
		due[0].AmountCents != os[0].PriceCents || due[0].RefundedAt != nil {
		t.Errorf("PaymentsToRefund = %+v, want TR-ref-0 due", due)
	}
	ls, err := s.Lifecycle.LifecycleStats(ctx, sale.ID)
	storeNoErr(t, err)
	if *ls != (seckill.LifecycleStats{RefundsDue: 1, ReturnsUnapplied: 2}) {
		t.Errorf("LifecycleStats = %+v, want 1 refund due, 2 returns unapplied", ls)
	}
	ids, err := s.Lifecycle.ReturnedOrders(ctx, sale.ID)
	storeNoErr(t, err)
	if want := []int64{os[0].ID, os[2].ID}; !slices.Equal(ids, want) {
		t.Errorf("ReturnedOrders = %v, want %v", ids, want)
	}
	left, buyers, returned, err := s.Lifecycle.SaleSnapshotWithReturns(ctx, sale.ID)
	storeNoErr(t, err)
	if left != 8 || len(buyers) != 4 || !slices.Equal(returned, ids) {
		t.Errorf("SaleSnapshotWithReturns = %d, %v, %v; want 8, the 4 buyers, %v", left, buyers, returned, ids)
	}

	// Twice, a cancel, a replayed notification: refused or no-ops.
	before = lcCheckI4(t, s, sale.ID)
	_, err = s.Lifecycle.RefundOrder(ctx, os[0].ID, refundedAt.Add(time.Hour))
	storeWantCode(t, err, seckill.ENotCancellable)
	_, err = s.Lifecycle.CancelOrder(ctx, os[0].ID, 0, now.Add(time.Hour), false)
	storeWantCode(t, err, seckill.ENotCancellable)
	rec, o, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(os[0], "TR-ref-0", paidAt))
	storeNoErr(t, err)
	if rec.Outcome != seckill.PaymentRefundDue || o.Status != seckill.OrderRefunded {
		t.Errorf("replay after the refund = %+v, order %+v; want refund_due, refunded", rec, o)
	}
	if after := lcCheckI4(t, s, sale.ID); *after != *before {
		t.Errorf("a second refund or a replay changed the sale: %+v, was %+v", after, before)
	}
	if per := lcReturns(t, s); per[os[0].ID] != 1 {
		t.Errorf("order %d has %d returns, want 1", os[0].ID, per[os[0].ID])
	}

	// The refund loop marks it; a replay then answers refunded.
	storeNoErr(t, s.Lifecycle.MarkRefunded(ctx, "TR-ref-0", refundedAt))
	rec, _, err = s.Lifecycle.ApplyPayment(ctx, lcPayment(os[0], "TR-ref-0", paidAt))
	storeNoErr(t, err)
	if rec.Outcome != seckill.PaymentRefunded || rec.RefundedAt == nil || !rec.RefundedAt.Equal(refundedAt) {
		t.Errorf("replay after MarkRefunded = %+v, want refunded at %v", rec, refundedAt)
	}
	ls, err = s.Lifecycle.LifecycleStats(ctx, sale.ID)
	storeNoErr(t, err)
	if ls.RefundsDue != 0 || ls.PaymentsRefunded != 1 {
		t.Errorf("LifecycleStats = %+v, want 1 refunded, none due", ls)
	}

	// I2: the refunded buyer stays a buyer.
	lcStaysBuyer(t, s, os[0], 8, 4)
}

// testRefundRace: for each paid order, two admins refund it while its
// notification is replayed, all at once. One refund wins; the loser is
// refused; the unit comes back once and the payment is due back once.
func testRefundRace(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	const n = 60
	sale := storeNewSale(t, s.Stores, n)
	now := storeNow()
	os := lcPaid(t, s, sale.ID, storeNewUsers(t, s.Stores, n), "rr", now)

	var (
		mu   sync.Mutex
		wins = map[int64]int{}
	)
	var wg sync.WaitGroup
	for i, o := range os {
		for range 2 {
			wg.Go(func() {
				got, err := s.Lifecycle.RefundOrder(ctx, o.ID, now)
				if seckill.ErrorCode(err) == seckill.ENotCancellable {
					return
				}
				if err != nil {
					t.Errorf("refund of order %d: %v", o.ID, err)
					return
				}
				if got.Status != seckill.OrderRefunded {
					t.Errorf("refund of order %d = %+v", o.ID, got)
				}
				mu.Lock()
				wins[o.ID]++
				mu.Unlock()
			})
		}
		wg.Go(func() {
			rec, _, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(o, fmt.Sprintf("TR-rr-%d", i), now))
			if err != nil {
				t.Errorf("replay of order %d: %v", o.ID, err)
				return
			}
			// Before the refund: applied; after it: due back.
			if rec.Outcome != seckill.PaymentApplied && rec.Outcome != seckill.PaymentRefundDue {
				t.Errorf("replay of order %d answered %s", o.ID, rec.Outcome)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	per := lcReturns(t, s)
	for _, o := range os {
		if wins[o.ID] != 1 || per[o.ID] != 1 {
			t.Errorf("order %d: %d refunds won, %d returns; want 1 each", o.ID, wins[o.ID], per[o.ID])
		}
		if got := lcOrder(t, s, o.ID); got.Status != seckill.OrderRefunded {
			t.Errorf("order %d ended %s", o.ID, got.Status)
		}
	}
	st := lcCheckI4(t, s, sale.ID)
	if st.Refunded != n || st.Paid != 0 || st.SQLStockLeft != n {
		t.Errorf("stats = %+v, want %d refunded, all back in stock", st, n)
	}
	due, err := s.Lifecycle.PaymentsToRefund(ctx, 0, 2*n)
	storeNoErr(t, err)
	trades := map[string]int{}
	for _, p := range due {
		trades[p.TradeNo]++
	}
	if len(due) != n || len(trades) != n {
		t.Errorf("%d payments due back (%d trades), want %d once each", len(due), len(trades), n)
	}
}
