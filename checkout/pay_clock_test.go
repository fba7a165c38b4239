package checkout

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
)

// A payment's trade expires at the provider at the order's pay deadline:
// what holds when the clocks involved are not read at one moment, or do
// not agree (found by a review of that change; each failed before).

// TestPayClickStalledAcrossExpiry: the buyer clicks Pay a millisecond
// before the trade's expiry; the sandbox reads its clock, and the click is
// held up before it writes (descheduled, a GC pause). Meanwhile the expiry
// and the deadline pass, the sweeper comes, and the shop queries the
// trade. (Before the sweeper asked the provider, it cancelled the order,
// and its close of the trade did not get through: the provider
// unreachable, or the closer's queue lost at a crash, the cases the
// expiry covers. Now its question waits for the click like any reader's,
// and the order, paid in time, stays paid.) The sandbox used to read the clock before it
// took its store: the query answered TRADE_CLOSED, and then the stalled
// click committed TRADE_SUCCESS with its stale time, so a trade the
// provider had said was closed took the buyer's money. It now reads the
// clock with its store's write lock held: the query waits for the click,
// and whatever the click decided, no reader saw the trade closed before
// it was paid.
func TestPayClickStalledAcrossExpiry(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t)
	s, us := v.soldOut(1)
	o := v.orderOf(s.ID, us[0])
	clock := newFakeClock(o.PayDeadline.Add(-time.Minute))
	var hook atomic.Pointer[func()]
	sbNow := func() time.Time {
		now := clock.Now()
		if h := hook.Swap(nil); h != nil {
			(*h)() // runs after the click read the clock, before it writes
		}
		return now
	}
	var closes atomic.Int32
	dropCloses := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/sandbox/gateway.do" {
				if err := r.ParseForm(); err == nil && r.Form.Get("method") == payment.MethodClose {
					closes.Add(1)
					http.Error(w, "unreachable", http.StatusServiceUnavailable)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
	sb, client := sandboxPayments(t, sbNow, dropCloses)
	b := v.backends()
	b.Payments, b.Clock = client, clockFunc(clock.Now)
	e := v.recovered(Config{}, &b)
	notify := notifyEndpoint(t, e)

	p, err := e.Pay(ctx, o.UserID, o.ID, notify, "http://shop.test/orders")
	if err != nil {
		t.Fatal(err)
	}
	exp := o.PayDeadline.Truncate(time.Second)
	clock.set(exp.Add(-time.Millisecond))
	var during payment.TradeStatus // what a query during the stall answered; "" if it could not run
	h := func() {
		clock.set(o.PayDeadline.Add(time.Millisecond))
		// The sweeper asks the provider first, which cannot answer until
		// the click is written: the order waits for the next sweep.
		if n, err := e.Sweep(ctx); err != nil || n != 0 {
			t.Errorf("Sweep = %d, %v; want the order left for the provider's answer", n, err)
		}
		qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if tr, err := client.QueryPayment(qctx, o.OrderNo); err == nil {
			during = tr.Status
		}
	}
	hook.Store(&h)
	resp, err := noFollow.PostForm(p.PayURL, url.Values{"result": {"pay"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The next sweep once sweepAskBackoff has passed finds what the click
	// decided, and the order follows it: paid if the click took the
	// money, cancelled if it closed.
	e.askDownUntil.Store(0)
	if _, err := e.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := client.QueryPayment(ctx, o.OrderNo)
	if err != nil {
		t.Fatal(err)
	}
	want := seckill.OrderCancelled
	if tr.Status == payment.TradeSuccess {
		want = seckill.OrderPaid
	}
	wantStatus(t, v.order(o.ID), want)
	if _, err := sb.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if during != "" {
		t.Errorf("a query ran between the click's reading of the clock and its write, and answered %s; then the click left the trade %s (pay page %d)",
			during, tr.Status, resp.StatusCode)
	}
	if during == payment.TradeClosed && tr.Status != payment.TradeClosed {
		st := engineStats(t, e, s.ID)
		t.Errorf("the provider said the trade was closed, then took the money (%d close(s) lost): refunds due %d, refunded %d",
			closes.Load(), st.RefundsDue, st.PaymentsRefunded)
	}
}

// skewedPayments is skewedSandbox's client.
func skewedPayments(t *testing.T, provider, instance func() time.Time) *payment.Client {
	t.Helper()
	_, c := skewedSandbox(t, provider, instance, nil)
	return c
}

// TestPayInstanceClockAhead: "instance clocks disagree by seconds
// or minutes" is a fault the engine survives, because deadlines are
// compared on the shared clock. Pay checks the deadline on the shared
// clock, but the client's one-second lead on the instance's own clock:
// an instance 6 minutes ahead refuses (409 not_payable) an order with 5
// minutes left, though the provider (on the shared time) would take it.
// An instance more than the pay window (10 min) ahead can never take a
// payment. Pay now checks the lead on the shared clock, and the client
// none (SECKILL_TEST_CLOCK_OFFSET shifts only the engine's clock, so the
// fault drills could not see this).
func TestPayInstanceClockAhead(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t)
	s, us := v.soldOut(1)
	o := v.orderOf(s.ID, us[0])
	shared := newFakeClock(o.PayDeadline.Add(-5 * time.Minute))
	ahead := func() time.Time { return shared.Now().Add(6 * time.Minute) }
	b := v.backends()
	b.Payments, b.Clock = skewedPayments(t, shared.Now, ahead), clockFunc(shared.Now)
	e := v.recovered(Config{}, &b)
	if _, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/notify", ""); err != nil {
		t.Errorf("Pay with 5 minutes left on the shared clock, instance 6 minutes ahead: %v (code %s); want a payment",
			err, seckill.ErrorCode(err))
	}
}

// TestPayInstanceClockBehind: the instance's clock a few seconds
// behind the shared one (and the provider's), inside the deadline's last
// second: the client checked the lead on the instance's clock, passed,
// and the provider refused the expiry as past (ACQ.INVALID_PARAMETER),
// which Pay answered 500. Pay now checks the lead on the shared clock:
// 409 not_payable, no trade.
func TestPayInstanceClockBehind(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t)
	s, us := v.soldOut(1)
	o := v.orderOf(s.ID, us[0])
	exp := o.PayDeadline.Truncate(time.Second)
	if !o.PayDeadline.After(exp.Add(time.Millisecond)) {
		t.Skipf("the deadline %v is on a whole second", o.PayDeadline)
	}
	shared := newFakeClock(exp.Add(time.Millisecond)) // before the deadline, after the expiry
	behind := func() time.Time { return shared.Now().Add(-3 * time.Second) }
	b := v.backends()
	b.Payments, b.Clock = skewedPayments(t, shared.Now, behind), clockFunc(shared.Now)
	e := v.recovered(Config{}, &b)
	_, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/notify", "")
	if seckill.ErrorCode(err) != seckill.ENotPayable {
		t.Errorf("Pay in the deadline's last second, instance 3 s behind: %v (code %q); want not_payable", err, seckill.ErrorCode(err))
	}
}

// TestPayProviderClockAhead: the provider's clock 3 s ahead of the
// shared one, 2 s before the deadline (rounded down): Pay's lead check
// passes, and the provider finds the expiry past. It answers as for a
// closed trade, and Pay 409 not_payable, not 500.
func TestPayProviderClockAhead(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t)
	s, us := v.soldOut(1)
	o := v.orderOf(s.ID, us[0])
	shared := newFakeClock(o.PayDeadline.Truncate(time.Second).Add(-2 * time.Second))
	ahead := func() time.Time { return shared.Now().Add(3 * time.Second) }
	b := v.backends()
	b.Payments, b.Clock = skewedPayments(t, ahead, shared.Now), clockFunc(shared.Now)
	e := v.recovered(Config{}, &b)
	_, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/notify", "")
	if seckill.ErrorCode(err) != seckill.ENotPayable {
		t.Errorf("Pay 2 s before the deadline, provider 3 s ahead: %v (code %q); want not_payable", err, seckill.ErrorCode(err))
	}
}
