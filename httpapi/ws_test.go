package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seckill"
	"seckill/account"
	"seckill/httpapi"
)

// wsGauge counts open sockets through Config.WebSockets.
type wsGauge struct{ n atomic.Int64 }

func (g *wsGauge) add(d int) { g.n.Add(int64(d)) }

// await waits until the gauge reads want.
func (g *wsGauge) await(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.n.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("open sockets %d, want %d", g.n.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serve puts the stack behind a real listener (a recorder cannot be
// hijacked) and returns the URL of its socket endpoint.
func (s *stack) serve() string {
	s.t.Helper()
	srv := httptest.NewServer(s.h)
	s.t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/ws"
}

// dialWS opens a socket with the header, or fails the test.
func dialWS(t *testing.T, url string, header http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// push reads the next message, or fails the test after 10 s.
func push(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read push: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("push of type %v", typ)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("push %q: %v", b, err)
	}
	return m
}

// refused dials and expects the handshake to be answered status with the
// JSON error code, not upgraded.
func refused(t *testing.T, url string, header http.Header, status int, code string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err == nil {
		c.CloseNow()
		t.Fatalf("upgraded; want %d %s", status, code)
	}
	if resp == nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	var e struct{ Error struct{ Code string } }
	if resp.StatusCode != status || json.Unmarshal(body, &e) != nil || e.Error.Code != code {
		t.Fatalf("got %d %s, want %d %q", resp.StatusCode, body, status, code)
	}
	if resp.Header.Get("Upgrade") != "" {
		t.Fatalf("refusal carries Upgrade: %v", resp.Header)
	}
}

func TestWSAuthentication(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{wsGauge: g.add})
	url := s.serve()
	toks, _ := s.buyers(1)

	refused(t, url, nil, 401, "unauthenticated")
	refused(t, url, bearer("not-a-token"), 401, "unauthenticated")
	refused(t, url, http.Header{"Cookie": {httpapi.CookieName + "=not-a-token"}}, 401, "unauthenticated")
	// A plain request (no upgrade) gets the same JSON errors.
	want(t, s.do("GET", "/api/ws", "", nil), 401, "unauthenticated")
	want(t, s.do("POST", "/api/ws", toks[0], nil), 405, "method_not_allowed")
	// Authenticated, but not a WebSocket handshake: the contract's JSON
	// error, not the library's plain text.
	want(t, s.do("GET", "/api/ws", toks[0], nil), 400, "invalid")
	req, err := http.NewRequest("GET", strings.Replace(url, "ws://", "http://", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = http.Header{"Authorization": {"Bearer " + toks[0]}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"8"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"code":"invalid"`) ||
		resp.Header.Get("Sec-WebSocket-Version") != "13" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("handshake of version 8: %d %v %s, want 400 invalid saying version 13", resp.StatusCode, resp.Header, body)
	}
	g.await(t, 0)

	// The bearer header and the cookie both authenticate.
	dialWS(t, url, bearer(toks[0]))
	dialWS(t, url, http.Header{"Cookie": {httpapi.CookieName + "=" + toks[0]}})
	g.await(t, 2)

	// Another site's page must not open a socket with the buyer's cookie.
	refused(t, url, http.Header{
		"Cookie": {httpapi.CookieName + "=" + toks[0]}, "Origin": {"https://evil.example"},
	}, 403, "forbidden")
	g.await(t, 2)
}

func TestWSRouteNeedsResults(t *testing.T) {
	s := newStack(t, options{})
	toks, _ := s.buyers(1)
	h := httpapi.New(httpapi.Config{Engine: s.engine, Accounts: s.accounts, Orders: s.db})
	req := httptest.NewRequest("GET", "/api/ws", nil)
	req.Header.Set("Authorization", "Bearer "+toks[0])
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"not_found"`) {
		t.Fatalf("without a result bus: %d %s", rec.Code, rec.Body)
	}
	if n := h.SendUser(1, "x"); n != 0 {
		t.Fatalf("SendUser without push = %d", n)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWSPushesOwnResults(t *testing.T) {
	g := &wsGauge{}
	// A sale push (every socket hears the sale's units change) would land
	// among the results this test reads in order: no tick ever comes.
	s := newStack(t, options{wsGauge: g.add, ws: httpapi.WSConfig{SaleTicks: make(chan time.Time)}})
	url := s.serve()
	toks, ids := s.buyers(2)
	alice, bob := toks[0], toks[1]
	sale := s.activeSale(5, false)

	a1 := dialWS(t, url, bearer(alice))
	a2 := dialWS(t, url, bearer(alice))
	b1 := dialWS(t, url, bearer(bob))
	g.await(t, 3)

	// result polls until the purchase is no longer queued.
	result := func(tok string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), tok, nil)
			want(t, r, 200, "")
			m := r.json(t)
			if m["status"] != seckill.ResultQueued {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatal("still queued after 10 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// same checks a push against what /result answers, field for field.
	same := func(p, polled map[string]any) {
		t.Helper()
		if p["type"] != "order_result" || p["sale_id"] != float64(sale) {
			t.Errorf("push %v: want an order_result of sale %d", p, sale)
		}
		delete(p, "type")
		delete(p, "sale_id")
		if fmt.Sprint(p) != fmt.Sprint(polled) {
			t.Errorf("push %v, /result %v", p, polled)
		}
	}

	// Each result names the purchase it is of by the ticket its 202 gave.
	bought := s.purchase(alice, sale, s.path(alice, sale))
	want(t, bought, 202, "")
	ticket := bought.json(t)["ticket"]
	pa1, pa2 := push(t, a1), push(t, a2)
	if pa1["status"] != "success" || pa1["order_id"] == nil || pa1["ticket"] != ticket || ticket == "" {
		t.Fatalf("alice's push %v, want the success of ticket %v", pa1, ticket)
	}
	polled := result(alice)
	same(pa1, polled)
	same(pa2, polled)

	// Bob's socket got nothing of Alice's: his first message is his own.
	want(t, s.purchase(bob, sale, s.path(bob, sale)), 202, "")
	pb := push(t, b1)
	if pb["order_id"] == pa1["order_id"] {
		t.Fatalf("bob was pushed alice's order: %v", pb)
	}
	same(pb, result(bob))

	// A failure, published by whichever instance wrote it, carries its
	// reason; a result for a user without a socket here goes nowhere.
	err := s.queue.PublishResults(context.Background(), []seckill.OrderResult{
		{SaleID: sale + 1000, UserID: ids[0] + ids[1] + 1000, Result: seckill.Result{Status: seckill.ResultFailed, Reason: seckill.ESoldOut}},
		{SaleID: sale + 1, UserID: ids[1], Result: seckill.Result{Ticket: "t", Status: seckill.ResultFailed, Reason: seckill.ESoldOut}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := push(t, b1); p["type"] != "order_result" || p["sale_id"] != float64(sale+1) || p["status"] != "failed" || p["reason"] != "sold_out" || p["order_id"] != nil || p["ticket"] != "t" {
		t.Fatalf("failure push %v", p)
	}

	// Closing the clients brings the gauge back down.
	a1.Close(websocket.StatusNormalClosure, "")
	a2.CloseNow()
	g.await(t, 1)
	b1.Close(websocket.StatusNormalClosure, "")
	g.await(t, 0)
}

// TestWSResultsOfAnyInstance: a second server on the same result bus (as
// a second instance is) pushes to its sockets what the first one wrote.
func TestWSResultsOfAnyInstance(t *testing.T) {
	s := newStack(t, options{})
	// No sale pushes (no tick ever comes): the first message must be the
	// result, not the sale's change.
	other := httpapi.New(httpapi.Config{Engine: s.engine, Accounts: s.accounts, Orders: s.db, Results: s.queue,
		WS: httpapi.WSConfig{SaleTicks: make(chan time.Time)}})
	t.Cleanup(func() { _ = other.Close() })
	srv := httptest.NewServer(other)
	t.Cleanup(srv.Close)
	toks, _ := s.buyers(1)
	sale := s.activeSale(1, false)
	c := dialWS(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/api/ws", bearer(toks[0]))

	// The handshake is complete: whatever is published from now on
	// reaches the socket, with no wait for it to be registered.
	want(t, s.purchase(toks[0], sale, s.path(toks[0], sale)), 202, "")
	if p := push(t, c); p["status"] != "success" || p["sale_id"] != float64(sale) {
		t.Fatalf("push %v", p)
	}
}

func TestWSLimitPerUser(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{ws: httpapi.WSConfig{MaxPerUser: 2}, wsGauge: g.add})
	url := s.serve()
	toks, _ := s.buyers(2)
	first := dialWS(t, url, bearer(toks[0]))
	dialWS(t, url, bearer(toks[0]))
	refused(t, url, bearer(toks[0]), 429, "rate_limited")
	dialWS(t, url, bearer(toks[1])) // others are not affected
	// The server counts a socket once it attached it, which may be after
	// the client's dial returned: wait for all three, so that 2 below
	// means first is gone and not that the third is not counted yet.
	g.await(t, 3)
	first.CloseNow()
	g.await(t, 2)
	dialWS(t, url, bearer(toks[0]))
	g.await(t, 3)
}

// from is the handshake header of a socket of tok from client address
// addr, as a trusted proxy on loopback says.
func from(tok, addr string) http.Header {
	h := bearer(tok)
	h.Set("X-Forwarded-For", addr)
	return h
}

// TestWSLimitPerAddress: one client address holds at most MaxPerAddress
// sockets on an instance, however many accounts it brings (MaxPerUser
// alone let it hold 16 per account); another address is not affected, and
// a socket that closes gives its place back.
func TestWSLimitPerAddress(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{ws: httpapi.WSConfig{MaxPerAddress: 3}, wsGauge: g.add, trusted: httpapi.LoopbackProxies})
	url := s.serve()
	toks, _ := s.buyers(5)
	first := dialWS(t, url, from(toks[0], "203.0.113.7"))
	dialWS(t, url, from(toks[1], "203.0.113.7"))
	dialWS(t, url, from(toks[2], "203.0.113.7"))
	refused(t, url, from(toks[3], "203.0.113.7"), 429, "rate_limited")
	refused(t, url, from(toks[0], "203.0.113.7"), 429, "rate_limited")
	dialWS(t, url, from(toks[3], "203.0.113.8")) // another address
	g.await(t, 4)
	first.CloseNow()
	g.await(t, 3)
	dialWS(t, url, from(toks[4], "203.0.113.7"))
	g.await(t, 4)
}

// TestWSLimitTotal: an instance holds at most MaxTotal sockets, from any
// addresses and accounts; one more is refused 429 (the page polls), and a
// socket that closes gives its place back. Serve sets half of --max-conns,
// so sockets never hold the whole listener (found by review: four
// addresses' sockets did, and a newcomer waited).
func TestWSLimitTotal(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{ws: httpapi.WSConfig{MaxTotal: 2}, wsGauge: g.add, trusted: httpapi.LoopbackProxies})
	url := s.serve()
	toks, _ := s.buyers(3)
	first := dialWS(t, url, from(toks[0], "203.0.113.7"))
	dialWS(t, url, from(toks[1], "203.0.113.8"))
	refused(t, url, from(toks[2], "203.0.113.9"), 429, "rate_limited")
	g.await(t, 2)
	first.CloseNow()
	g.await(t, 1)
	dialWS(t, url, from(toks[2], "203.0.113.9"))
	g.await(t, 2)
}

// TestWSClientPingBudget: a client's pings within the budget are answered
// and keep the socket; a flood of them closes it (policy violation), and
// the hub lets it go. Another client's socket is not affected.
func TestWSClientPingBudget(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{wsGauge: g.add})
	url := s.serve()
	toks, ids := s.buyers(2)
	calm := dialWS(t, url, bearer(toks[0]))
	calm.CloseRead(context.Background()) // pongs are read by a reader
	flood := dialWS(t, url, bearer(toks[1]))
	flood.CloseRead(context.Background())
	g.await(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if err := calm.Ping(ctx); err != nil {
			t.Fatalf("ping %d within the budget: %v", i+1, err)
		}
	}
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err = flood.Ping(pctx)
		pcancel()
	}
	if err == nil {
		t.Fatal("1,000 pings in a row were all answered")
	}
	g.await(t, 1)
	if n := s.api.SendUser(ids[1], "x"); n != 0 {
		t.Fatalf("the flooding socket still receives (%d)", n)
	}
	if n := s.api.SendUser(ids[0], "x"); n != 1 {
		t.Fatal("the calm socket was dropped")
	}
}

func TestWSPingTimeout(t *testing.T) {
	g := &wsGauge{}
	// Long enough that the answering client's pong is not late on a
	// loaded machine running the race detector (a pong may take up to two
	// intervals); 200 ms dropped it once in CI.
	const interval = time.Second
	s := newStack(t, options{ws: httpapi.WSConfig{PingInterval: interval}, wsGauge: g.add})
	url := s.serve()
	toks, ids := s.buyers(2)

	// A coder/websocket client answers pings only while it reads: this one
	// reads, the other never does.
	alive := dialWS(t, url, bearer(toks[0]))
	alive.CloseRead(context.Background())
	deaf := dialWS(t, url, bearer(toks[1]))
	g.await(t, 2)

	// The deaf one misses two pongs and is dropped…
	g.await(t, 1)
	if n := s.api.SendUser(ids[1], "x"); n != 0 {
		t.Fatalf("the dropped socket still receives (%d)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := deaf.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dropped socket reads %v; want the connection closed", err)
	}
	// …while the one answering stays through several intervals. Counted
	// before the send: the client's CloseRead closes its socket when a
	// data message comes, so after the send the count may drop to 0.
	time.Sleep(5 * interval)
	g.await(t, 1)
	if n := s.api.SendUser(ids[0], "x"); n != 1 {
		t.Fatalf("the answering socket was dropped")
	}
}

func TestWSSlowClientDropped(t *testing.T) {
	g := &wsGauge{}
	// Long write timeout, no pings: only the send buffer can drop the slow
	// client, and a SendUser that waited for it would wait a minute.
	s := newStack(t, options{ws: httpapi.WSConfig{SendBuffer: 4, WriteTimeout: time.Minute, PingInterval: time.Hour}, wsGauge: g.add})
	url := s.serve()
	toks, ids := s.buyers(2)
	slow := dialWS(t, url, bearer(toks[0])) // never reads
	slow.SetReadLimit(-1)
	fast := dialWS(t, url, bearer(toks[1]))
	g.await(t, 2)
	got := make(chan map[string]any, 1000)
	go func() {
		for {
			_, b, err := fast.Read(context.Background())
			if err != nil {
				close(got)
				return
			}
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			got <- m
		}
	}()

	type big struct{ Pad string }
	pad := big{strings.Repeat("x", 1<<20)}
	const max = 500 // 500 MiB: far beyond what the socket buffers hold
	type outcome struct {
		n    int
		fail string
	}
	sent := make(chan outcome, 1)
	go func() {
		// SendUser must never wait for the slow client. The fast one has
		// each message before the next is sent: with a buffer of 4, a
		// loaded machine that ran this loop ahead of the fast socket's
		// writer would drop the fast client too.
		n := 0
		for n < max && s.api.SendUser(ids[0], pad) == 1 {
			s.api.SendUser(ids[1], map[string]int{"n": n})
			select {
			case p := <-got:
				if p["n"] != float64(n) {
					sent <- outcome{n, fmt.Sprintf("fast client's message %d is %v", n, p)}
					return
				}
			case <-time.After(10 * time.Second):
				sent <- outcome{n, fmt.Sprintf("fast client got %d messages, not its %dth", n, n+1)}
				return
			}
			n++
		}
		sent <- outcome{n, ""}
	}()
	var o outcome
	select {
	case o = <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("SendUser blocked on a slow client")
	}
	if o.fail != "" {
		t.Fatal(o.fail)
	}
	if o.n == max {
		t.Fatalf("the slow client was never dropped after %d MiB", max)
	}
	g.await(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := slow.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("the slow client's connection is still open")
			}
			break
		}
	}
}

func TestWSCloseClosesAll(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{ws: httpapi.WSConfig{CloseGrace: 5 * time.Second}, wsGauge: g.add})
	url := s.serve()
	toks, _ := s.buyers(2)
	conns := []*websocket.Conn{dialWS(t, url, bearer(toks[0])), dialWS(t, url, bearer(toks[0])), dialWS(t, url, bearer(toks[1]))}
	g.await(t, 3)
	errs := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			_, _, err := c.Read(context.Background())
			errs <- err
		}()
	}
	if err := s.api.Close(); err != nil {
		t.Fatal(err)
	}
	if n := g.n.Load(); n != 0 { // Close returns once every socket is gone
		t.Fatalf("%d sockets open after Close", n)
	}
	for range conns {
		if err := <-errs; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("client read %v, want going away", err)
		}
	}
	refused(t, url, bearer(toks[0]), 503, "busy")
	if err := s.api.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
}

// TestWSCloseCutsDeafClients: a client that never answers the close frame
// is cut once CloseGrace has passed.
func TestWSCloseCutsDeafClients(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{ws: httpapi.WSConfig{CloseGrace: 100 * time.Millisecond}, wsGauge: g.add})
	url := s.serve()
	toks, _ := s.buyers(1)
	deaf := dialWS(t, url, bearer(toks[0]))
	g.await(t, 1)
	done := make(chan struct{})
	go func() {
		_ = s.api.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second): // the library alone would wait 5 s
		t.Fatal("Close waits for a client that does not answer")
	}
	g.await(t, 0)
	_ = deaf
}

// TestWSLogoutClosesSockets: a logout cuts the sockets its session opened
// on this instance, and leaves the same user's other sessions' sockets
// alone (issue 12 item 8).
func TestWSLogoutClosesSockets(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{wsGauge: g.add})
	url := s.serve()
	want(t, s.do("POST", "/api/users", "", map[string]string{"phone": "13800000000", "password": "password-1"}), 201, "")
	a, b := s.login("13800000000", "password-1"), s.login("13800000000", "password-1")
	ca := dialWS(t, url, bearer(a))
	cb := dialWS(t, url, bearer(b))
	g.await(t, 2)
	want(t, s.do("DELETE", "/api/sessions", a, nil), 204, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := ca.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("the logged-out session's socket: read %v (context %v), want it closed", err, ctx.Err())
	}
	g.await(t, 1)
	cb.CloseRead(ctx) // reads the pong
	if err := cb.Ping(ctx); err != nil {
		t.Fatalf("the other session's socket: %v", err)
	}
}

// closedWith reads c until it closes, and fails the test unless the
// server closed it with the close code want within 10 s. It returns when
// the close was read.
func closedWith(t *testing.T, c *websocket.Conn, want websocket.StatusCode) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue // a push; the close comes after
		}
		if got := websocket.CloseStatus(err); got != want {
			t.Fatalf("socket ended with %v (close code %d), want close code %d", err, got, want)
		}
		return time.Now()
	}
}

// alive fails the test unless c, a socket of the user, gets a push.
func alive(t *testing.T, s *stack, c *websocket.Conn, user int64, what string) {
	t.Helper()
	if n := s.api.SendUser(user, map[string]string{"type": "test"}); n == 0 {
		t.Fatalf("%s: no socket of user %d takes a push", what, user)
	}
	if m := push(t, c); m["type"] != "test" {
		t.Fatalf("%s: push %v", what, m)
	}
}

// TestWSSessionExpiry: a socket ends when its session does, with the
// close code the page understands, and a session extended meanwhile
// (a request slides its expiry) keeps its socket until its new expiry.
func TestWSSessionExpiry(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	g := &wsGauge{}
	s := newStack(t, options{wsGauge: g.add, sessionTTL: ttl})
	url := s.serve()
	toks, _ := s.buyers(2)
	a, b := toks[0], toks[1]
	ca, cb := dialWS(t, url, bearer(a)), dialWS(t, url, bearer(b))
	g.await(t, 2)
	// Past a twenty-fourth of the lifetime, a request extends b's session
	// (account.Service.Authenticate) to at least now + ttl.
	time.Sleep(ttl / 10)
	touched := time.Now()
	want(t, s.do("GET", "/api/me", b, nil), 200, "")
	// The new expiry: now + ttl on the server. The store keeps it in
	// milliseconds (the cache, read here, the exact time), and the socket
	// closes at the store's: up to a millisecond early (the assertion
	// allows 10). One closed at the old expiry would be ttl/10 early.
	extended, err := s.accounts.SessionOf(context.Background(), account.HashToken(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := extended.ExpiresAt.Sub(touched); got < ttl-time.Millisecond {
		t.Fatalf("the request extended b's session to %v after it, want about %v", got, ttl)
	}
	// Read b's socket meanwhile, so that the time its close is read is
	// the time it came.
	type end struct {
		at   time.Time
		code websocket.StatusCode
	}
	bEnd := make(chan end, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			if _, _, err := cb.Read(ctx); err != nil {
				bEnd <- end{time.Now(), websocket.CloseStatus(err)}
				return
			}
		}
	}()
	closedWith(t, ca, httpapi.CloseSessionEnded)
	refused(t, url, bearer(a), 401, "unauthenticated")
	e := <-bEnd
	if e.code != httpapi.CloseSessionEnded {
		t.Fatalf("the extended session's socket ended with close code %d, want %d", e.code, httpapi.CloseSessionEnded)
	}
	if early := extended.ExpiresAt.Sub(e.at); early > 10*time.Millisecond {
		t.Fatalf("the extended session's socket closed %v before the session's new expiry (extended to touched+%v, closed at touched+%v)", early, extended.ExpiresAt.Sub(touched), e.at.Sub(touched))
	}
	g.await(t, 0)
}

// TestWSRevocationFromAnotherInstance: a session deleted by another
// instance (here, straight from the shared store) closes this instance's
// sockets of that session when the revocation feed announces it
// (Server.SessionEnded, as rdb.Sessions.FollowRevocations calls it), and
// all of a user's sessions ended at once (a password change) close all
// the user's sockets, and no one else's.
func TestWSRevocationFromAnotherInstance(t *testing.T) {
	ctx := context.Background()
	g := &wsGauge{}
	s := newStack(t, options{wsGauge: g.add})
	url := s.serve()
	toks, ids := s.buyers(2)
	u, err := s.db.UserByID(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	a, b := toks[0], toks[1] // b is another user's
	a2, _, err := s.accounts.OpenSession(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	ca, ca2, cb := dialWS(t, url, bearer(a)), dialWS(t, url, bearer(a2)), dialWS(t, url, bearer(b))
	g.await(t, 3)

	// A logout on another instance.
	if err := s.db.DeleteSession(ctx, account.HashToken(a)); err != nil {
		t.Fatal(err)
	}
	// The feed as cmd/seckill wires it: the cache first, then the sockets.
	s.sessions.Evict(account.HashToken(a))
	s.api.SessionEnded(account.HashToken(a))
	closedWith(t, ca, httpapi.CloseSessionEnded)
	g.await(t, 2)
	alive(t, s, ca2, ids[0], "the same user's other session's socket")

	// Every session of the user ended on another instance: each deletion
	// is announced.
	hashes, err := s.db.(seckill.SessionRevoker).DeleteUserSessions(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hashes {
		s.sessions.Evict(h)
		s.api.SessionEnded(h)
	}
	closedWith(t, ca2, httpapi.CloseSessionEnded)
	g.await(t, 1)
	alive(t, s, cb, ids[1], "another user's socket")
}

// TestWSRevocationsMissed: when revocations may have been lost (the feed
// was cut and subscribes again: Server.RevocationsMissed), every socket
// looks its session up again at its next ping, and one whose session was
// deleted meanwhile closes.
func TestWSRevocationsMissed(t *testing.T) {
	ctx := context.Background()
	g := &wsGauge{}
	s := newStack(t, options{wsGauge: g.add, ws: httpapi.WSConfig{PingInterval: 50 * time.Millisecond}})
	url := s.serve()
	toks, _ := s.buyers(2)
	ca, cb := dialWS(t, url, bearer(toks[0])), dialWS(t, url, bearer(toks[1]))
	g.await(t, 2)
	// The client answers pings while it reads.
	cb.CloseRead(ctx)
	if err := s.db.DeleteSession(ctx, account.HashToken(toks[0])); err != nil {
		t.Fatal(err)
	}
	s.sessions.Reset()
	s.api.RevocationsMissed()
	closedWith(t, ca, httpapi.CloseSessionEnded)
	g.await(t, 1)
}

// TestWSOriginScheme: behind a proxy that says the client came over HTTPS,
// an http:// page of the same host may not open a socket with the cookie
// (coder/websocket's own check compares hosts only); https:// may.
func TestWSOriginScheme(t *testing.T) {
	s := newStack(t, options{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	url := s.serve()
	toks, _ := s.buyers(1)
	host := strings.TrimPrefix(url[:strings.Index(url, "/api/")], "ws://")
	h := func(origin string) http.Header {
		return http.Header{"Cookie": {httpapi.CookieName + "=" + toks[0]}, "Origin": {origin}, "X-Forwarded-Proto": {"https"}}
	}
	refused(t, url, h("http://"+host), 403, "forbidden")
	dialWS(t, url, h("https://"+host))
}
