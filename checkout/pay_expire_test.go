package checkout

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
	"seckill/payment/sandbox"
)

// clockFunc is a seckill.Clock that reads a test's clock.
type clockFunc func() time.Time

func (c clockFunc) Now(context.Context) (time.Time, error) { return c(), nil }

// expiryRig is one pending order, an engine whose shared clock, provider
// client and sandbox provider all read one fake clock, and the shop's
// notify URL.
type expiryRig struct {
	v      *env
	e      *Engine
	sale   *seckill.Sale
	o      *seckill.Order
	clock  *fakeClock
	client *payment.Client
	notify string
	sb     *sandbox.Sandbox
}

// newExpiryRig writes the order and sets the clock to at(its deadline).
func newExpiryRig(t *testing.T, at func(deadline time.Time) time.Time) *expiryRig {
	t.Helper()
	v := newEnv(t)
	s, us := v.soldOut(1)
	o := v.orderOf(s.ID, us[0])
	r := &expiryRig{v: v, sale: s, o: o, clock: newFakeClock(at(o.PayDeadline))}
	sb, client := sandboxPayments(t, r.clock.Now, nil)
	b := v.backends()
	b.Payments, b.Clock = client, clockFunc(r.clock.Now)
	r.e = v.recovered(Config{}, &b)
	r.sb, r.client, r.notify = sb, client, notifyEndpoint(t, r.e)
	return r
}

// sweepAtDeadline moves the clock past the order's deadline and sweeps:
// the order is cancelled, nothing was paid or is to be refunded.
func (r *expiryRig) sweepAtDeadline(t *testing.T) {
	t.Helper()
	r.clock.set(r.o.PayDeadline.Add(time.Millisecond))
	if n, err := r.e.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 cancelled", n, err)
	}
	wantStatus(t, r.v.order(r.o.ID), seckill.OrderCancelled)
	if st := engineStats(t, r.e, r.sale.ID); st.RefundsDue != 0 || st.PaymentsRefunded != 0 || st.Paid != 0 {
		t.Fatalf("stats %+v: nothing was to be paid or refunded", st)
	}
	r.v.checkAtRest(r.sale.ID)
}

// TestLatePaymentRefusedByTheProvider: the buyer opens the payment of
// an order and comes back to the provider's page only once the order's
// time is up. The trade expired at the provider at the deadline (rounded
// down to the second), before our sweeper cancelled the order and
// whether or not its close ever reaches the provider: the click pays
// nothing (no charge, no refund). The provider's close notification
// comes while the order is still pending and changes nothing; paying
// again is refused; the sweeper then cancels the order and its close of
// the closed trade is answered.
func TestLatePaymentRefusedByTheProvider(t *testing.T) {
	ctx := context.Background()
	r := newExpiryRig(t, func(d time.Time) time.Time { return d.Add(-time.Minute) })
	p, err := r.e.Pay(ctx, r.o.UserID, r.o.ID, r.notify, "http://shop.test/orders")
	if err != nil {
		t.Fatal(err)
	}
	if tr, err := r.client.QueryPayment(ctx, r.o.OrderNo); err != nil || tr.Status != payment.TradeWaiting {
		t.Fatalf("the trade before the deadline: %+v, %v; want waiting", tr, err)
	}

	r.clock.set(r.o.PayDeadline.Truncate(time.Second))
	resp, err := noFollow.PostForm(p.PayURL, url.Values{"result": {"pay"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the late click: %d to %q; want the page of the closed trade, nothing paid", resp.StatusCode, resp.Header.Get("Location"))
	}
	if tr, err := r.client.QueryPayment(ctx, r.o.OrderNo); err != nil || tr.Status != payment.TradeClosed {
		t.Fatalf("the trade after its expiry: %+v, %v; want closed", tr, err)
	}

	// The close notification reaches the shop before the sweep.
	if n, err := r.sb.DeliverDue(ctx); err != nil || n != 1 {
		t.Fatalf("DeliverDue = %d, %v; want the close delivered", n, err)
	}
	wantStatus(t, r.v.order(r.o.ID), seckill.OrderPending)
	_, err = r.e.Pay(ctx, r.o.UserID, r.o.ID, r.notify, "")
	wantCode(t, err, seckill.ENotPayable)

	r.sweepAtDeadline(t)
	if err := r.client.ClosePayment(ctx, r.o.OrderNo); err != nil {
		t.Fatalf("closing the expired trade: %v", err)
	}
}

// TestPayAtTheDeadline: asked a few milliseconds before the order's
// deadline, Pay makes no trade, which would expire before the buyer saw
// its page (the provider's expiry is counted in whole seconds), and
// answers not payable. The order lapses as one never opened.
func TestPayAtTheDeadline(t *testing.T) {
	ctx := context.Background()
	// Within the deadline's last second, at most 5 ms before it.
	r := newExpiryRig(t, func(d time.Time) time.Time {
		if late := d.Add(-5 * time.Millisecond); late.After(d.Truncate(time.Second)) {
			return late
		}
		return d.Truncate(time.Second)
	})
	if !r.clock.Now().Before(r.o.PayDeadline) {
		t.Skipf("the deadline %v is on a whole second", r.o.PayDeadline)
	}
	p, err := r.e.Pay(ctx, r.o.UserID, r.o.ID, r.notify, "")
	wantCode(t, err, seckill.ENotPayable)
	if _, qerr := r.client.QueryPayment(ctx, r.o.OrderNo); !errors.Is(qerr, payment.ErrNotFound) {
		t.Fatalf("Pay answered %+v, %v, and the provider has a trade (%v)", p, err, qerr)
	}
	r.sweepAtDeadline(t)
}

// noFollow is a browser that shows us a redirect instead of following it.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
