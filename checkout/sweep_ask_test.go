package checkout

import (
	"cmp"
	"context"
	"slices"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
)

// TestSweepAppliesALatePayment: an order whose buyer paid before the
// deadline, but whose notification has not come (it goes to the instance
// that opened the payment, which may be down), is paid after the sweep,
// not cancelled and refunded; an opened payment left unpaid and an order
// never opened are cancelled. Before, the sweep cancelled all three and the
// payment was refunded when its notification came (found by review: 283
// of 900 payers lost their orders to one instance killed after they paid).
func TestSweepAppliesALatePayment(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(3)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	ctx := context.Background()
	paid, unpaid, never := v.orderOf(s.ID, us[0]), v.orderOf(s.ID, us[1]), v.orderOf(s.ID, us[2])
	openPayment(t, e, paid)
	openPayment(t, e, unpaid)
	paidAt := paid.PayDeadline.Add(-20 * time.Second).Truncate(time.Second)
	p.setTrade(payment.Trade{OutTradeNo: paid.OrderNo, TradeNo: "TR-late", Status: payment.TradeSuccess, AmountCents: paid.PriceCents, PaidAt: paidAt})
	p.setTrade(payment.Trade{OutTradeNo: unpaid.OrderNo, TradeNo: "TR-unpaid", Status: payment.TradeWaiting, AmountCents: unpaid.PriceCents})
	clock.pastDeadlines()
	if n, err := e.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2 cancelled", n, err)
	}
	for o, want := range map[*seckill.Order]seckill.OrderStatus{paid: seckill.OrderPaid, unpaid: seckill.OrderCancelled, never: seckill.OrderCancelled} {
		if got := v.order(o.ID); got.Status != want {
			t.Errorf("order %d: %+v; want %s", o.ID, got, want)
		}
	}
	if p.refunded(paid.OrderNo) != 0 {
		t.Error("the payment made in time was refunded")
	}
	// Paid when the provider says, not when the sweeper learned of it
	// (which would put it after the deadline).
	if got := v.order(paid.ID); got.PaidAt == nil || !got.PaidAt.Equal(paidAt) {
		t.Errorf("order %d paid at %v; want %v, the provider's pay time", paid.ID, got.PaidAt, paidAt)
	}
	// Its notification, when it comes, is a replay.
	if err := e.HandleNotification(ctx, notification(t, paid, payment.TradeSuccess, func(n *payment.Notification) { n.TradeNo = "TR-late" })); err != nil {
		t.Fatal(err)
	}
	if got := v.order(paid.ID); got.Status != seckill.OrderPaid || p.refunded(paid.OrderNo) != 0 {
		t.Errorf("after the late notification: %+v, refunded %d", got, p.refunded(paid.OrderNo))
	}
	v.checkAtRest(s.ID)
}

// TestSweepWaitsForAProviderThatCannotTell: while the provider cannot say
// whether an opened payment went through, its order waits for the next
// sweep, up to sweepAskGrace past its deadline, then is cancelled as
// before; an order never opened is cancelled at once, and the sweeps do
// not ask a failing provider again for sweepAskBackoff.
// (TestSweepAppliesALatePayment has the provider answer.)
func TestSweepWaitsForAProviderThatCannotTell(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(4)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	ctx := context.Background()
	var opened []*seckill.Order
	for _, u := range us[:3] {
		o := v.orderOf(s.ID, u)
		openPayment(t, e, o)
		opened = append(opened, o)
	}
	never := v.orderOf(s.ID, us[3])
	p.failQry.Store(true)
	clock.off.Store(int64(time.Until(never.PayDeadline) + 5*time.Second)) // just past the deadlines
	if n, err := e.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep with the provider down = %d, %v; want only the order never opened cancelled", n, err)
	}
	// The next sweeps, within sweepAskBackoff, do not ask the failing
	// provider again.
	q := p.queries.Load()
	if n, err := e.Sweep(ctx); err != nil || n != 0 || p.queries.Load() != q {
		t.Errorf("a second sweep: %d cancelled, %v, %d more questions; want 0, none", n, err, p.queries.Load()-q)
	}
	for _, o := range opened {
		if got := v.order(o.ID); got.Status != seckill.OrderPending {
			t.Fatalf("order %d is %s within the grace, want pending", o.ID, got.Status)
		}
	}
	// Down for longer than the grace: cancelled as before (a payment that
	// gets through after all is refunded).
	clock.off.Store(int64(time.Until(never.PayDeadline) + sweepAskGrace + time.Second))
	if n, err := e.Sweep(ctx); err != nil || n != 3 {
		t.Fatalf("Sweep past the grace = %d, %v; want the 3 opened orders cancelled", n, err)
	}
	v.checkAtRest(s.ID)
}

// TestSweepGoesPastWaitingOrders: orders left for the provider's answer
// do not hide the expired orders behind them, however many fill a page;
// orders without a payment are cancelled whatever the provider does.
// Before, a page of orders left waiting ended the sweep ("another sweeper
// is ahead"), and the units behind them waited out the grace (found by
// review: 30-70 s late).
func TestSweepGoesPastWaitingOrders(t *testing.T) {
	defer func(n int) { sweepPage = n }(sweepPage)
	sweepPage = 2
	v := newEnv(t)
	s, us := v.soldOut(5)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	ctx := context.Background()
	var orders []*seckill.Order
	for _, u := range us {
		orders = append(orders, v.orderOf(s.ID, u))
	}
	slices.SortFunc(orders, func(a, b *seckill.Order) int { // the sweep's order
		if c := a.PayDeadline.Compare(b.PayDeadline); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	for _, o := range orders[:3] { // the first page and a half: opened
		openPayment(t, e, o)
	}
	p.failQry.Store(true)
	clock.off.Store(int64(time.Until(orders[4].PayDeadline) + 5*time.Second))
	if n, err := e.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want the 2 orders without a payment cancelled", n, err)
	}
	for i, o := range orders {
		want := seckill.OrderPending
		if i >= 3 {
			want = seckill.OrderCancelled
		}
		wantStatus(t, v.order(o.ID), want)
	}
}
