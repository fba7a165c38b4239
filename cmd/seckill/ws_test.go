package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seckill/bench"
)

// TestBenchWSIdle runs the ws-idle mode small, against the real server.
func TestBenchWSIdle(t *testing.T) {
	m := startServer(t, false)
	res, report := benchJSON(t, m, "--ws-idle", "50", "--ws-per-user", "3", "--ws-hold", "300ms", "--conns", "8")
	ws := res.WS
	if res.Mode != bench.ModeWSIdle || !res.OK || ws == nil || ws.Opened != 50 || ws.Users != 17 || ws.ClosedEarly != 0 {
		t.Fatalf("result:\n%s", report)
	}
	if ws.Before.WebSockets != 0 || ws.After.WebSockets != 50 || ws.Before.RSS <= 0 || ws.After.RSS <= 0 {
		t.Fatalf("memory readings:\n%s", report)
	}
	// An idle socket holds one goroutine on the server, its reader; the
	// bench runs in this process too, and holds one reader per socket as
	// well. A few come and go with HTTP connections; two per socket on
	// the server would make it 150.
	if d := ws.After.Goroutines - ws.Before.Goroutines; d < 2*50-10 || d > 2*50+30 {
		t.Errorf("%d more goroutines for 50 idle sockets (and their 50 clients)", d)
	}
	// The sockets are closed at the end, and the gauge says so.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(get(t, m.OpsURL()+"/metrics", 200), "seckill_websocket_connections 0") {
		if time.Now().After(deadline) {
			t.Fatal("the server still counts open sockets after the bench closed them")
		}
		time.Sleep(20 * time.Millisecond)
	}

	var text strings.Builder
	res.WriteText(&text)
	for _, want := range []string{"50 of 50 open", "per socket  RSS"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
}

// runEmbedded runs `seckill serve` in this process on the embedded backends
// and a fresh data directory, with admin 19900000000 / admin-password. The
// caller closes it.
func runEmbedded(t *testing.T) *Main {
	t.Helper()
	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel = "127.0.0.1:0", t.TempDir(), "error"
	m.Config.Ops.Addr = "127.0.0.1:0"
	m.Config.AdminPhone, m.Config.AdminPassword = "19900000000", "admin-password"
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	return m
}

// TestServeWebSocket: the server pushes a purchase's result to the
// buyer's socket and closes the socket when it shuts down.
func TestServeWebSocket(t *testing.T) {
	m := runEmbedded(t)
	closed := false
	defer func() {
		if !closed {
			_ = m.Close()
		}
	}()
	call := func(method, path, token string, body any, status int, out any) {
		t.Helper()
		apiCall(t, method, m.URL()+path, token, body, status, out)
	}
	var login struct{ Token string }
	call("POST", "/api/sessions", "", map[string]string{"phone": "19900000000", "password": "admin-password"}, 200, &login)
	now := time.Now().UTC()
	var sale struct{ Sale struct{ ID int64 } }
	call("POST", "/api/admin/sales", login.Token, map[string]any{"name": "ws", "price_cents": 1, "original_price_cents": 2, "stock": 1,
		"starts_at": now.Add(-time.Minute), "ends_at": now.Add(time.Hour), "require_captcha": false}, 201, &sale)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(m.URL(), "http", "ws", 1)+"/api/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + login.Token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	var path struct{ Path string }
	call("POST", "/api/sales/"+strconv.FormatInt(sale.Sale.ID, 10)+"/path", login.Token, nil, 200, &path)
	call("POST", "/api/sales/"+strconv.FormatInt(sale.Sale.ID, 10)+"/purchase/"+path.Path, login.Token, nil, 202, nil)
	var p struct {
		Type, Status string
		SaleID       int64 `json:"sale_id"`
		OrderID      int64 `json:"order_id"`
	}
	// The sale's push (sold out: its one unit is taken) comes too, before
	// or after the buyer's result, when the watcher's first look at the
	// sale came before the purchase.
	for p.Type != "order_result" {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Type = ""
		if err := json.Unmarshal(b, &p); err != nil || (p.Type != "order_result" && p.Type != "sale") {
			t.Fatalf("push %s (%v)", b, err)
		}
		if p.Type == "order_result" && (p.Status != "success" || p.SaleID != sale.Sale.ID || p.OrderID == 0) {
			t.Fatalf("push %s", b)
		}
	}
	if body := get(t, m.OpsURL()+"/metrics", 200); !strings.Contains(body, "seckill_websocket_connections 1") {
		t.Error("/metrics does not count the open socket")
	}

	done := make(chan error, 1)
	go func() {
		// The sale's push may still come (after the result, at the
		// watcher's next tick): only the close ends the wait.
		for {
			_, b, err := c.Read(ctx)
			if err != nil || !strings.Contains(string(b), `"type":"sale"`) {
				done <- err
				return
			}
		}
	}()
	closed = true
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after shutdown the client reads %v, want going away", err)
	}
}

// TestWebSocketLogoutOnAnotherInstance: a logout on one instance closes
// the session's socket on another, which hears of it through the
// revocation feed (rdb.Sessions.FollowRevocations), with the close code
// that tells the page the session ended.
func TestWebSocketLogoutOnAnotherInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance runs skipped in -short mode")
	}
	d := newDeployment(t, 2, freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES")),
		integration(t, "SECKILL_TEST_REDIS"), integration(t, "SECKILL_TEST_NATS"))
	var login struct{ Token string }
	if code, err := d.nodes[0].call("POST", "/api/sessions", "", `{"phone":"19900000000","password":"admin-password"}`, &login); err != nil || code != 200 {
		t.Fatalf("login: %d %v", code, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(d.nodes[1].url, "http", "ws", 1)+"/api/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + login.Token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if code, err := d.nodes[0].call("DELETE", "/api/sessions", login.Token, "", nil); err != nil || code != 204 {
		t.Fatalf("logout: %d %v", code, err)
	}
	for {
		_, _, err := c.Read(ctx) // sale pushes may come first
		if err == nil {
			continue
		}
		if websocket.CloseStatus(err) != 4001 {
			t.Fatalf("the socket on the other instance: %v, want close code 4001 (session ended)", err)
		}
		break
	}
}
