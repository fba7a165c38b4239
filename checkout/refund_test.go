package checkout

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
)

// stats reads the engine's numbers of a sale, failing on error.
func engineStats(t *testing.T, e *Engine, saleID int64) *Stats {
	t.Helper()
	st, err := e.Stats(context.Background(), saleID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRefundByAdmin: an admin refunds a paid order while the provider is
// down: the order is refunded at once, its buyer told, its unit back in
// the gate exactly once and sold to another buyer, and its money goes
// back once the provider is up again. On every store and gate of
// backendMatrix.
func TestRefundByAdmin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ string, v *env) { testRefundByAdmin(t, v) })
}

func testRefundByAdmin(t *testing.T, v *env) {
	s := v.openSale(2)
	us := v.users(5)
	v.writeOrders(s.ID, us[0], us[1])
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	e2 := v.lifecycleEngine(p, clock) // another instance
	pushes := subscribeResults(t, v.queue)
	ctx := context.Background()
	o := v.orderOf(s.ID, us[0])
	if err := e.HandleNotification(ctx, notification(t, o, payment.TradeSuccess, nil)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, v.order(o.ID), seckill.OrderPaid)

	// Only a paid order refunds.
	_, err := e.Refund(ctx, o.ID+1000)
	wantCode(t, err, seckill.ENotFound)
	_, err = e.Refund(ctx, v.orderOf(s.ID, us[1]).ID)
	wantCode(t, err, seckill.ENotCancellable)

	e.soldOut.Store(s.ID, e.uptime()) // this instance saw the sale sold out
	p.failRef.Store(true)             // the provider is down
	got, err := e.Refund(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, got, seckill.OrderRefunded)
	if got.RefundedAt == nil || got.PaidAt == nil {
		t.Fatalf("refunded order %+v, want paid_at and refunded_at", got)
	}
	if _, flagged := e.soldOut.Load(s.ID); flagged {
		t.Error("the local sold-out flag survived a refund's return")
	}
	// The unit is in the gate, once: later relays on any instance add
	// nothing.
	if got := v.gateLeft(s.ID); got != 1 {
		t.Fatalf("gate left %d after a refund, want 1", got)
	}
	if n := relay(t, e) + relay(t, e2); n != 0 {
		t.Fatalf("relays after the refund returned %d more units", n)
	}
	pushes.waitStatus(t, o, seckill.OrderRefunded)
	if n := p.refunded(o.OrderNo); n != 0 {
		t.Fatalf("a down provider refunded %d times", n)
	}
	if st := engineStats(t, e, s.ID); st.Refunded != 1 || st.Paid != 0 || st.RefundsDue != 1 || st.ReturnsUnapplied != 0 {
		t.Fatalf("stats after the refund: %+v", st)
	}

	// A second refund (another instance), the buyer's cancel or payment,
	// a replayed notification: refused or no-ops.
	_, err = e2.Refund(ctx, o.ID)
	wantCode(t, err, seckill.ENotCancellable)
	_, err = e.Cancel(ctx, o.UserID, o.ID)
	wantCode(t, err, seckill.ENotCancellable)
	_, err = e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
	wantCode(t, err, seckill.ENotPayable)
	if err := e.HandleNotification(ctx, notification(t, o, payment.TradeSuccess, nil)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, v.order(o.ID), seckill.OrderRefunded)
	if _, err := e2.RetryRefunds(ctx); err == nil {
		t.Fatal("RetryRefunds succeeded with the provider down")
	}

	// The provider is back: the next round gives the money back, once.
	p.failRef.Store(false)
	if n, err := e2.RetryRefunds(ctx); err != nil || n != 1 {
		t.Fatalf("RetryRefunds = %d, %v; want 1", n, err)
	}
	if n, err := e.RetryRefunds(ctx); err != nil || n != 0 {
		t.Fatalf("RetryRefunds again = %d, %v; want 0", n, err)
	}
	if n := p.refunded(o.OrderNo); n != 1 {
		t.Fatalf("refunded %d times, want 1", n)
	}
	if st := engineStats(t, e, s.ID); st.RefundsDue != 0 || st.PaymentsRefunded != 1 {
		t.Fatalf("stats after the money went back: %+v", st)
	}
	v.checkAtRest(s.ID)

	// With the provider up, the money goes back before Refund answers.
	o1 := v.orderOf(s.ID, us[1])
	if err := e.HandleNotification(ctx, notification(t, o1, payment.TradeSuccess, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Refund(ctx, o1.ID); err != nil {
		t.Fatal(err)
	}
	if n := p.refunded(o1.OrderNo); n != 1 {
		t.Fatalf("refunded %d times when Refund answered, want 1", n)
	}

	// The units go to others; the refunded buyers stay buyers.
	stop := runWriter(t, e)
	for _, u := range us[:2] {
		_, err = e.Purchase(ctx, u, s.ID, path(t, e, u, s.ID))
		wantCode(t, err, seckill.EDuplicate)
	}
	for _, u := range us[2:4] {
		if _, err := e.Purchase(ctx, u, s.ID, path(t, e, u, s.ID)); err != nil {
			t.Fatalf("purchase of a returned unit: %v", err)
		}
		waitResult(t, e, u, s.ID, seckill.ResultSuccess)
	}
	_, err = e.Purchase(ctx, us[4], s.ID, path(t, e, us[4], s.ID))
	wantCode(t, err, seckill.ESoldOut)
	stop()
	if st := v.checkAtRest(s.ID); st.Pending != 2 || st.Refunded != 2 || st.SQLStockLeft != 0 {
		t.Fatalf("at the end: %+v", st)
	}
	if st := engineStats(t, e, s.ID); st.RefundsDue != 0 || st.PaymentsRefunded != 2 {
		t.Fatalf("refunds at the end: %+v", st.LifecycleStats)
	}
}

// testMerchantKey is the shop's key for the sandbox, made once.
var testMerchantKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// TestRefundThroughSandbox pays an order at the sandbox provider, in
// process and over HTTP, and refunds it while the provider is down: the
// money goes back at the provider once it is up again, and the unit is
// sold to another buyer.
func TestRefundThroughSandbox(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	us := v.users(2)
	v.writeOrders(s.ID, us[0])

	var down atomic.Bool
	sb, client := sandboxPayments(t, nil, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	b := v.backends()
	b.Payments, b.Clock = client, &sharedClock{}
	e := v.recovered(Config{}, &b)

	// The buyer pays at the sandbox; its notification marks the order paid.
	o := v.orderOf(s.ID, us[0])
	pay, err := e.Pay(ctx, us[0], o.ID, notifyEndpoint(t, e), "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(pay.PayURL, url.Values{"result": {"pay"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n, err := sb.DeliverDue(ctx); err != nil || n != 1 {
		t.Fatalf("DeliverDue = %d, %v; want 1", n, err)
	}
	wantStatus(t, v.order(o.ID), seckill.OrderPaid)

	// Refunded while the provider is down: the order moves, the money waits.
	down.Store(true)
	got, err := e.Refund(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, got, seckill.OrderRefunded)
	if n, err := e.RetryRefunds(ctx); err == nil || n != 0 {
		t.Fatalf("RetryRefunds with the provider down = %d, %v; want an error", n, err)
	}
	if st := engineStats(t, e, s.ID); st.RefundsDue != 1 || st.PaymentsRefunded != 0 {
		t.Fatalf("stats while the provider is down: %+v", st)
	}

	down.Store(false)
	if tr, err := client.QueryPayment(ctx, o.OrderNo); err != nil || tr.Status != payment.TradeSuccess {
		t.Fatalf("the provider's payment before the retry: %+v, %v; want still paid", tr, err)
	}
	if n, err := e.RetryRefunds(ctx); err != nil || n != 1 {
		t.Fatalf("RetryRefunds = %d, %v; want 1", n, err)
	}
	// Refunded in full: the provider shows the trade closed.
	if tr, err := client.QueryPayment(ctx, o.OrderNo); err != nil || tr.Status != payment.TradeClosed {
		t.Fatalf("the provider's payment after the retry: %+v, %v; want closed (refunded)", tr, err)
	}
	if n, err := e.RetryRefunds(ctx); err != nil || n != 0 {
		t.Fatalf("RetryRefunds again = %d, %v; want 0", n, err)
	}
	if st := engineStats(t, e, s.ID); st.RefundsDue != 0 || st.PaymentsRefunded != 1 || st.Refunded != 1 || st.GateLeft != 1 {
		t.Fatalf("stats after the refund: %+v", st)
	}

	// The unit is sold again, to another buyer.
	stop := runWriter(t, e)
	if _, err := e.Purchase(ctx, us[1], s.ID, path(t, e, us[1], s.ID)); err != nil {
		t.Fatalf("purchase of the refunded unit: %v", err)
	}
	waitResult(t, e, us[1], s.ID, seckill.ResultSuccess)
	stop()
	if st := v.checkAtRest(s.ID); st.Pending != 1 || st.Refunded != 1 || st.SQLStockLeft != 0 {
		t.Fatalf("at the end: %+v", st)
	}
}

// TestRefundSurvivesARestart: a refund committed in SQL whose unit never
// reached the gate (the process killed right after the commit) is in the
// rebuilt gate once, and a relay after the rebuild adds nothing.
func TestRefundSurvivesARestart(t *testing.T) {
	v := newEnv(t)
	s := v.openSale(2)
	us := v.users(3)
	v.writeOrders(s.ID, us[0], us[1])
	e := v.recovered(Config{}, nil)
	ctx := context.Background()
	o := v.orderOf(s.ID, us[0])
	if _, _, err := v.lc().ApplyPayment(ctx, seckill.Payment{OrderNo: o.OrderNo, TradeNo: "TR-restart", AmountCents: o.PriceCents, PaidAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.lc().RefundOrder(ctx, o.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = v.recovered(Config{}, nil)
	if got := v.gateLeft(s.ID); got != 1 {
		t.Fatalf("gate left %d after the rebuild, want 1", got)
	}
	if n := relay(t, e); n != 0 {
		t.Fatalf("relay after the rebuild returned %d units the rebuild had loaded", n)
	}
	v.checkAtRest(s.ID)
	if r := v.reserve(s.ID, us[0]); r != seckill.Duplicate {
		t.Fatalf("the refunded buyer got %v, want duplicate", r)
	}
	if r := v.reserve(s.ID, us[2]); r != seckill.Reserved {
		t.Fatalf("a new buyer got %v, want reserved", r)
	}
}
