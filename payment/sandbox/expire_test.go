package sandbox_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"seckill/payment"
	"seckill/payment/sandbox"
)

// TestExpiredTradeIsClosed: a trade created with an expiry can be paid
// until then and not after: the page refuses the click and closes the
// trade, the query says TRADE_CLOSED as soon as the expiry comes, the
// shop gets the TRADE_CLOSED notification, and the order cannot be
// created again. Before it, creating again gives the same trade.
func TestExpiredTradeIsClosed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
	sh := newShop(t, func(int, url.Values) string { return "success" })
	expires := e.clock.Now().Add(10 * time.Minute)
	req := request(sh, "T1", 1234)
	req.ExpiresAt = expires.Add(800 * time.Millisecond) // rounded down to expires
	p, err := e.client.CreatePayment(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, page := openPage(t, p.PayURL); !strings.Contains(page, "2026-01-01 20:10:00") || !strings.Contains(page, `value="pay"`) {
		t.Fatalf("pay page before the expiry:\n%s", page)
	}

	// Just before: the same trade, whatever the second create asks for.
	e.clock.Advance(10*time.Minute - time.Nanosecond)
	req.ExpiresAt = expires.Add(time.Hour)
	if again, err := e.client.CreatePayment(ctx, req); err != nil || again != p {
		t.Fatalf("creating again before the expiry: %+v, %v; want %+v", again, err, p)
	}
	e.deliver(t, 0)

	// At the expiry, before anything closed it: closed to every reader.
	e.clock.Advance(time.Nanosecond)
	if tr, err := e.client.QueryPayment(ctx, "T1"); err != nil || tr.Status != payment.TradeClosed {
		t.Fatalf("query at the expiry: %+v, %v; want TRADE_CLOSED", tr, err)
	}
	if _, err := e.client.CreatePayment(ctx, req); !errors.Is(err, payment.ErrTradeClosed) {
		t.Fatalf("creating again at the expiry: %v, want ErrTradeClosed", err)
	}
	if _, page := openPage(t, p.PayURL); strings.Contains(page, `value="pay"`) || !strings.Contains(page, "closed") {
		t.Fatalf("pay page at the expiry:\n%s", page)
	}
	// A page opened before is still in the buyer's tab: the click pays
	// nothing and closes the trade, as a close would.
	resp := press(t, p.PayURL, "pay")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
		t.Fatalf("pay click after the expiry: %d to %q, want the page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if ns := e.notifications(t, p.ID); len(ns) != 1 || ns[0].State != "pending" {
		t.Fatalf("notifications after the click: %+v", ns)
	}
	e.deliver(t, 1)
	n, err := e.client.VerifyNotification(<-sh.got)
	if err != nil || n.TradeStatus != payment.TradeClosed || n.OutTradeNo != "T1" || n.TradeNo != p.ID {
		t.Fatalf("notification %+v, %v; want TRADE_CLOSED of T1", n, err)
	}
	if err := e.client.Refund(ctx, "T1", p.ID, 1234, "x"); !errors.Is(err, payment.ErrNotRefundable) {
		t.Fatalf("refund of the expired trade: %v, want ErrNotRefundable", err)
	}
	if err := e.client.ClosePayment(ctx, "T1"); err != nil {
		t.Fatalf("closing the expired trade: %v", err)
	}
	e.deliver(t, 0)
	if ns := e.notifications(t, p.ID); len(ns) != 1 {
		t.Fatalf("notifications %+v; want the one close", ns)
	}
}

// TestExpiredTradeClosedUntouched: nobody opens the page, queries or
// closes; the notifier closes the trade at its expiry and the shop gets
// its TRADE_CLOSED notification. Only the trades past their expiry: a
// trade without one, and one expiring later, still wait.
func TestExpiredTradeClosedUntouched(t *testing.T) {
	ctx := context.Background()
	t.Run("manual", func(t *testing.T) {
		e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
		sh := newShop(t, func(int, url.Values) string { return "success" })
		for i, after := range []time.Duration{time.Minute, 2 * time.Minute, 0} {
			req := request(sh, []string{"T1", "T2", "T3"}[i], 100)
			if after > 0 {
				req.ExpiresAt = e.clock.Now().Add(after)
			}
			if _, err := e.client.CreatePayment(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		e.clock.Advance(time.Minute)
		e.deliver(t, 1)
		n, err := e.client.VerifyNotification(<-sh.got)
		if err != nil || n.TradeStatus != payment.TradeClosed || n.OutTradeNo != "T1" || !n.NotifyTime.Equal(e.clock.Now()) {
			t.Fatalf("notification %+v, %v; want T1 closed now", n, err)
		}
		for _, order := range []string{"T2", "T3"} {
			if tr, err := e.client.QueryPayment(ctx, order); err != nil || tr.Status != payment.TradeWaiting {
				t.Fatalf("%s: %+v, %v; want still waiting", order, tr, err)
			}
		}
	})
	// The notifier on its own: asleep with nothing due, it wakes for the
	// expiry (the create told it), on the wall clock.
	t.Run("notifier", func(t *testing.T) {
		e := newEnv(t, t.TempDir(), sandbox.Config{Now: time.Now})
		sh := newShop(t, func(int, url.Values) string { return "success" })
		req := request(sh, "T1", 100)
		req.ExpiresAt = time.Now().Add(2 * time.Second) // at least a second once rounded down
		p, err := e.client.CreatePayment(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var form url.Values
		select {
		case form = <-sh.got:
		case <-time.After(10 * time.Second):
			t.Fatal("no notification 8 s after the trade expired")
		}
		n, err := e.client.VerifyNotification(form)
		if err != nil || n.TradeStatus != payment.TradeClosed || n.TradeNo != p.ID {
			t.Fatalf("notification %+v, %v; want TRADE_CLOSED of %s", n, err, p.ID)
		}
		if n.NotifyTime.Before(req.ExpiresAt.Truncate(time.Second)) {
			t.Fatalf("closed at %v, before its expiry %v", n.NotifyTime, req.ExpiresAt)
		}
		if tr, err := e.client.QueryPayment(ctx, "T1"); err != nil || tr.Status != payment.TradeClosed {
			t.Fatalf("query: %+v, %v; want TRADE_CLOSED", tr, err)
		}
	})
}

// TestBadTimeExpire: a time_expire the sandbox cannot read, or one that
// has passed on its clock (the shop's clock is behind), is refused like
// other bad input; no trade is made.
func TestBadTimeExpire(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
	sh := newShop(t, func(int, url.Values) string { return "success" })
	merchant := testKey(t, "merchant")
	// Unreadable, and too far ahead: past 15 days, and past 2262, which
	// unix nanoseconds do not reach (stored, it wrapped around to a time
	// long past, and the trade the create answered was closed at once).
	tooFar := e.clock.Now().Add(15*24*time.Hour + time.Minute).In(payment.China).Format(payment.TimeLayout)
	for _, te := range []string{"2026-01-01T20:10:00+08:00", "2026-13-01 00:00:00", "tomorrow", "2026-01-01 20:10",
		tooFar, "2262-06-01 00:00:00", "9999-12-31 23:59:59"} {
		form := url.Values{"app_id": {sandbox.DefaultAppID}, "method": {payment.MethodCreate}, "sign_type": {"RSA2"},
			"notify_url":  {sh.srv.URL + "/notify"},
			"biz_content": {`{"out_trade_no":"T1","total_amount":"1.00","subject":"x","time_expire":"` + te + `"}`}}
		sign, err := payment.SignRequest(merchant, form)
		if err != nil {
			t.Fatal(err)
		}
		form.Set("sign", sign)
		if r := e.post(t, payment.MethodCreate, form); r.SubCode != payment.SubInvalidParameter || r.SubMsg != "time_expire" {
			t.Errorf("time_expire %q: %+v, want refused", te, r)
		}
	}
	behind, err := payment.NewClient(payment.ClientConfig{
		GatewayURL: e.srv.URL + "/sandbox/gateway.do", AppID: sandbox.DefaultAppID, PrivateKey: merchant,
		ProviderKey: e.sb.PublicKey(), Now: func() time.Time { return e.clock.Now().Add(-time.Minute) },
	})
	if err != nil {
		t.Fatal(err)
	}
	req := request(sh, "T1", 100)
	req.ExpiresAt = e.clock.Now()
	// Past on the sandbox's clock: no payment, answered as a closed one.
	if _, err := behind.CreatePayment(ctx, req); !errors.Is(err, payment.ErrTradeClosed) {
		t.Fatalf("an expiry past on the sandbox's clock: %v, want ErrTradeClosed", err)
	}
	if _, err := e.client.QueryPayment(ctx, "T1"); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("query after the refusals: %v, want no trade", err)
	}
}
