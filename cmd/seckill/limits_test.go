package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"seckill/internal/connlimit"
	"seckill/rdb"
)

// TestServeReadBudget: --user-read-rate and --user-read-burst reach the
// per-user bucket of reads (429 past the burst, the user's purchases
// untouched is httpapi's test), and --user-read-rate 0 turns it off.
func TestServeReadBudget(t *testing.T) {
	for _, tc := range []struct {
		rate   string
		reads  int
		status int // of the read after them
	}{
		{"0.001", 3, 429},
		{"0", 60, 200},
	} {
		t.Run("rate "+tc.rate, func(t *testing.T) {
			m := NewMain()
			if err := m.ParseFlags([]string{"--addr", "127.0.0.1:0", "--ops-addr", "off", "--data", t.TempDir(), "--log-level", "error",
				"--admin-phone", "19900000000", "--admin-password", "admin-password",
				"--user-read-rate", tc.rate, "--user-read-burst", "3"}); err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background()); err != nil {
				_ = m.Close()
				t.Fatal(err)
			}
			defer m.Close()
			var login struct{ Token string }
			apiCall(t, "POST", m.URL()+"/api/sessions", "", map[string]string{"phone": "19900000000", "password": "admin-password"}, 200, &login)
			for range tc.reads {
				apiCall(t, "GET", m.URL()+"/api/me", login.Token, nil, 200, nil)
			}
			code, header, _, err := apiSend(http.DefaultClient, "GET", m.URL()+"/api/me", login.Token, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.status {
				t.Fatalf("read %d: %d, want %d", tc.reads+1, code, tc.status)
			}
			if code == 429 && header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
}

// TestServeCaptchaCapRetryAfter: a buyer past serve's cap of captchas for
// a sale (20 at once, one more every 3 minutes) is told in Retry-After
// when the next one comes, not to try again every second for 3 minutes.
func TestServeCaptchaCapRetryAfter(t *testing.T) {
	// The per-user limit off: its bucket would refuse first.
	m := startBrowserServer(t, "127.0.0.1:0", t.TempDir(), "", func(c *Config) { c.UserRate = 0 })
	defer m.Close()
	admin := browserLogin(t, m.URL(), "19900000000", "admin-password")
	sale := createBrowserSale(t, m.URL(), admin, "Phone X", 5, time.Now().Add(-time.Minute), true)
	apiCall(t, "POST", m.URL()+"/api/users", "", map[string]string{"phone": "13800000004", "password": "buyer-password"}, 201, nil)
	buyer := browserLogin(t, m.URL(), "13800000004", "buyer-password")
	url := m.URL() + "/api/sales/" + sale.id + "/captcha"
	for range captchaCap {
		apiCall(t, "GET", url, buyer, nil, 200, nil)
	}
	code, header, body, err := apiSend(http.DefaultClient, "GET", url, buyer, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusTooManyRequests || header.Get("Retry-After") != "180" {
		t.Fatalf("captcha %d: %d, Retry-After %q (%s); want 429 and 180", captchaCap+1, code, header.Get("Retry-After"), body)
	}
}

// TestServeConnectionBounds: --max-conns-per-ip closes a client's
// connections past the bound at once (idle keep-alive connections cannot
// pile up to the open-file limit, where the embedded queue's store fails
// its writes), the client's others and everyone's requests go on, a
// closed connection frees a place. (The total bound, --max-conns, is
// connlimit's TestTotalBound.)
func TestServeConnectionBounds(t *testing.T) {
	m := startBrowserServer(t, "127.0.0.1:0", t.TempDir(), "", func(c *Config) { c.MaxConnsPerIP, c.MaxConns = 3, 12 })
	defer m.Close()
	addr := strings.TrimPrefix(m.URL(), "http://")
	// Each held connection has made a request: the server holds it idle.
	hold := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	get := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET /api/sales HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	var held []net.Conn
	for i := range 3 {
		c := hold()
		if err := get(c); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		held = append(held, c)
	}
	if err := get(hold()); err == nil {
		t.Fatal("a 4th connection from the address was served")
	}
	for i, c := range held {
		if err := get(c); err != nil {
			t.Fatalf("held connection %d after the 4th was refused: %v", i+1, err)
		}
	}
	// The operations listener's metrics say so.
	families, err := m.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			got[f.GetName()] = mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
		}
	}
	if got["seckill_public_connections_refused_total"] != 1 || got["seckill_public_connections"] < 3 {
		t.Errorf("metrics: %v refused, %v open; want 1 and at least 3",
			got["seckill_public_connections_refused_total"], got["seckill_public_connections"])
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := get(hold())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a place freed by a closed connection: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeRefusesAnotherDatabasesGateKeys: a server whose Redis holds the
// stock of sales its database does not have (a new database on an old
// Redis prefix) refuses to start and says why; a new sale would take over
// the old one's keys. Its own database on the same Redis starts.
func TestServeRefusesAnotherDatabasesGateKeys(t *testing.T) {
	redisURL := integration(t, "SECKILL_TEST_REDIS")
	prefix := randomName("keys") + ":"
	withRedis := func(c *Config) { c.Redis, c.RedisPrefix = redisURL, prefix }
	t.Cleanup(func() {
		if c, err := rdb.Open(context.Background(), redisURL); err == nil {
			_ = rdb.NewGate(c, prefix).Unload(context.Background())
			_ = c.Close()
		}
	})
	first := t.TempDir()
	m := startBrowserServer(t, "127.0.0.1:0", first, "", withRedis)
	admin := browserLogin(t, m.URL(), "19900000000", "admin-password")
	createBrowserSale(t, m.URL(), admin, "Phone X", 5, time.Now().Add(-time.Minute), false)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	other := NewMain()
	other.Config.Addr, other.Config.DataDir, other.Config.LogLevel, other.Config.Ops.Addr = "127.0.0.1:0", t.TempDir(), "error", "off"
	other.Config.AdminPhone, other.Config.AdminPassword = "19900000000", "admin-password"
	withRedis(&other.Config)
	err := other.Run(context.Background())
	_ = other.Close()
	if err == nil || !strings.Contains(err.Error(), "which this database does not have") || !strings.Contains(err.Error(), prefix) {
		t.Fatalf("a new database on the old prefix: %v, want a refusal naming the prefix", err)
	}

	again := startBrowserServer(t, "127.0.0.1:0", first, "", withRedis)
	_ = again.Close()
}

// TestServePaysWithItsAddressAtTheBound: the shop calls its in-process
// sandbox without a connection, so a pay goes through while the
// loopback address holds every connection it may (before, the shop's
// own call to its sandbox came from that address and was refused: 500).
func TestServePaysWithItsAddressAtTheBound(t *testing.T) {
	m := startBrowserServer(t, "127.0.0.1:0", t.TempDir(), "", func(c *Config) { c.MaxConnsPerIP, c.MaxConns = 4, 400 })
	defer m.Close()
	base := m.URL()
	admin := browserLogin(t, base, "19900000000", "admin-password")
	sale := createBrowserSale(t, base, admin, "Tea", 5, time.Now().Add(-time.Minute), false)
	apiCall(t, "POST", base+"/api/users", "", map[string]string{"phone": "13800000007", "password": "buyer-password"}, 201, nil)
	tok := browserLogin(t, base, "13800000007", "buyer-password")
	var p struct{ Path string }
	apiCall(t, "POST", base+"/api/sales/"+sale.id+"/path", tok, nil, 200, &p)
	apiCall(t, "POST", base+"/api/sales/"+sale.id+"/purchase/"+p.Path, tok, nil, 202, nil)
	var orders struct{ Orders []struct{ ID int64 } }
	waitFor(t, "the order", func() bool {
		apiCall(t, "GET", base+"/api/orders", tok, nil, 200, &orders)
		return len(orders.Orders) == 1
	}, 10*time.Second)
	http.DefaultClient.CloseIdleConnections()
	// The server sees those closed when it next reads them.
	waitFor(t, "the server to see the closed connections", func() bool { return m.ln.(*connlimit.Listener).Open() == 0 }, 5*time.Second)

	// Three idle connections and the buyer's: the address's four.
	addr := strings.TrimPrefix(base, "http://")
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /api/sales HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection: %v", err)
		}
	}
	code, _, body, err := apiSend(http.DefaultClient, "POST", fmt.Sprintf("%s/api/orders/%d/pay", base, orders.Orders[0].ID), tok, "", nil)
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), "pay_url") {
		t.Fatalf("pay with the address at its bound: %d %s %v", code, body, err)
	}
}

// TestServeOpsListenerBounded: the operations listener holds at most
// maxOpsConns connections (1,250 kept-alive health checks reached the
// open-file limit before); the next closes an idle one to be served, and
// the total stays at the bound.
func TestServeOpsListenerBounded(t *testing.T) {
	m := startBrowserServer(t, "127.0.0.1:0", t.TempDir(), "", func(c *Config) { c.Ops.Addr = "127.0.0.1:0" })
	defer m.Close()
	addr := m.opsLn.Addr().String()
	health := func(c net.Conn, wait time.Duration) error {
		c.SetDeadline(time.Now().Add(wait))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	var held []net.Conn
	for i := range maxOpsConns + 1 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		if err := health(c, 5*time.Second); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	ops := m.opsLn.(*connlimit.Listener)
	if ops.Open() > maxOpsConns || ops.Evicted() != 1 {
		t.Fatalf("after %d connections: %d open, %d evicted, want at most %d and 1", maxOpsConns+1, ops.Open(), ops.Evicted(), maxOpsConns)
	}
	// The one closed was the longest idle: the first.
	if err := health(held[0], 5*time.Second); err == nil {
		t.Fatal("the longest idle connection was not the one closed")
	}
}
