package checkout

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
	"seckill/payment/sandbox"
)

// Payments whose notification never reaches the shop, and a Pay whose
// second look at the order fails (found by a review of the lifecycle).

// scheduledSandbox is sandboxPayments with the notifier's resend schedule
// given (the real one resends 7 times over 25 hours and then gives up).
func scheduledSandbox(t *testing.T, now func() time.Time, schedule []time.Duration) (*sandbox.Sandbox, *payment.Client) {
	t.Helper()
	return openSandbox(t, sandbox.Config{Now: now, Schedule: schedule}, now, nil)
}

// TestPaidTradeOfCancelledOrderIsRefunded: I5 says money taken for an
// order that ends cancelled is refunded. The engine learns of money only
// from the notification (or an admin's reconcile-payment); when a cancel
// closes the order's trade and the provider answers that the trade is
// PAID (ACQ.TRADE_HAS_SUCCESS → payment.ErrTradePaid), closePayment only
// logs it. If the notification never reaches the shop, nothing ever
// refunds that money:
//
//   - Abandoned: the buyer pays a minute before the deadline while the
//     shop's notify endpoint is failing; the provider resends on its
//     schedule and gives up (the real one after 8 tries in 25 h). The
//     sweeper cancelled the order at its deadline, its closer asked the
//     provider to close the trade and was told it was paid, and nothing
//     refunded it. Since then the closer's answer was applied (refunded);
//     now the sweeper asks before it cancels, and the order, paid in
//     time, is paid.
//   - Misdirected: the notify URL of a trade is built from the Host header
//     of the buyer's POST /api/orders/{id}/pay when --public-url is not set
//     (httpapi.Server.publicBase, the default); a buyer who sends another
//     Host gets the notification delivered elsewhere (which answers
//     "success"). The buyer then cancels: the cancel's close is answered
//     "paid", and again nothing is refunded.
func TestPaidTradeOfCancelledOrderIsRefunded(t *testing.T) {
	t.Run("Abandoned", func(t *testing.T) {
		ctx := context.Background()
		v := newEnv(t)
		s, us := v.soldOut(1)
		o := v.orderOf(s.ID, us[0])
		clock := newFakeClock(o.PayDeadline.Add(-time.Minute))
		sb, client := scheduledSandbox(t, clock.Now, []time.Duration{time.Minute, time.Minute})
		race := &createRace{Provider: client, before: func() {}} // counts the closes
		b := v.backends()
		b.Payments, b.Clock = race, clockFunc(clock.Now)
		e := v.recovered(Config{}, &b)
		var down atomic.Bool
		notify := switchableNotify(t, e, &down)

		p, err := e.Pay(ctx, o.UserID, o.ID, notify, "")
		if err != nil {
			t.Fatal(err)
		}
		down.Store(true)
		resp, err := noFollow.PostForm(p.PayURL, url.Values{"result": {"pay"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tr, err := client.QueryPayment(ctx, o.OrderNo); err != nil || tr.Status != payment.TradeSuccess {
			t.Fatalf("the trade after the click: %+v, %v; want paid", tr, err)
		}
		// The provider tries, resends on its schedule, and gives up.
		for i := 0; i < 3; i++ {
			if _, err := sb.DeliverDue(ctx); err != nil {
				t.Fatal(err)
			}
			clock.set(clock.Now().Add(2 * time.Minute))
		}
		ns, err := sb.Notifications(ctx, p.ID)
		if err != nil || len(ns) != 1 || ns[0].State != "abandoned" {
			t.Fatalf("notifications %+v, %v; want the one abandoned", ns, err)
		}
		down.Store(false) // the shop is back

		// Past the deadline: the sweeper asks the provider before it
		// cancels, hears the trade was paid, and applies it: the order
		// is paid, and nothing is refunded. (Before, it cancelled the
		// order and the closer, told the trade was paid, refunded it.)
		if n, err := e.Sweep(ctx); err != nil || n != 0 {
			t.Fatalf("Sweep = %d, %v; want 0 cancelled", n, err)
		}
		wantStatus(t, v.order(o.ID), seckill.OrderPaid)
		if _, err := e.RetryRefunds(ctx); err != nil {
			t.Fatal(err)
		}
		if st := engineStats(t, e, s.ID); st.RefundsDue != 0 || st.PaymentsRefunded != 0 || race.closes.Load() != 0 {
			t.Fatalf("refunds due %d, refunded %d, closes %d; want none", st.RefundsDue, st.PaymentsRefunded, race.closes.Load())
		}
	})

	t.Run("Misdirected", func(t *testing.T) {
		ctx := context.Background()
		v := newEnv(t)
		s, us := v.soldOut(1)
		o := v.orderOf(s.ID, us[0])
		sb, client := sandboxPayments(t, nil, nil)
		b := v.backends()
		b.Payments, b.Clock = client, &sharedClock{}
		e := v.recovered(Config{}, &b)
		// What publicBase makes of "Host: elsewhere.example": the
		// notification goes there, and there it is answered "success".
		var got atomic.Int32
		elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got.Add(1)
			io.WriteString(w, "success")
		}))
		t.Cleanup(elsewhere.Close)

		p, err := e.Pay(ctx, o.UserID, o.ID, elsewhere.URL+"/api/payments/notify", "")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noFollow.PostForm(p.PayURL, url.Values{"result": {"pay"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n, err := sb.DeliverDue(ctx); err != nil || n != 1 || got.Load() != 1 {
			t.Fatalf("DeliverDue = %d, %v (%d received elsewhere); want it delivered elsewhere", n, err, got.Load())
		}
		// The buyer cancels: the cancel's close is answered "paid".
		if _, err := e.Cancel(ctx, o.UserID, o.ID); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := e.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := e.RetryRefunds(ctx); err != nil {
				t.Fatal(err)
			}
		}
		wantRefunded(t, v, e, client, o)
	})
}

// wantRefunded checks that o is cancelled and its trade, which the
// provider was told to close and answered paid, is no longer a payment
// kept.
func wantRefunded(t *testing.T, v *env, e *Engine, client *payment.Client, o *seckill.Order) {
	t.Helper()
	wantStatus(t, v.order(o.ID), seckill.OrderCancelled)
	tr, err := client.QueryPayment(context.Background(), o.OrderNo)
	if err != nil {
		t.Fatal(err)
	}
	if st := engineStats(t, e, o.SaleID); tr.Status == payment.TradeSuccess {
		t.Errorf("order %d is cancelled and its buyer's %d cents are still taken at the provider (trade %s %s; refunds due %d, refunded %d): "+
			"the close was answered \"paid\" and dropped", o.ID, o.PriceCents, tr.TradeNo, tr.Status, st.RefundsDue, st.PaymentsRefunded)
	}
}

// rereadFails is the env's store whose Order fails once armed: the read
// Pay makes again after the trade is created (on SQL, also what a
// cancelled request context gives: the buyer closed the tab).
type rereadFails struct {
	envStore
	seckill.OrderLifecycle
	armed  atomic.Bool
	always bool // stays armed: every read fails once armed
}

func (r *rereadFails) Order(ctx context.Context, id int64) (*seckill.Order, error) {
	if r.armed.Swap(r.always) {
		return nil, errors.New("read order: context canceled (test)")
	}
	return r.envStore.Order(ctx, id)
}

// armAfterCreate is a provider that arms f once its CreatePayment returns.
type armAfterCreate struct {
	*createRace
	f *rereadFails
}

func (a *armAfterCreate) CreatePayment(ctx context.Context, req payment.PaymentRequest) (payment.Payment, error) {
	p, err := a.createRace.CreatePayment(ctx, req)
	a.f.armed.Store(true)
	return p, err
}

// TestPayLeavesNoTradeOpenWhenItsRereadFails: TestCancelBetweenMarkAndCreate
// with one more fault. The buyer cancels in another tab between Pay's mark
// and the trade's creation; the cancel's close reaches the provider first
// and finds nothing. Pay's second look at the order, which should find it
// cancelled and close the trade, fails (a SQL hiccup, or the request's
// context ended), and Pay takes the failure for "not cancelled": it
// answers 200 with a pay URL for a cancelled order, and the trade stays
// open at the provider until the deadline (a payment then is money for a
// cancelled order). It should fail closed: close the trade, or answer an
// error, not hand out the payment.
func TestPayLeavesNoTradeOpenWhenItsRereadFails(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s, us := v.soldOut(1)
	_, client := sandboxPayments(t, nil, nil)
	o := v.orderOf(s.ID, us[0])
	var e *Engine
	race := &createRace{Provider: client}
	race.before = func() {
		race.before = func() {}
		if _, err := e.Cancel(ctx, o.UserID, o.ID); err != nil {
			t.Errorf("cancel: %v", err)
		}
		if race.closes.Load() != 1 {
			t.Errorf("the cancel's close: %d calls, want 1 (before the create)", race.closes.Load())
		}
	}
	store := &rereadFails{envStore: v.db, OrderLifecycle: v.db.(seckill.OrderLifecycle)}
	b := v.backends()
	b.Orders, b.Payments, b.Clock = store, &armAfterCreate{createRace: race, f: store}, &sharedClock{}
	e = v.recovered(Config{}, &b)

	p, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
	if err == nil || p.PayURL != "" {
		t.Errorf("Pay of an order cancelled meanwhile = %+v, %v; want an error and no pay URL", p, err)
	}
	wantStatus(t, v.order(o.ID), seckill.OrderCancelled)
	tr, qerr := client.QueryPayment(ctx, o.OrderNo)
	if qerr == nil && tr.Status == payment.TradeWaiting {
		t.Errorf("the trade of cancelled order %d is open at the provider, and Pay answered %+v, %v: its buyer is sent to pay a cancelled order",
			o.ID, p, err)
	}
	v.checkAtRest(s.ID)
}

// TestPayRereadKeepsFailing: when Pay cannot read the order again after
// opening its payment, it hands out no pay URL (the order may have been
// cancelled meanwhile) and leaves the trade open (it may be pending): the
// buyer's next Pay gets the same trade.
func TestPayRereadKeepsFailing(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s, us := v.soldOut(1)
	_, client := sandboxPayments(t, nil, nil)
	o := v.orderOf(s.ID, us[0])
	race := &createRace{Provider: client, before: func() {}}
	store := &rereadFails{envStore: v.db, OrderLifecycle: v.db.(seckill.OrderLifecycle), always: true}
	b := v.backends()
	b.Orders, b.Payments, b.Clock = store, &armAfterCreate{createRace: race, f: store}, &sharedClock{}
	e := v.recovered(Config{}, &b)

	p, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
	if seckill.ErrorCode(err) != seckill.EBusy || p.PayURL != "" {
		t.Fatalf("Pay with the second read failing = %+v, %v; want busy and no pay URL", p, err)
	}
	if race.closes.Load() != 0 {
		t.Errorf("the trade of a pending order was closed (%d closes): it could never be paid", race.closes.Load())
	}
	store.always = false
	store.armed.Store(false)
	b.Payments = client
	e = v.recovered(Config{}, &b)
	again, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
	if err != nil || again.PayURL == "" {
		t.Fatalf("Pay again = %+v, %v; want the trade's pay URL", again, err)
	}
	if tr, err := client.QueryPayment(ctx, o.OrderNo); err != nil || tr.Status != payment.TradeWaiting {
		t.Errorf("the trade: %+v, %v; want it waiting for the buyer", tr, err)
	}
	wantStatus(t, v.order(o.ID), seckill.OrderPending)
}
