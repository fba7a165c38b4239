package payment_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"seckill/payment"
)

// gatewayRecorder is a provider's gateway that keeps every request's form
// and answers each create with a signed success.
type gatewayRecorder struct {
	srv   *httptest.Server
	forms chan url.Values
}

func newGatewayRecorder(t *testing.T) *gatewayRecorder {
	t.Helper()
	provider := testKey(t, "provider")
	g := &gatewayRecorder{forms: make(chan url.Values, 10)}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.forms <- r.PostForm
		b, err := payment.MarshalReply(provider, payment.MethodCreate, payment.Reply{
			Code: payment.CodeSuccess, Msg: "Success", TradeNo: "2026T1", QRCode: "http://provider.test/pay/2026T1",
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// TestCreatePaymentTimeExpire: the expiry goes out as biz_content's
// time_expire, in China time, rounded down to the second, and signed.
// Whether it has passed is for the caller to check on its clock (Pay, on
// the shared one) and for the provider on its own: not the client's, on
// an instance's clock that may be minutes off.
func TestCreatePaymentTimeExpire(t *testing.T) {
	merchant := testKey(t, "merchant")
	g := newGatewayRecorder(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, err := payment.NewClient(payment.ClientConfig{
		GatewayURL: g.srv.URL + "/gateway.do", AppID: "2021000000000001",
		PrivateKey: merchant, ProviderKey: &testKey(t, "provider").PublicKey,
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	req := payment.PaymentRequest{OrderNo: "T1", AmountCents: 100, Subject: "x", NotifyURL: "http://shop.test/notify"}
	newYork := time.FixedZone("EST", -5*3600)
	for _, tc := range []struct {
		name    string
		expires time.Time
		want    string // "" for no time_expire at all
	}{
		{"none", time.Time{}, ""},
		{"UTC, rounded down", time.Date(2026, 1, 1, 12, 10, 0, 999_999_999, time.UTC), "2026-01-01 20:10:00"},
		{"another zone", time.Date(2026, 1, 1, 7, 10, 30, 500_000_000, newYork), "2026-01-01 20:10:30"},
		{"past midnight in China", time.Date(2026, 1, 1, 16, 0, 0, 1, time.UTC), "2026-01-02 00:00:00"},
		{"a second away", now.Add(time.Second), "2026-01-01 20:00:01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := req
			r.ExpiresAt = tc.expires
			if _, err := c.CreatePayment(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			form := <-g.forms
			if err := payment.VerifyRequest(&merchant.PublicKey, form); err != nil {
				t.Fatalf("the request does not verify: %v", err)
			}
			var biz map[string]any
			if err := json.Unmarshal([]byte(form.Get("biz_content")), &biz); err != nil {
				t.Fatal(err)
			}
			got, ok := biz["time_expire"]
			switch {
			case tc.want == "" && ok:
				t.Fatalf("time_expire %q sent without an expiry", got)
			case tc.want != "" && got != tc.want:
				t.Fatalf("time_expire %q, want %q (biz_content %s)", got, tc.want, form.Get("biz_content"))
			}
		})
	}
}

// TestClientBoundsGatewayConnections: a burst of calls holds at most
// MaxGatewayConns connections to the gateway; the others wait for one.
func TestClientBoundsGatewayConnections(t *testing.T) {
	var mu sync.Mutex
	open, most := 0, 0
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open++
			most = max(most, open)
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := payment.NewClient(payment.ClientConfig{
		GatewayURL: srv.URL + "/gateway.do", AppID: "2021000000000001",
		PrivateKey: testKey(t, "merchant"), ProviderKey: &testKey(t, "provider").PublicKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 3 * payment.MaxGatewayConns
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = c.QueryPayment(context.Background(), fmt.Sprintf("T%d", i))
		}()
	}
	time.Sleep(500 * time.Millisecond) // the burst is out, waiting
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if most > payment.MaxGatewayConns || most == 0 {
		t.Fatalf("%d calls at once held %d connections, want at most %d", calls, most, payment.MaxGatewayConns)
	}
}
