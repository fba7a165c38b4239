package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"seckill"
)

// TestOpsListener: metrics and pprof (whose cmdline shows --secret and
// --admin-password) are served on the operations listener only; the
// public one answers 404 for them, the health checks included.
func TestOpsListener(t *testing.T) {
	m := NewMain()
	if err := m.ParseFlags([]string{
		"--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--data", t.TempDir(), "--log-level", "error",
		"--pprof", "--secret", "path-secret-0123456789abcdef0123456789",
		"--admin-phone", "19900000000", "--admin-password", "admin-password",
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	defer m.Close()

	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace"} {
		if body := get(t, m.URL()+path, 404); strings.Contains(body, "path-secret") || strings.Contains(body, "admin-password") {
			t.Errorf("public %s shows a secret: %.200s", path, body)
		}
	}
	get(t, m.URL()+"/healthz", 404)
	get(t, m.URL()+"/readyz", 404)

	ops := m.OpsURL()
	if !strings.Contains(get(t, ops+"/metrics", 200), "seckill_http_requests_total") {
		t.Error("ops /metrics lacks the request counter")
	}
	get(t, ops+"/healthz", 200)
	get(t, ops+"/readyz", 200)
	// (The command line is this test binary's: os.Args.)
	if !strings.Contains(get(t, ops+"/debug/pprof/cmdline", 200), os.Args[0]) {
		t.Error("ops /debug/pprof/cmdline does not show the command line")
	}
	// The API is not on the operations listener.
	get(t, ops+"/api/sales", 404)
}

// TestOpsListenerDefaults: by default the operations listener is on
// loopback, so another machine cannot reach pprof's cmdline; "off" turns
// it off.
func TestOpsListenerDefaults(t *testing.T) {
	m := NewMain()
	if err := m.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	ap, err := netip.ParseAddrPort(m.Config.Ops.Addr)
	if err != nil || !ap.Addr().IsLoopback() {
		t.Fatalf("default --ops-addr %q is not a loopback address (%v)", m.Config.Ops.Addr, err)
	}

	// A loopback listener refuses connections to the machine's other
	// addresses.
	m = NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel = "127.0.0.1:0", t.TempDir(), "error"
	m.Config.Ops = OpsConfig{Addr: "127.0.0.1:0", Pprof: true}
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	defer m.Close()
	get(t, m.OpsURL()+"/debug/pprof/cmdline", 200)
	port := m.opsLn.Addr().(*net.TCPAddr).Port
	other := nonLoopback(t)
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(other.String(), strconv.Itoa(port)), 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("the operations listener answers on %s", other)
	}

	for _, off := range []string{"off", ""} {
		m := NewMain()
		if err := m.ParseFlags([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--log-level", "error", "--ops-addr", off}); err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background()); err != nil {
			_ = m.Close()
			t.Fatal(err)
		}
		if u := m.OpsURL(); u != "" {
			t.Errorf("--ops-addr %q: operations listener on %s", off, u)
		}
		get(t, m.URL()+"/metrics", 404)
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// nonLoopback returns one of this machine's addresses that is not
// loopback, or skips the test.
func nonLoopback(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err == nil && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	t.Skip("this machine has no address but loopback")
	return netip.Addr{}
}

// TestAnswering: /readyz names the backends that do not answer (it said
// "internal error" while the database was unreachable), and the log keeps
// their errors.
func TestAnswering(t *testing.T) {
	if err := answering(map[string]error{"database": nil, "nats": nil}); err != nil {
		t.Fatalf("every backend answers: %v", err)
	}
	refused := errors.New("dial tcp 127.0.0.1:5432: connection refused")
	err := answering(map[string]error{"redis": errors.New("i/o timeout"), "nats": nil, "database": refused})
	if seckill.ErrorCode(err) != seckill.EBusy || seckill.ErrorMessage(err) != "database, redis not answering" {
		t.Fatalf("two backends down: %q %q, want busy naming both", seckill.ErrorCode(err), seckill.ErrorMessage(err))
	}
	if !errors.Is(err, refused) {
		t.Fatalf("%v does not keep the database's error for the log", err)
	}
}
