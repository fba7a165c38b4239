package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"seckill/payment"
	"seckill/payment/sandbox"
)

// TestServeSharedMerchantKey: instances sharing one payment provider sign
// their requests with one merchant key (--pay-merchant-key). An instance
// with the shared key opens payments at the provider; one that made a key
// of its own into its data directory is refused there (the provider knows
// one merchant key), as every instance but one was before the flag. A
// --pay-merchant-key that names no key file stops the start.
func TestServeSharedMerchantKey(t *testing.T) {
	ctx := context.Background()
	shared := payment.MerchantKeyPath(t.TempDir())
	key, err := payment.LoadOrCreateKey(shared)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.Open(ctx, sandbox.Config{DataDir: t.TempDir(), MerchantKey: &key.PublicKey, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	provider := httptest.NewServer(sb)
	defer provider.Close()
	atProvider := func(merchantKey string) func(*Config) {
		return func(c *Config) {
			c.PayProviderURL, c.PayProviderKey, c.PayMerchantKey = provider.URL+"/sandbox/gateway.do", sb.PublicKeyPath(), merchantKey
		}
	}

	for _, tc := range []struct {
		name, merchantKey string
		pay               int
	}{
		{"shared key", shared, http.StatusOK},
		{"a key of its own", "", http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startBrowserServer(t, "127.0.0.1:0", t.TempDir(), "", atProvider(tc.merchantKey))
			defer m.Close()
			admin := browserLogin(t, m.URL(), "19900000000", "admin-password")
			sale := createBrowserSale(t, m.URL(), admin, "Lamp", 1, time.Now().Add(-time.Minute), false)
			var path struct{ Path string }
			apiCall(t, "POST", m.URL()+"/api/sales/"+sale.id+"/path", admin, nil, 200, &path)
			apiCall(t, "POST", m.URL()+"/api/sales/"+sale.id+"/purchase/"+path.Path, admin, nil, 202, nil)
			var order int64
			for deadline := time.Now().Add(10 * time.Second); order == 0; time.Sleep(20 * time.Millisecond) {
				var res struct {
					OrderID int64 `json:"order_id"`
				}
				apiCall(t, "GET", m.URL()+"/api/sales/"+sale.id+"/result", admin, nil, 200, &res)
				if order = res.OrderID; time.Now().After(deadline) {
					t.Fatal("no order after 10 s")
				}
			}
			code, _, body, err := apiSend(http.DefaultClient, "POST", fmt.Sprintf("%s/api/orders/%s/pay", m.URL(), strconv.FormatInt(order, 10)), admin, "", nil)
			if err != nil || code != tc.pay {
				t.Fatalf("pay: %d %s %v; want %d", code, body, err, tc.pay)
			}
			if tc.pay == http.StatusOK && !strings.Contains(string(body), provider.URL+"/sandbox/pay/") {
				t.Errorf("pay: %s, want the provider's pay page", body)
			}
		})
	}

	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel, m.Config.Ops.Addr = "127.0.0.1:0", t.TempDir(), "error", "off"
	atProvider(filepath.Join(t.TempDir(), "no-such.pem"))(&m.Config)
	if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "--pay-merchant-key") {
		t.Errorf("Run with a missing merchant key file: %v, want an error naming --pay-merchant-key", err)
	}
	_ = m.Close()
}
