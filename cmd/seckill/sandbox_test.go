package main

import (
	"bufio"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"seckill/payment"
	"seckill/payment/sandbox"
)

func TestSandboxFlags(t *testing.T) {
	t.Setenv("SECKILL_DATA", "/srv/sale")
	t.Setenv("SECKILL_ADDR", ":8080") // serve's: not the sandbox's
	t.Setenv("SECKILL_SANDBOX_RETRY_SCALE", "0.01")
	t.Setenv("SECKILL_SANDBOX_APP_ID", "2021777")
	c, err := parseSandboxFlags([]string{"--app-id", "2021888"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := sandboxConfig{Addr: "127.0.0.1:8090", DataDir: "/srv/sale", AppID: "2021888",
		MerchantKey: "/srv/sale/payment/merchant.pub.pem", RetryScale: 0.01}
	if c != want {
		t.Fatalf("config %+v, want %+v", c, want)
	}
	if _, err := parseSandboxFlags([]string{"--retry-scale", "0"}, io.Discard); err == nil {
		t.Fatal("a zero retry scale was accepted")
	}
}

// `seckill sandbox` on its own port, with the key seckill serve leaves in
// the data directory: a shop's client pointed at what it prints can pay.
func TestSandboxCommand(t *testing.T) {
	dir := t.TempDir()
	merchant, err := payment.LoadOrCreateKey(payment.MerchantKeyPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- sandboxCmd(ctx, []string{"--addr", "127.0.0.1:0", "--data", dir}, w, io.Discard)
		w.Close()
	}()
	lines := bufio.NewScanner(out)
	var gateway, pubPath string
	for lines.Scan() && (gateway == "" || pubPath == "") {
		if _, v, ok := strings.Cut(lines.Text(), "provider URL): "); ok {
			gateway = v
		}
		if _, v, ok := strings.Cut(lines.Text(), "provider key): "); ok {
			pubPath = v
		}
	}
	go io.Copy(io.Discard, out)
	if pubPath != filepath.Join(dir, "sandbox", "sandbox.pub.pem") {
		t.Fatalf("public key at %q", pubPath)
	}
	pub, err := payment.ReadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := payment.NewClient(payment.ClientConfig{GatewayURL: gateway, AppID: sandbox.DefaultAppID, PrivateKey: merchant, ProviderKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.CreatePayment(ctx, payment.PaymentRequest{OrderNo: "T1", AmountCents: 100, Subject: "x", NotifyURL: "http://127.0.0.1:1/notify"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.PayURL, strings.TrimSuffix(gateway, "gateway.do")+"pay/") {
		t.Fatalf("pay URL %q", p.PayURL)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the sandbox did not stop")
	}
}
