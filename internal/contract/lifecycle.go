package contract

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"seckill"
)

// LifecycleStores is one backend's stores plus its order lifecycle, all on
// the same database.
type LifecycleStores struct {
	Stores
	Lifecycle seckill.OrderLifecycle
}

// TestLifecycle checks every documented outcome of seckill.OrderLifecycle,
// and I1, I2, I4 and I5 when payments, buyers' cancels and sweepers race
// on the same orders. open must return stores on a fresh, empty database,
// closed when the test ends.
func TestLifecycle(t *testing.T, open func(t *testing.T) LifecycleStores) {
	t.Run("Cancel", func(t *testing.T) { testCancel(t, open(t)) })
	t.Run("ExpiredOrders", func(t *testing.T) { testExpiredOrders(t, open(t)) })
	t.Run("Payment", func(t *testing.T) { testPayment(t, open(t)) })
	t.Run("RefundDue", func(t *testing.T) { testRefundDue(t, open(t)) })
	t.Run("ReturnsOutbox", func(t *testing.T) { testReturnsOutbox(t, open(t)) })
	t.Run("SnapshotWithReturns", func(t *testing.T) { testSnapshotWithReturns(t, open(t)) })
	t.Run("RefundOrder", func(t *testing.T) { testRefundOrder(t, open(t)) })
	t.Run("RefundRace", func(t *testing.T) { testRefundRace(t, open(t)) })
	t.Run("PayCancelSweepRace", func(t *testing.T) { testPayCancelSweepRace(t, open(t)) })
	t.Run("MarkPayOpened", func(t *testing.T) { testMarkPayOpened(t, open(t)) })
	t.Run("MarkPayOpenedCancelRace", func(t *testing.T) { testMarkPayOpenedCancelRace(t, open(t)) })
	t.Run("CancelExpired", func(t *testing.T) { testCancelExpired(t, open(t)) })
	t.Run("CancelExpiredRace", func(t *testing.T) { testCancelExpiredRace(t, open(t)) })
}

// lcOrders writes one pending order per user in sale, due at payBy, and
// returns them in user order.
func lcOrders(t *testing.T, s LifecycleStores, sale int64, users []int64, payBy time.Time) []*seckill.Order {
	t.Helper()
	var os []*seckill.Order
	for chunk := range slices.Chunk(users, 500) {
		reqs := make([]seckill.OrderRequest, len(chunk))
		for i, u := range chunk {
			reqs[i] = storeReq(sale, u)
		}
		for i, r := range storeWriteOrders(t, s.Stores, reqs, payBy) {
			if r.Status != seckill.ResultSuccess {
				t.Fatalf("order of user %d: %+v", reqs[i].UserID, r)
			}
			o, err := s.Orders.Order(context.Background(), r.OrderID)
			storeNoErr(t, err)
			os = append(os, o)
		}
	}
	return os
}

// lcPayment is the payment of o, as a verified notification gives it.
func lcPayment(o *seckill.Order, tradeNo string, at time.Time) seckill.Payment {
	return seckill.Payment{
		OrderNo:     o.OrderNo,
		TradeNo:     tradeNo,
		AmountCents: o.PriceCents,
		TradeStatus: "TRADE_SUCCESS",
		NotifyID:    "N" + tradeNo,
		AppID:       "app",
		PaidAt:      at,
	}
}

// lcCheckI4 checks that live orders + stock_left = stock = ledger sum.
func lcCheckI4(t *testing.T, s LifecycleStores, sale int64) *seckill.SaleStats {
	t.Helper()
	st, err := s.Sales.SaleStats(context.Background(), sale)
	storeNoErr(t, err)
	if st.LedgerSum != st.SQLStockLeft {
		t.Errorf("sale %d: ledger sum %d != stock_left %d", sale, st.LedgerSum, st.SQLStockLeft)
	}
	if st.Pending+st.Paid+st.SQLStockLeft != st.Stock {
		t.Errorf("sale %d: %d pending + %d paid + stock_left %d != stock %d", sale, st.Pending, st.Paid, st.SQLStockLeft, st.Stock)
	}
	if st.Orders != st.Pending+st.Paid+st.Cancelled+st.Refunded {
		t.Errorf("sale %d: %+v: statuses do not add up", sale, st)
	}
	return st
}

func lcOrder(t *testing.T, s LifecycleStores, id int64) *seckill.Order {
	t.Helper()
	o, err := s.Orders.Order(context.Background(), id)
	storeNoErr(t, err)
	return o
}

func testCancel(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	sale := storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 4)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(time.Minute))

	// Someone else's order is not found; nor is a missing one.
	_, err := s.Lifecycle.CancelOrder(ctx, os[0].ID, users[1], now, false)
	storeWantCode(t, err, seckill.ENotFound)
	_, err = s.Lifecycle.CancelOrder(ctx, os[3].ID+1000, 0, now, false)
	storeWantCode(t, err, seckill.ENotFound)
	// Not yet expired: the sweeper may not cancel it.
	_, err = s.Lifecycle.CancelOrder(ctx, os[0].ID, 0, now, true)
	storeWantCode(t, err, seckill.ENotCancellable)
	if st := lcCheckI4(t, s, sale.ID); st.Cancelled != 0 || st.SQLStockLeft != 6 {
		t.Fatalf("refused cancels changed the sale: %+v", st)
	}

	// The buyer cancels before the deadline.
	got, err := s.Lifecycle.CancelOrder(ctx, os[0].ID, users[0], now, false)
	storeNoErr(t, err)
	if got.ID != os[0].ID || got.Status != seckill.OrderCancelled || got.CancelledAt == nil || !got.CancelledAt.Equal(now) {
		t.Errorf("CancelOrder = %+v, want order %d cancelled at %v", got, os[0].ID, now)
	}
	stored := lcOrder(t, s, os[0].ID)
	if stored.Status != seckill.OrderCancelled || stored.CancelledAt == nil || !stored.CancelledAt.Equal(now) || stored.PaidAt != nil {
		t.Errorf("stored order = %+v, want cancelled at %v", stored, now)
	}
	if st := lcCheckI4(t, s, sale.ID); st.Cancelled != 1 || st.SQLStockLeft != 7 {
		t.Errorf("after a cancel: %+v, want 1 cancelled, 7 left", st)
	}
	// Twice: refused, and nothing more returned.
	_, err = s.Lifecycle.CancelOrder(ctx, os[0].ID, users[0], now, false)
	storeWantCode(t, err, seckill.ENotCancellable)
	_, err = s.Lifecycle.CancelOrder(ctx, os[0].ID, 0, now.Add(time.Hour), true)
	storeWantCode(t, err, seckill.ENotCancellable)

	// The sweeper, once past the deadline (also exactly at it).
	got, err = s.Lifecycle.CancelOrder(ctx, os[1].ID, 0, os[1].PayDeadline, true)
	storeNoErr(t, err)
	if got.UserID != users[1] || got.Status != seckill.OrderCancelled {
		t.Errorf("sweeper's CancelOrder = %+v", got)
	}

	// A paid order is not cancellable.
	_, _, err = s.Lifecycle.ApplyPayment(ctx, lcPayment(os[2], "TR-cancel-2", now))
	storeNoErr(t, err)
	_, err = s.Lifecycle.CancelOrder(ctx, os[2].ID, users[2], now, false)
	storeWantCode(t, err, seckill.ENotCancellable)
	_, err = s.Lifecycle.CancelOrder(ctx, os[2].ID, 0, now.Add(time.Hour), true)
	storeWantCode(t, err, seckill.ENotCancellable)

	st := lcCheckI4(t, s, sale.ID)
	if st.Cancelled != 2 || st.Paid != 1 || st.Pending != 1 || st.SQLStockLeft != 8 {
		t.Errorf("stats = %+v, want 2 cancelled, 1 paid, 1 pending, 8 left", st)
	}

	// I2: the buyer who cancelled stays a buyer.
	lcStaysBuyer(t, s, os[0], 8, 4)
}

// lcStaysBuyer checks I2 for o's buyer, whose unit went back: a new
// request of theirs reports o and takes no unit, leaving left units and
// orders orders in the sale.
func lcStaysBuyer(t *testing.T, s LifecycleStores, o *seckill.Order, left, orders int64) {
	t.Helper()
	res := storeWriteOrders(t, s.Stores, []seckill.OrderRequest{storeReq(o.SaleID, o.UserID)}, storeNow().Add(time.Minute))
	if res[0].Status != seckill.ResultSuccess || res[0].OrderID != o.ID {
		t.Errorf("request after the order went back = %+v, want order %d", res[0], o.ID)
	}
	if st := lcCheckI4(t, s, o.SaleID); st.SQLStockLeft != left || st.Orders != orders {
		t.Errorf("after a repeat request: %+v, want %d left, %d orders", st, left, orders)
	}
}

func testExpiredOrders(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	sale := storeNewSale(t, s.Stores, 20)
	users := storeNewUsers(t, s.Stores, 8)
	now := storeNow()
	// Deadlines in minutes from now, one order each, written out of order.
	offsets := []int{-5, -1, -3, 1, -2, -4, 0, 5}
	var os []*seckill.Order
	for i, off := range offsets {
		os = append(os, lcOrders(t, s, sale.ID, users[i:i+1], now.Add(time.Duration(off)*time.Minute))...)
	}
	// Expired but paid or cancelled since: not listed.
	_, _, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(os[2], "TR-exp-2", now)) // -3
	storeNoErr(t, err)
	_, err = s.Lifecycle.CancelOrder(ctx, os[5].ID, 0, now, true) // -4
	storeNoErr(t, err)
	// Its buyer asked to pay: listed as opened.
	storeNoErr(t, s.Lifecycle.MarkPayOpened(ctx, os[4].ID)) // -2
	os[4].PayOpened = true

	got, err := s.Lifecycle.ExpiredOrders(ctx, now, seckill.OrderRef{}, 100)
	storeNoErr(t, err)
	// -5, -2, -1, 0 (a deadline equal to now has passed).
	want := []int{0, 4, 1, 6}
	if len(got) != len(want) {
		t.Fatalf("ExpiredOrders = %+v, want orders %v", got, want)
	}
	for i, j := range want {
		o := os[j]
		r := got[i]
		if r.ID != o.ID || r.SaleID != sale.ID || r.UserID != o.UserID || r.OrderNo != o.OrderNo || !r.PayDeadline.Equal(o.PayDeadline) || r.PayOpened != o.PayOpened {
			t.Errorf("ExpiredOrders[%d] = %+v, want order %+v", i, r, o)
		}
	}
	got, err = s.Lifecycle.ExpiredOrders(ctx, now, seckill.OrderRef{}, 2)
	storeNoErr(t, err)
	if len(got) != 2 || got[0].ID != os[0].ID || got[1].ID != os[4].ID {
		t.Errorf("ExpiredOrders(limit 2) = %+v, want the two earliest deadlines", got)
	}
	// After the second: the two behind it, in the same order.
	if len(got) == 2 {
		rest, err := s.Lifecycle.ExpiredOrders(ctx, now, got[1], 100)
		storeNoErr(t, err)
		if len(rest) != 2 || rest[0].ID != os[1].ID || rest[1].ID != os[6].ID {
			t.Errorf("ExpiredOrders after %d = %+v, want orders %d and %d", got[1].ID, rest, os[1].ID, os[6].ID)
		}
	}
	got, err = s.Lifecycle.ExpiredOrders(ctx, now.Add(-time.Hour), seckill.OrderRef{}, 100)
	storeNoErr(t, err)
	if len(got) != 0 {
		t.Errorf("ExpiredOrders an hour ago = %+v, want none", got)
	}
	// A read changes nothing.
	if st := lcCheckI4(t, s, sale.ID); st.Pending != 6 {
		t.Errorf("stats = %+v, want 6 pending", st)
	}
}

func testPayment(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	sale := storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 3)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(time.Minute))
	paidAt := now.Add(-time.Second)

	// Refusals record nothing.
	p := lcPayment(os[0], "TR-1", paidAt)
	bad := p
	bad.AmountCents++
	_, _, err := s.Lifecycle.ApplyPayment(ctx, bad)
	storeWantCode(t, err, seckill.EAmountMismatch)
	bad = p
	bad.OrderNo = "no-such-order"
	_, _, err = s.Lifecycle.ApplyPayment(ctx, bad)
	storeWantCode(t, err, seckill.ENotFound)
	bad = p
	bad.TradeNo = ""
	_, _, err = s.Lifecycle.ApplyPayment(ctx, bad)
	storeWantCode(t, err, seckill.EInvalid)
	if st := lcCheckI4(t, s, sale.ID); st.Paid != 0 {
		t.Fatalf("refused payments paid an order: %+v", st)
	}

	rec, o, err := s.Lifecycle.ApplyPayment(ctx, p)
	storeNoErr(t, err)
	if rec.Outcome != seckill.PaymentApplied || rec.ID == 0 || rec.OrderID != os[0].ID || rec.SaleID != sale.ID ||
		rec.TradeNo != "TR-1" || rec.AmountCents != os[0].PriceCents || !rec.PaidAt.Equal(paidAt) || rec.RefundedAt != nil {
		t.Errorf("ApplyPayment = %+v, want applied to order %d", rec, os[0].ID)
	}
	if o.ID != os[0].ID || o.Status != seckill.OrderPaid || o.PaidAt == nil || !o.PaidAt.Equal(paidAt) || o.CancelledAt != nil {
		t.Errorf("order after payment = %+v, want paid at %v", o, paidAt)
	}
	if stored := lcOrder(t, s, os[0].ID); stored.Status != seckill.OrderPaid || !stored.PaidAt.Equal(paidAt) {
		t.Errorf("stored order = %+v, want paid", stored)
	}
	before := lcCheckI4(t, s, sale.ID)

	// A replay, even with another notify id and time, changes nothing.
	replay := p
	replay.NotifyID, replay.PaidAt = "other", paidAt.Add(time.Hour)
	rec2, o2, err := s.Lifecycle.ApplyPayment(ctx, replay)
	storeNoErr(t, err)
	if rec2.ID != rec.ID || rec2.Outcome != seckill.PaymentApplied || !rec2.PaidAt.Equal(paidAt) || rec2.NotifyID != p.NotifyID {
		t.Errorf("replay = %+v, want the first record %+v", rec2, rec)
	}
	if o2.Status != seckill.OrderPaid || !o2.PaidAt.Equal(paidAt) {
		t.Errorf("order after replay = %+v", o2)
	}
	if after := lcCheckI4(t, s, sale.ID); *after != *before {
		t.Errorf("a replay changed the sale: %+v, was %+v", after, before)
	}
	// The same trade for another order or amount is not a replay.
	other := p
	other.OrderNo = os[1].OrderNo
	_, _, err = s.Lifecycle.ApplyPayment(ctx, other)
	storeWantCode(t, err, seckill.EInvalid)
	if o := lcOrder(t, s, os[1].ID); o.Status != seckill.OrderPending {
		t.Errorf("a reused trade number paid order %d", o.ID)
	}

	// A second trade for a paid order: money to give back.
	rec3, o3, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(os[0], "TR-1b", now))
	storeNoErr(t, err)
	if rec3.Outcome != seckill.PaymentRefundDue || o3.Status != seckill.OrderPaid || !o3.PaidAt.Equal(paidAt) {
		t.Errorf("second trade = %+v, order %+v; want refund_due, order paid by the first", rec3, o3)
	}

	// MarkRefunded refuses what is not refund_due.
	storeWantCode(t, s.Lifecycle.MarkRefunded(ctx, "TR-1", now), seckill.EInvalid)
	storeWantCode(t, s.Lifecycle.MarkRefunded(ctx, "TR-none", now), seckill.ENotFound)
	ls, err := s.Lifecycle.LifecycleStats(ctx, sale.ID)
	storeNoErr(t, err)
	if *ls != (seckill.LifecycleStats{RefundsDue: 1}) {
		t.Errorf("LifecycleStats = %+v, want 1 refund due", ls)
	}
	_, err = s.Lifecycle.LifecycleStats(ctx, sale.ID+1000)
	storeWantCode(t, err, seckill.ENotFound)
}

func testRefundDue(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	sale := storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 3)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(-time.Minute))
	for _, o := range os {
		_, err := s.Lifecycle.CancelOrder(ctx, o.ID, 0, now, true)
		storeNoErr(t, err)
	}
	before := lcCheckI4(t, s, sale.ID)

	// Money for orders the timeout cancelled: recorded, refund due, the
	// orders stay cancelled and their units stay on sale.
	var recs []*seckill.Payment
	for i, o := range os {
		rec, got, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(o, fmt.Sprintf("TR-late-%d", i), now))
		storeNoErr(t, err)
		if rec.Outcome != seckill.PaymentRefundDue || got.Status != seckill.OrderCancelled || got.PaidAt != nil {
			t.Errorf("late payment = %+v, order %+v; want refund_due on a cancelled order", rec, got)
		}
		recs = append(recs, rec)
	}
	if after := lcCheckI4(t, s, sale.ID); *after != *before {
		t.Errorf("late payments changed the sale: %+v, was %+v", after, before)
	}
	due, err := s.Lifecycle.PaymentsToRefund(ctx, 0, 100)
	storeNoErr(t, err)
	if len(due) != 3 {
		t.Fatalf("PaymentsToRefund = %+v, want 3", due)
	}
	for i, p := range due {
		if p.ID != recs[i].ID || p.TradeNo != recs[i].TradeNo || p.OrderNo != os[i].OrderNo || p.AmountCents != os[i].PriceCents || p.Outcome != seckill.PaymentRefundDue {
			t.Errorf("PaymentsToRefund[%d] = %+v, want %+v", i, p, recs[i])
		}
	}
	if due, err := s.Lifecycle.PaymentsToRefund(ctx, 0, 2); err != nil || len(due) != 2 || due[0].ID != recs[0].ID {
		t.Errorf("PaymentsToRefund(0, 2) = %+v, %v; want the two oldest", due, err)
	}
	// Pages: after an id, the ones with larger ids only.
	if due, err := s.Lifecycle.PaymentsToRefund(ctx, recs[0].ID, 100); err != nil || len(due) != 2 || due[0].ID != recs[1].ID || due[1].ID != recs[2].ID {
		t.Errorf("PaymentsToRefund(after the oldest) = %+v, %v; want the other two", due, err)
	}
	if due, err := s.Lifecycle.PaymentsToRefund(ctx, recs[1].ID, 1); err != nil || len(due) != 1 || due[0].ID != recs[2].ID {
		t.Errorf("PaymentsToRefund(after the second, 1) = %+v, %v; want the newest", due, err)
	}
	if due, err := s.Lifecycle.PaymentsToRefund(ctx, recs[2].ID, 100); err != nil || len(due) != 0 {
		t.Errorf("PaymentsToRefund(after the newest) = %+v, %v; want none", due, err)
	}
	ls, err := s.Lifecycle.LifecycleStats(ctx, sale.ID)
	storeNoErr(t, err)
	if ls.RefundsDue != 3 || ls.PaymentsRefunded != 0 {
		t.Errorf("LifecycleStats = %+v, want 3 refunds due", ls)
	}

	refundedAt := now.Add(time.Second)
	storeNoErr(t, s.Lifecycle.MarkRefunded(ctx, recs[0].TradeNo, refundedAt))
	storeNoErr(t, s.Lifecycle.MarkRefunded(ctx, recs[0].TradeNo, refundedAt.Add(time.Hour))) // again: a no-op
	due, err = s.Lifecycle.PaymentsToRefund(ctx, 0, 100)
	storeNoErr(t, err)
	if len(due) != 2 || due[0].ID != recs[1].ID {
		t.Errorf("PaymentsToRefund after a refund = %+v", due)
	}
	// A page skips the refunded one, also where it starts right before it.
	if due, err := s.Lifecycle.PaymentsToRefund(ctx, recs[0].ID-1, 1); err != nil || len(due) != 1 || due[0].ID != recs[1].ID {
		t.Errorf("PaymentsToRefund(before the refunded one, 1) = %+v, %v; want the second", due, err)
	}
	// A replay after the refund answers the current outcome and changes
	// nothing.
	rec, got, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(os[0], recs[0].TradeNo, now))
	storeNoErr(t, err)
	if rec.Outcome != seckill.PaymentRefunded || rec.RefundedAt == nil || !rec.RefundedAt.Equal(refundedAt) || got.Status != seckill.OrderCancelled {
		t.Errorf("replay after refund = %+v, order %+v; want refunded at %v", rec, got, refundedAt)
	}
	ls, err = s.Lifecycle.LifecycleStats(ctx, sale.ID)
	storeNoErr(t, err)
	if ls.RefundsDue != 2 || ls.PaymentsRefunded != 1 {
		t.Errorf("LifecycleStats = %+v, want 2 due, 1 refunded", ls)
	}
	lcCheckI4(t, s, sale.ID)
}

func testReturnsOutbox(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	a, b := storeNewSale(t, s.Stores, 10), storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 3)
	now := storeNow()
	oa := lcOrders(t, s, a.ID, users, now.Add(time.Minute))
	ob := lcOrders(t, s, b.ID, users, now.Add(time.Minute))

	// Written orders give nothing back.
	got, err := s.Lifecycle.UnappliedReturns(ctx, 0, 100)
	storeNoErr(t, err)
	if len(got) != 0 {
		t.Fatalf("UnappliedReturns before any cancel = %+v", got)
	}
	var want []seckill.StockReturn
	for _, o := range []*seckill.Order{oa[1], ob[0], oa[2]} {
		_, err := s.Lifecycle.CancelOrder(ctx, o.ID, o.UserID, now, false)
		storeNoErr(t, err)
		want = append(want, seckill.StockReturn{SaleID: o.SaleID, OrderID: o.ID})
	}
	// A refused cancel adds nothing.
	_, err = s.Lifecycle.CancelOrder(ctx, oa[1].ID, 0, now, false)
	storeWantCode(t, err, seckill.ENotCancellable)

	check := func(got []seckill.StockReturn, want []seckill.StockReturn) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("UnappliedReturns = %+v, want %+v", got, want)
		}
		for i := range got {
			if got[i].LedgerID == 0 || got[i].SaleID != want[i].SaleID || got[i].OrderID != want[i].OrderID {
				t.Errorf("UnappliedReturns[%d] = %+v, want %+v", i, got[i], want[i])
			}
			if i > 0 && got[i].LedgerID <= got[i-1].LedgerID {
				t.Errorf("UnappliedReturns not oldest first: %+v", got)
			}
		}
	}
	got, err = s.Lifecycle.UnappliedReturns(ctx, 0, 100)
	storeNoErr(t, err)
	check(got, want)
	// Reading again lists the same: a read changes nothing.
	again, err := s.Lifecycle.UnappliedReturns(ctx, 0, 100)
	storeNoErr(t, err)
	check(again, want)
	first2, err := s.Lifecycle.UnappliedReturns(ctx, 0, 2)
	storeNoErr(t, err)
	check(first2, want[:2])
	// The next page starts after the last ledger id of this one.
	next, err := s.Lifecycle.UnappliedReturns(ctx, first2[1].LedgerID, 2)
	storeNoErr(t, err)
	check(next, want[2:])
	next, err = s.Lifecycle.UnappliedReturns(ctx, got[2].LedgerID, 2)
	storeNoErr(t, err)
	check(next, nil)
	for _, sale := range []int64{a.ID, b.ID} {
		ls, err := s.Lifecycle.LifecycleStats(ctx, sale)
		storeNoErr(t, err)
		wantN := int64(1)
		if sale == a.ID {
			wantN = 2
		}
		if ls.ReturnsUnapplied != wantN {
			t.Errorf("sale %d: %d unapplied returns, want %d", sale, ls.ReturnsUnapplied, wantN)
		}
	}

	storeNoErr(t, s.Lifecycle.MarkReturnsApplied(ctx, nil))
	storeNoErr(t, s.Lifecycle.MarkReturnsApplied(ctx, []int64{got[0].LedgerID, got[2].LedgerID + 1000}))
	rest, err := s.Lifecycle.UnappliedReturns(ctx, 0, 100)
	storeNoErr(t, err)
	check(rest, want[1:])
	// Marking twice is a no-op; then the outbox is empty.
	storeNoErr(t, s.Lifecycle.MarkReturnsApplied(ctx, []int64{got[0].LedgerID, got[1].LedgerID, got[2].LedgerID}))
	rest, err = s.Lifecycle.UnappliedReturns(ctx, 0, 100)
	storeNoErr(t, err)
	check(rest, nil)
	// Marking changes no stock.
	for _, sale := range []int64{a.ID, b.ID} {
		st := lcCheckI4(t, s, sale)
		if st.SQLStockLeft != 10-3+st.Cancelled {
			t.Errorf("sale %d: %+v", sale, st)
		}
	}
}

func testSnapshotWithReturns(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	sale := storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 4)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(time.Minute))
	for _, o := range []*seckill.Order{os[3], os[1]} {
		_, err := s.Lifecycle.CancelOrder(ctx, o.ID, 0, now, false)
		storeNoErr(t, err)
	}
	left, buyers, cancelled, err := s.Lifecycle.SaleSnapshotWithReturns(ctx, sale.ID)
	storeNoErr(t, err)
	wantBuyers := slices.Sorted(slices.Values(users))
	wantCancelled := []int64{min(os[1].ID, os[3].ID), max(os[1].ID, os[3].ID)}
	if left != 8 || !slices.Equal(buyers, wantBuyers) || !slices.Equal(cancelled, wantCancelled) {
		t.Errorf("SaleSnapshotWithReturns = %d, %v, %v; want 8, %v, %v", left, buyers, cancelled, wantBuyers, wantCancelled)
	}
	ids, err := s.Lifecycle.ReturnedOrders(ctx, sale.ID)
	storeNoErr(t, err)
	if !slices.Equal(ids, wantCancelled) {
		t.Errorf("ReturnedOrders = %v, want %v", ids, wantCancelled)
	}
	ids, err = s.Lifecycle.ReturnedOrders(ctx, sale.ID+1000)
	if err != nil || len(ids) != 0 {
		t.Errorf("ReturnedOrders of no sale = %v, %v; want none", ids, err)
	}
	_, _, _, err = s.Lifecycle.SaleSnapshotWithReturns(ctx, sale.ID+1000)
	storeWantCode(t, err, seckill.ENotFound)
}

// lcBulkUsers is implemented by user stores that create many users in one
// call; the race test uses it where it can.
type lcBulkUsers interface {
	CreateUsers(ctx context.Context, users []*seckill.User) error
}

// lcUsers creates n buyers, in one call where the store can.
func lcUsers(t *testing.T, s LifecycleStores, n int) []int64 {
	t.Helper()
	bulk, ok := s.Users.(lcBulkUsers)
	if !ok {
		return storeNewUsers(t, s.Stores, n)
	}
	us := make([]*seckill.User, n)
	for i := range us {
		us[i] = &seckill.User{Phone: fmt.Sprintf("2%010d", storePhoneSeq.Add(1)), Role: seckill.RoleBuyer, PasswordHash: "h"}
	}
	storeNoErr(t, bulk.CreateUsers(context.Background(), us))
	users := make([]int64, n)
	for i, u := range us {
		users[i] = u.ID
	}
	return users
}

// lcSweepers starts sweepers on wg that cancel the orders expired at now
// until none is left and hand each order they cancelled to done: two that
// cancel a page at once, as Sweep does (CancelExpired), and two that
// cancel one order at a time (CancelOrder).
func lcSweepers(t *testing.T, s LifecycleStores, wg *sync.WaitGroup, now time.Time, done func(*seckill.Order)) {
	ctx := context.Background()
	for range 2 {
		wg.Go(func() {
			for {
				refs, err := s.Lifecycle.ExpiredOrders(ctx, now, seckill.OrderRef{}, 50)
				if err != nil {
					t.Errorf("ExpiredOrders: %v", err)
					return
				}
				if len(refs) == 0 {
					return
				}
				ids := make([]int64, len(refs))
				for i, r := range refs {
					ids[i] = r.ID
				}
				got, err := s.Lifecycle.CancelExpired(ctx, ids, now)
				if err != nil {
					t.Errorf("sweep %d orders: %v", len(ids), err)
					return
				}
				for _, o := range got {
					done(o)
				}
			}
		})
		wg.Go(func() {
			for {
				refs, err := s.Lifecycle.ExpiredOrders(ctx, now, seckill.OrderRef{}, 50)
				if err != nil {
					t.Errorf("ExpiredOrders: %v", err)
					return
				}
				if len(refs) == 0 {
					return
				}
				for _, r := range refs {
					o, err := s.Lifecycle.CancelOrder(ctx, r.ID, 0, now, true)
					if seckill.ErrorCode(err) == seckill.ENotCancellable {
						continue
					}
					if err != nil {
						t.Errorf("sweep order %d: %v", r.ID, err)
						return
					}
					done(o)
				}
			}
		})
	}
}

// testPayCancelSweepRace pays every order of a sale while its buyers cancel
// half of them, two sweepers cancel them all (every deadline has passed),
// an admin refunds a third of them, and notifications are replayed, all at
// once. I5: each order moves to paid or to cancelled, once, and a paid one
// at most once more, to refunded; the payment of a cancelled or refunded
// order is due back; every cancel and refund returns one unit through one
// ledger row; I4 holds.
func testPayCancelSweepRace(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	const n = 1000
	sale := storeNewSale(t, s.Stores, n)
	users := lcUsers(t, s, n)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(-time.Second))
	trade := func(o *seckill.Order) string { return fmt.Sprintf("TR-race-%d", o.ID) }

	// The actions on each order, shuffled: a payment, its replay, for
	// every other order the buyer's cancel, and for every third the
	// admin's refund (which wins only if the payment came first).
	type action struct {
		o    *seckill.Order
		kind int // 0 pay, 1 cancel, 2 refund
	}
	var actions []action
	for i, o := range os {
		actions = append(actions, action{o, 0}, action{o, 0})
		if i%2 == 0 {
			actions = append(actions, action{o, 1})
		}
		if i%3 == 0 {
			actions = append(actions, action{o, 2})
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(actions), func(i, j int) { actions[i], actions[j] = actions[j], actions[i] })

	var (
		mu        sync.Mutex
		cancelled = map[int64]int{} // order → successful cancels
		refunds   = map[int64]int{} // order → successful refunds
		outcome   = map[int64]map[seckill.PaymentOutcome]int{}
	)
	work := make(chan action)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for a := range work {
				switch a.kind {
				case 0:
					rec, _, err := s.Lifecycle.ApplyPayment(ctx, lcPayment(a.o, trade(a.o), now))
					if err != nil {
						t.Errorf("pay order %d: %v", a.o.ID, err)
						continue
					}
					mu.Lock()
					if outcome[a.o.ID] == nil {
						outcome[a.o.ID] = map[seckill.PaymentOutcome]int{}
					}
					outcome[a.o.ID][rec.Outcome]++
					mu.Unlock()
				case 1:
					_, err := s.Lifecycle.CancelOrder(ctx, a.o.ID, a.o.UserID, now, false)
					if seckill.ErrorCode(err) == seckill.ENotCancellable {
						continue
					}
					if err != nil {
						t.Errorf("cancel order %d: %v", a.o.ID, err)
						continue
					}
					mu.Lock()
					cancelled[a.o.ID]++
					mu.Unlock()
				case 2:
					_, err := s.Lifecycle.RefundOrder(ctx, a.o.ID, now)
					if seckill.ErrorCode(err) == seckill.ENotCancellable {
						continue // not paid (yet, or ever)
					}
					if err != nil {
						t.Errorf("refund order %d: %v", a.o.ID, err)
						continue
					}
					mu.Lock()
					refunds[a.o.ID]++
					mu.Unlock()
				}
			}
		})
	}
	lcSweepers(t, s, &wg, now, func(o *seckill.Order) {
		mu.Lock()
		cancelled[o.ID]++
		mu.Unlock()
	})
	for _, a := range actions {
		work <- a
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		return
	}

	var nPaid, nCancelled, nRefunded int64
	for _, o := range os {
		got := lcOrder(t, s, o.ID)
		oc := outcome[o.ID]
		switch got.Status {
		case seckill.OrderPaid:
			nPaid++
			// Both deliveries of its one trade answer applied.
			if oc[seckill.PaymentApplied] != 2 || cancelled[o.ID] != 0 || refunds[o.ID] != 0 || got.CancelledAt != nil {
				t.Errorf("paid order %d: outcomes %v, %d cancels, %d refunds", o.ID, oc, cancelled[o.ID], refunds[o.ID])
			}
		case seckill.OrderCancelled:
			nCancelled++
			if oc[seckill.PaymentRefundDue] != 2 || cancelled[o.ID] != 1 || refunds[o.ID] != 0 || got.PaidAt != nil {
				t.Errorf("cancelled order %d: outcomes %v, %d cancels, %d refunds", o.ID, oc, cancelled[o.ID], refunds[o.ID])
			}
		case seckill.OrderRefunded:
			nRefunded++
			// Paid by the first delivery; the replay came before the
			// refund (applied) or after it (refund_due).
			if oc[seckill.PaymentApplied] < 1 || oc[seckill.PaymentApplied]+oc[seckill.PaymentRefundDue] != 2 ||
				cancelled[o.ID] != 0 || refunds[o.ID] != 1 || got.PaidAt == nil || got.RefundedAt == nil || got.CancelledAt != nil {
				t.Errorf("refunded order %d: outcomes %v, %d cancels, %d refunds, %+v", o.ID, oc, cancelled[o.ID], refunds[o.ID], got)
			}
		default:
			t.Errorf("order %d ended %s", o.ID, got.Status)
		}
	}
	t.Logf("%d paid, %d cancelled, %d refunded", nPaid, nCancelled, nRefunded)
	nReturned := nCancelled + nRefunded
	st := lcCheckI4(t, s, sale.ID)
	if st.Paid != nPaid || st.Cancelled != nCancelled || st.Refunded != nRefunded || st.Pending != 0 || st.SQLStockLeft != nReturned {
		t.Errorf("stats = %+v, want %d paid, %d cancelled, %d refunded, %d left", st, nPaid, nCancelled, nRefunded, nReturned)
	}

	// One return per cancelled or refunded order, those orders exactly.
	returns, err := s.Lifecycle.UnappliedReturns(ctx, 0, 2*n)
	storeNoErr(t, err)
	per := map[int64]int{}
	for _, r := range returns {
		per[r.OrderID]++
		if r.SaleID != sale.ID {
			t.Errorf("return %+v of another sale", r)
		}
	}
	ids, err := s.Lifecycle.ReturnedOrders(ctx, sale.ID)
	storeNoErr(t, err)
	if int64(len(ids)) != nReturned || len(returns) != len(ids) {
		t.Errorf("%d returned orders, %d returns, want %d each", len(ids), len(returns), nReturned)
	}
	for _, id := range ids {
		if per[id] != 1 {
			t.Errorf("returned order %d has %d returns, want 1", id, per[id])
		}
	}

	// The money of cancelled and refunded orders goes back: every refund
	// due is marked, once.
	ls, err := s.Lifecycle.LifecycleStats(ctx, sale.ID)
	storeNoErr(t, err)
	if ls.RefundsDue != nReturned || ls.ReturnsUnapplied != nReturned {
		t.Errorf("LifecycleStats = %+v, want %d refunds due and returns", ls, nReturned)
	}
	for {
		due, err := s.Lifecycle.PaymentsToRefund(ctx, 0, 100)
		storeNoErr(t, err)
		if len(due) == 0 {
			break
		}
		for _, p := range due {
			storeNoErr(t, s.Lifecycle.MarkRefunded(ctx, p.TradeNo, now))
		}
	}
	ls, err = s.Lifecycle.LifecycleStats(ctx, sale.ID)
	storeNoErr(t, err)
	if ls.RefundsDue != 0 || ls.PaymentsRefunded != nReturned {
		t.Errorf("after refunds, LifecycleStats = %+v, want %d refunded", ls, nReturned)
	}
}

// testMarkPayOpened checks MarkPayOpened's outcomes: it marks a pending
// order only, once, and a cancel returns the mark.
func testMarkPayOpened(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	sale := storeNewSale(t, s.Stores, 10)
	users := storeNewUsers(t, s.Stores, 5)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(time.Minute))
	for _, o := range os {
		if o.PayOpened {
			t.Fatalf("new order %d is marked opened", o.ID)
		}
	}
	storeWantCode(t, s.Lifecycle.MarkPayOpened(ctx, os[4].ID+1000), seckill.ENotFound)

	// A pending order is marked, and marking it again changes nothing.
	storeNoErr(t, s.Lifecycle.MarkPayOpened(ctx, os[0].ID))
	storeNoErr(t, s.Lifecycle.MarkPayOpened(ctx, os[0].ID))
	if got := lcOrder(t, s, os[0].ID); !got.PayOpened || got.Status != seckill.OrderPending {
		t.Fatalf("marked order = %+v, want pending and opened", got)
	}
	if got := lcOrder(t, s, os[1].ID); got.PayOpened {
		t.Fatalf("marking order %d marked order %d", os[0].ID, os[1].ID)
	}

	// A cancel returns the mark, both ways.
	got, err := s.Lifecycle.CancelOrder(ctx, os[0].ID, users[0], now, false)
	storeNoErr(t, err)
	if !got.PayOpened || !lcOrder(t, s, os[0].ID).PayOpened {
		t.Errorf("cancelled marked order = %+v, want it opened", got)
	}
	got, err = s.Lifecycle.CancelOrder(ctx, os[1].ID, 0, os[1].PayDeadline, true)
	storeNoErr(t, err)
	if got.PayOpened {
		t.Errorf("swept unmarked order = %+v, want it not opened", got)
	}

	// An order that is not pending is not marked: cancelled (marked or
	// not), paid, refunded.
	_, _, err = s.Lifecycle.ApplyPayment(ctx, lcPayment(os[2], "TR-open-2", now))
	storeNoErr(t, err)
	_, _, err = s.Lifecycle.ApplyPayment(ctx, lcPayment(os[3], "TR-open-3", now))
	storeNoErr(t, err)
	_, err = s.Lifecycle.RefundOrder(ctx, os[3].ID, now)
	storeNoErr(t, err)
	for _, o := range os[:4] {
		storeWantCode(t, s.Lifecycle.MarkPayOpened(ctx, o.ID), seckill.ENotPayable)
	}
	for i, want := range []bool{true, false, false, false, false} {
		if got := lcOrder(t, s, os[i].ID); got.PayOpened != want {
			t.Errorf("order %d (%s) opened %v, want %v", got.ID, got.Status, got.PayOpened, want)
		}
	}
	if st := lcCheckI4(t, s, sale.ID); st.Pending != 1 || st.Cancelled != 2 || st.Paid != 1 || st.Refunded != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// testMarkPayOpenedCancelRace marks the payments of expired orders opened
// while sweepers and buyers cancel them, all at once: each mark either
// commits before the cancel, which then returns the order opened (its
// trade is closed), or fails ENotPayable and the order stays unmarked (no
// trade is created). A mark the cancel misses would leave a trade open.
func testMarkPayOpenedCancelRace(t *testing.T, s LifecycleStores) {
	ctx := context.Background()
	const n = 500
	sale := storeNewSale(t, s.Stores, n)
	users := lcUsers(t, s, n)
	now := storeNow()
	os := lcOrders(t, s, sale.ID, users, now.Add(-time.Second))

	type action struct {
		o      *seckill.Order
		cancel bool
	}
	var actions []action
	for i, o := range os {
		// Every order is marked and cancelled; the buyer cancels half of
		// them (and the sweep loses those), the sweep the others.
		actions = append(actions, action{o, false})
		if i%2 == 0 {
			actions = append(actions, action{o, true})
		}
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(actions), func(i, j int) { actions[i], actions[j] = actions[j], actions[i] })

	var (
		mu     sync.Mutex
		marked = map[int64]bool{} // order → its mark succeeded
		closed = map[int64]int{}  // order → cancels that returned it opened
		cancel = map[int64]int{}  // order → successful cancels
	)
	cancelled := func(o *seckill.Order) {
		mu.Lock()
		defer mu.Unlock()
		cancel[o.ID]++
		if o.PayOpened {
			closed[o.ID]++
		}
	}
	work := make(chan action)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for a := range work {
				if !a.cancel {
					err := s.Lifecycle.MarkPayOpened(ctx, a.o.ID)
					if seckill.ErrorCode(err) == seckill.ENotPayable {
						continue
					}
					if err != nil {
						t.Errorf("mark order %d: %v", a.o.ID, err)
						continue
					}
					mu.Lock()
					marked[a.o.ID] = true
					mu.Unlock()
					continue
				}
				o, err := s.Lifecycle.CancelOrder(ctx, a.o.ID, a.o.UserID, now, false)
				if seckill.ErrorCode(err) == seckill.ENotCancellable {
					continue
				}
				if err != nil {
					t.Errorf("cancel order %d: %v", a.o.ID, err)
					continue
				}
				cancelled(o)
			}
		})
	}
	lcSweepers(t, s, &wg, now, cancelled)
	for _, a := range actions {
		work <- a
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		return
	}

	nMarked := 0
	for _, o := range os {
		got := lcOrder(t, s, o.ID)
		if got.Status != seckill.OrderCancelled || cancel[o.ID] != 1 {
			t.Errorf("order %d ended %s after %d cancels, want cancelled once", o.ID, got.Status, cancel[o.ID])
		}
		if marked[o.ID] {
			nMarked++
		}
		if want := b2i(marked[o.ID]); closed[o.ID] != want || got.PayOpened != marked[o.ID] {
			t.Errorf("order %d: mark succeeded %v, its cancel returned it opened %d times, stored opened %v",
				o.ID, marked[o.ID], closed[o.ID], got.PayOpened)
		}
	}
	t.Logf("%d of %d marked before their cancel", nMarked, n)
	lcCheckI4(t, s, sale.ID)
}

// b2i is 1 for true.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
