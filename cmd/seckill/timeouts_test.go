package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// runWithTimeouts runs the embedded server with the public listener's
// timeouts set to d, and admin 19900000000 / admin-password.
func runWithTimeouts(t *testing.T, d time.Duration, extra ...string) *Main {
	t.Helper()
	m := NewMain()
	args := append([]string{
		"--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--data", t.TempDir(), "--log-level", "error",
		"--admin-phone", "19900000000", "--admin-password", "admin-password",
		"--read-header-timeout", d.String(), "--read-timeout", d.String(),
		"--write-timeout", d.String(), "--idle-timeout", d.String(),
	}, extra...)
	if err := m.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestSlowClientsAreCutOff: a client trickling its headers or its body
// (the review's attack: a 60 KB body at one byte at a time) is hung up on
// once the read timeout passes, instead of holding its connection for as
// long as it likes.
func TestSlowClientsAreCutOff(t *testing.T) {
	const timeout = 500 * time.Millisecond
	m := runWithTimeouts(t, timeout)
	addr := strings.TrimPrefix(m.URL(), "http://")
	for _, tc := range []struct{ name, head, trickle string }{
		{"slow body", "POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
			`{"phone":"13000000000","password":"` + strings.Repeat("x", 60000)},
		{"slow headers", "GET /api/sales HTTP/1.1\r\n", "X-Padding: " + strings.Repeat("y", 60000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.head); err != nil {
				t.Fatal(err)
			}
			defer trickle(c, tc.trickle, 20*time.Millisecond)()
			// The server hangs up (EOF or reset) well before this
			// deadline; reaching it means the connection was still held.
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(10 * timeout))
			_, err = io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server still holds the connection after %v", time.Since(start).Round(time.Millisecond))
			}
		})
	}
}

// TestWebSocketOutlivesTimeouts: the public listener's read, write and
// idle timeouts do not cut an open WebSocket: long after them it still
// answers a ping and gets its push.
func TestWebSocketOutlivesTimeouts(t *testing.T) {
	const timeout = time.Second
	m := runWithTimeouts(t, timeout)
	call := func(method, path, token string, body any, status int, out any) {
		t.Helper()
		apiCall(t, method, m.URL()+path, token, body, status, out)
	}
	// Logged in without HTTP: hashing the password under the race
	// detector may take longer than these timeouts.
	var login struct{ Token string }
	var err error
	if login.Token, _, _, err = m.accounts.Login(context.Background(), "19900000000", "admin-password"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var sale struct{ Sale struct{ ID int64 } }
	call("POST", "/api/admin/sales", login.Token, map[string]any{"name": "ws", "price_cents": 1, "original_price_cents": 2, "stock": 1,
		"starts_at": now.Add(-time.Minute), "ends_at": now.Add(time.Hour), "require_captcha": false}, 201, &sale)
	id := strconv.FormatInt(sale.Sale.ID, 10)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(m.URL(), "http", "ws", 1)+"/api/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + login.Token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// Reads on the client side run in a goroutine: pongs arrive through it.
	msgs := make(chan []byte, 1)
	go func() {
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- b
		}
	}()

	// Let every timeout of the connection pass, twice over.
	time.Sleep(2*timeout + timeout/2)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("no pong after the timeouts: %v", err)
	}
	var path struct{ Path string }
	call("POST", "/api/sales/"+id+"/path", login.Token, nil, 200, &path)
	call("POST", "/api/sales/"+id+"/purchase/"+path.Path, login.Token, nil, 202, nil)
	// The sale's own push (sold out: its one unit is taken) may come
	// before or after the buyer's result.
	for {
		b, ok := <-msgs
		if !ok {
			t.Fatal("the socket closed before the buyer's result")
		}
		if strings.Contains(string(b), `"order_result"`) {
			return
		}
		if !strings.Contains(string(b), `"type":"sale"`) {
			t.Fatalf("push %s", b)
		}
		t.Logf("push %s", b)
	}
}

// TestBenchProvisioningOutlivesTimeouts: the admin's bulk provisioning
// may take longer than the public timeouts (which are against slow
// clients); it lifts them for itself once its body is read.
func TestBenchProvisioningOutlivesTimeouts(t *testing.T) {
	// Short against the provisioning (seconds), long enough that a loaded
	// machine under -race reads the request's headers and body in time:
	// the client's dial and its write may be that far apart.
	const timeout = 150 * time.Millisecond
	m := runWithTimeouts(t, timeout, "--bench-provisioning", "--ip-rate", "0")
	// The admin logs in without HTTP: hashing the password may take
	// longer than these timeouts, and login does not lift them.
	token, _, _, err := m.accounts.Login(context.Background(), "19900000000", "admin-password")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	req, _ := http.NewRequest("POST", m.URL()+"/api/admin/bench/users", strings.NewReader(`{"count":3000,"prefix":"15"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("provisioning, after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	defer resp.Body.Close()
	var out struct{ Users []struct{ Token string } }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 || len(out.Users) != 3000 {
		t.Fatalf("provisioning: %d, %d users, %v", resp.StatusCode, len(out.Users), err)
	}
	t.Logf("provisioning 3000 buyers took %v (timeouts %v)", time.Since(start).Round(time.Millisecond), timeout)
}

// TestMaxHeaderBytes: headers larger than --max-header-bytes (32 KiB by
// default; Go's own default is 1 MiB) are answered 431 without reaching
// a handler; headers within it are served, and the flag moves the bound.
func TestMaxHeaderBytes(t *testing.T) {
	send := func(m *Main, pad int) int {
		t.Helper()
		req, _ := http.NewRequest("GET", m.URL()+"/api/sales", nil)
		req.Header.Set("X-Padding", strings.Repeat("y", pad))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	m := runWithTimeouts(t, 5*time.Second)
	if got := send(m, 16<<10); got != 200 {
		t.Errorf("16 KiB of headers: %d, want 200", got)
	}
	if got := send(m, 64<<10); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: %d, want 431", got)
	}
	m = runWithTimeouts(t, 5*time.Second, "--max-header-bytes", strconv.Itoa(128<<10))
	if got := send(m, 64<<10); got != 200 {
		t.Errorf("64 KiB of headers under --max-header-bytes 128 KiB: %d, want 200", got)
	}
}
