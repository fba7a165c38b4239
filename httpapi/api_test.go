package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"seckill"
	"seckill/account"
	"seckill/httpapi"
	"seckill/inmem"
)

func TestAccounts(t *testing.T) {
	s := newStack(t, options{})
	good := map[string]string{"phone": "13800000000", "password": "secret-pw", "nickname": "li"}
	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"short phone", map[string]string{"phone": "1380000000", "password": "secret-pw"}, 400, "invalid"},
		{"phone not starting with 1", map[string]string{"phone": "23800000000", "password": "secret-pw"}, 400, "invalid"},
		{"phone with letters", map[string]string{"phone": "1380000000a", "password": "secret-pw"}, 400, "invalid"},
		{"short password", map[string]string{"phone": "13800000001", "password": "1234567"}, 400, "invalid"},
		{"unknown field", `{"phone":"13800000001","password":"secret-pw","admin":true}`, 400, "invalid"},
		{"wrong type", `{"phone":13800000001,"password":"secret-pw"}`, 400, "invalid"},
		{"not json", `phone=1`, 400, "invalid"},
		{"empty body", ``, 400, "invalid"},
		{"two values", `{"phone":"13800000001","password":"secret-pw"}{}`, 400, "invalid"},
		{"oversized body", `{"nickname":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "too_large"},
		{"created", good, 201, ""},
		{"phone taken", good, 409, "phone_taken"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want(t, s.do("POST", "/api/users", "", c.body), c.status, c.code)
		})
	}

	t.Run("login", func(t *testing.T) {
		want(t, s.do("POST", "/api/sessions", "", map[string]string{"phone": "13800000000", "password": "wrong-pw"}), 401, "bad_credentials")
		want(t, s.do("POST", "/api/sessions", "", map[string]string{"phone": "13899999999", "password": "secret-pw"}), 401, "bad_credentials")
		want(t, s.do("POST", "/api/sessions", "", map[string]string{}), 401, "bad_credentials")
		want(t, s.do("POST", "/api/sessions", "", `{"phone":"13800000000","password":"secret-pw","x":1}`), 400, "invalid")
		r := s.do("POST", "/api/sessions", "", map[string]string{"phone": "13800000000", "password": "secret-pw"})
		want(t, r, 200, "")
		body := r.json(t)
		tok := body["token"].(string)
		if len(tok) < 43 {
			t.Fatalf("token %q is shorter than 256 bits", tok)
		}
		if u := body["user"].(map[string]any); u["phone"] != "13800000000" || u["role"] != "buyer" {
			t.Fatalf("user = %v", u)
		}
		cookie := r.Header.Get("Set-Cookie")
		if !strings.Contains(cookie, httpapi.CookieName+"="+tok) || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Lax") {
			t.Fatalf("cookie %q", cookie)
		}

		me := s.do("GET", "/api/me", tok, nil)
		want(t, me, 200, "")
		if m := me.json(t); m["nickname"] != "li" || m["role"] != "buyer" {
			t.Fatalf("me = %v", m)
		}
		// The cookie authenticates as well as the header.
		req := httptest.NewRequest("GET", "/api/me", nil)
		req.Header.Set("Cookie", httpapi.CookieName+"="+tok)
		rec := httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("me by cookie: %d", rec.Code)
		}

		want(t, s.do("GET", "/api/me", "", nil), 401, "unauthenticated")
		want(t, s.do("GET", "/api/me", "not-a-token", nil), 401, "unauthenticated")
		want(t, s.do("DELETE", "/api/sessions", "", nil), 401, "unauthenticated")
		if r := s.do("DELETE", "/api/sessions", tok, nil); r.Code != 204 {
			t.Fatalf("logout: %d %s", r.Code, r.Body)
		}
		want(t, s.do("GET", "/api/me", tok, nil), 401, "unauthenticated")
	})

	t.Run("expired session", func(t *testing.T) {
		u, err := s.db.UserByPhone(context.Background(), "13800000000")
		if err != nil {
			t.Fatal(err)
		}
		tok := "expired-token-of-the-test"
		err = s.db.CreateSession(context.Background(), seckill.Session{
			TokenHash: account.HashToken(tok), UserID: u.ID, Role: u.Role, ExpiresAt: time.Now().Add(-time.Second),
		})
		if err != nil {
			t.Fatal(err)
		}
		want(t, s.do("GET", "/api/me", tok, nil), 401, "unauthenticated")
	})
}

func TestSalesCatalog(t *testing.T) {
	s := newStack(t, options{})
	buyer, _ := s.buyers(1)
	now := time.Now()
	valid := func() map[string]any {
		return map[string]any{"name": "tea", "price_cents": 100, "original_price_cents": 300, "stock": 10,
			"starts_at": now.Add(time.Hour), "ends_at": now.Add(2 * time.Hour)}
	}
	with := func(k string, v any) map[string]any { m := valid(); m[k] = v; return m }
	cases := []struct {
		name   string
		token  string
		body   any
		status int
		code   string
	}{
		{"no session", "", valid(), 401, "unauthenticated"},
		{"buyer", buyer[0], valid(), 403, "forbidden"},
		{"stock zero", s.admin, with("stock", 0), 400, "invalid"},
		{"stock too big", s.admin, with("stock", seckill.MaxStock+1), 400, "invalid"},
		{"no name", s.admin, with("name", ""), 400, "invalid"},
		{"negative price", s.admin, with("price_cents", -1), 400, "invalid"},
		{"free", s.admin, with("price_cents", 0), 400, "invalid"},
		{"price over the provider's limit", s.admin, with("original_price_cents", 100_000_000_01), 400, "invalid"},
		{"price above original", s.admin, with("price_cents", 301), 400, "invalid"},
		{"ends before starts", s.admin, with("ends_at", now), 400, "invalid"},
		{"bad time", s.admin, with("starts_at", "tomorrow"), 400, "invalid"},
		{"missing times", s.admin, map[string]any{"name": "x", "stock": 1}, 400, "invalid"},
		{"unknown field", s.admin, with("discount", 5), 400, "invalid"},
		{"stock as string", s.admin, with("stock", "10"), 400, "invalid"},
		{"created", s.admin, valid(), 201, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want(t, s.do("POST", "/api/admin/sales", c.token, c.body), c.status, c.code)
		})
	}

	list := s.do("GET", "/api/sales", "", nil)
	want(t, list, 200, "")
	body := list.json(t)
	if _, err := time.Parse(time.RFC3339, body["server_time"].(string)); err != nil {
		t.Fatalf("server_time: %v", err)
	}
	sales := body["sales"].([]any)
	if len(sales) != 1 {
		t.Fatalf("%d sales listed", len(sales))
	}
	sale := sales[0].(map[string]any)
	if sale["status"] != "upcoming" || sale["stock_left"].(float64) != 10 || sale["require_captcha"] != true {
		t.Fatalf("sale = %v", sale)
	}
	id := int64(sale["id"].(float64))
	one := s.do("GET", fmt.Sprintf("/api/sales/%d", id), "", nil)
	want(t, one, 200, "")
	if one.json(t)["server_time"] == nil {
		t.Fatal("no server_time")
	}
	want(t, s.do("GET", "/api/sales/999", "", nil), 404, "not_found")
	want(t, s.do("GET", "/api/sales/abc", "", nil), 404, "not_found")

	want(t, s.do("GET", fmt.Sprintf("/api/admin/sales/%d/stats", id), buyer[0], nil), 403, "forbidden")
	want(t, s.do("GET", fmt.Sprintf("/api/admin/sales/%d/stats", id), "", nil), 401, "unauthenticated")
	want(t, s.do("GET", "/api/admin/sales/999/stats", s.admin, nil), 404, "not_found")
	st := s.do("GET", fmt.Sprintf("/api/admin/sales/%d/stats", id), s.admin, nil)
	want(t, st, 200, "")
	for _, k := range []string{"stock", "gate_left", "queued", "orders", "paid", "cancelled", "refunded", "sql_stock_left"} {
		if _, ok := st.json(t)[k]; !ok {
			t.Errorf("stats lack %q: %s", k, st.Body)
		}
	}
	want(t, s.do("GET", "/api/nothing", "", nil), 404, "not_found")
	r := s.do("PUT", "/api/sales", "", nil)
	want(t, r, 405, "method_not_allowed")
	if r.Header.Get("Allow") != "GET" {
		t.Fatalf("Allow = %q", r.Header.Get("Allow"))
	}
	want(t, s.do("GET", "/api/sessions", "", nil), 405, "method_not_allowed")
	// Paths ServeMux would redirect (307, plain text) are JSON 404s.
	for _, p := range []string{"/api", "/api/sales/1/purchase/../../../orders/1/cancel", "/api//sales", "/api/./sales"} {
		want(t, s.do("POST", p, buyer[0], nil), 404, "not_found")
		want(t, s.do("GET", p, "", nil), 404, "not_found")
	}
	want(t, s.do("GET", "/api/sales/", "", nil), 404, "not_found")
}

func TestCaptchaAndPath(t *testing.T) {
	s := newStack(t, options{})
	toks, ids := s.buyers(2)
	alice, bob := toks[0], toks[1]
	user := map[string]int64{alice: ids[0], bob: ids[1]}
	sale := s.activeSale(5, true)
	url := fmt.Sprintf("/api/sales/%d/", sale)

	want(t, s.do("GET", url+"captcha", "", nil), 401, "unauthenticated")
	want(t, s.do("GET", "/api/sales/999/captcha", alice, nil), 404, "not_found")

	// answer fetches a captcha and reads its answer from the store: the
	// test cannot read the image.
	answer := func(tok string) (string, string) {
		t.Helper()
		r := s.do("GET", url+"captcha", tok, nil)
		want(t, r, 200, "")
		m := r.json(t)
		img := m["image"].(string)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(img, "data:image/png;base64,"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(strings.NewReader(string(raw))); err != nil {
			t.Fatalf("captcha is not a PNG: %v", err)
		}
		exp, _ := time.Parse(time.RFC3339, m["expires_at"].(string))
		if d := time.Until(exp); d < 90*time.Second || d > 2*time.Minute+time.Second {
			t.Fatalf("captcha expires in %v, want 2m", d)
		}
		id := m["captcha_id"].(string)
		c, err := peekCaptcha(s, id, user[tok])
		if err != nil {
			t.Fatal(err)
		}
		return id, c
	}

	id, ans := answer(alice)
	want(t, s.do("POST", url+"path", alice, map[string]string{"captcha_id": id, "answer": ans + "1"}), 400, "bad_captcha")
	// Used up by the wrong answer.
	want(t, s.do("POST", url+"path", alice, map[string]string{"captcha_id": id, "answer": ans}), 400, "bad_captcha")
	want(t, s.do("POST", url+"path", alice, nil), 400, "bad_captcha")
	want(t, s.do("POST", url+"path", alice, map[string]string{"captcha_id": "nope", "answer": "1"}), 400, "bad_captcha")
	want(t, s.do("POST", url+"path", alice, `{"captcha_id":"x","answer":"1","extra":1}`), 400, "invalid")
	want(t, s.do("POST", url+"path", alice, `{"captcha_id":1}`), 400, "invalid")

	// Bob's captcha does not work for Alice, and her tries do not use it
	// up: Bob's answer still works.
	bid, bans := answer(bob)
	want(t, s.do("POST", url+"path", alice, map[string]string{"captcha_id": bid, "answer": bans}), 400, "bad_captcha")
	want(t, s.do("POST", url+"path", alice, map[string]string{"captcha_id": bid, "answer": "wrong"}), 400, "bad_captcha")
	want(t, s.do("POST", url+"path", bob, map[string]string{"captcha_id": bid, "answer": bans}), 200, "")

	id, ans = answer(alice)
	r := s.do("POST", url+"path", alice, map[string]string{"captcha_id": id, "answer": " " + ans + " "})
	want(t, r, 200, "")
	path := r.json(t)["path"].(string)
	// Captcha reuse after success.
	want(t, s.do("POST", url+"path", alice, map[string]string{"captcha_id": id, "answer": ans}), 400, "bad_captcha")

	// The path is Alice's: Bob cannot use it, nor Alice on another sale.
	want(t, s.purchase(bob, sale, path), 403, "bad_path")
	other := s.activeSale(5, false)
	want(t, s.purchase(alice, other, path), 403, "bad_path")
	want(t, s.purchase(alice, sale, path+"x"), 403, "bad_path")
	want(t, s.purchase(alice, sale, path), 202, "")

	// Window errors.
	now := time.Now()
	later := s.sale(5, now.Add(time.Hour), now.Add(2*time.Hour), true)
	over := s.sale(5, now.Add(-2*time.Hour), now.Add(-time.Hour), false)
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", later), alice, nil), 403, "not_started")
	// No captchas to stockpile an hour ahead, nor for a sale that is over.
	want(t, s.do("GET", fmt.Sprintf("/api/sales/%d/captcha", later), alice, nil), 403, "not_started")
	want(t, s.do("GET", fmt.Sprintf("/api/sales/%d/captcha", over), alice, nil), 403, "ended")
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", over), alice, nil), 403, "ended")
	want(t, s.purchase(alice, later, "any"), 403, "not_started")
	want(t, s.purchase(alice, over, "any"), 403, "ended")
	want(t, s.do("POST", "/api/sales/999/path", alice, nil), 404, "not_found")
	want(t, s.purchase(alice, 999, "any"), 404, "not_found")
	want(t, s.do("POST", url+"path", "", nil), 401, "unauthenticated")
	want(t, s.purchase("", sale, path), 401, "unauthenticated")
}

// peekCaptcha reads a captcha's answer by taking it from the store and
// putting it back.
func peekCaptcha(s *stack, id string, user int64) (string, error) {
	return s.engineCaptchaAnswer(id, user)
}

func TestPurchaseOutcomes(t *testing.T) {
	s := newStack(t, options{})
	toks, ids := s.buyers(3)
	sale := s.activeSale(2, false)
	paths := []string{s.path(toks[0], sale), s.path(toks[1], sale), s.path(toks[2], sale)}

	r := s.purchase(toks[0], sale, paths[0])
	want(t, r, 202, "")
	if m := r.json(t); m["status"] != "queued" || m["ticket"] == "" {
		t.Fatalf("202 body %v", m)
	}
	want(t, s.purchase(toks[0], sale, paths[0]), 409, "duplicate")

	// Queue down: 503 with Retry-After, and the unit goes back.
	s.flaky.fail.Store(true)
	r = s.purchase(toks[1], sale, paths[1])
	want(t, r, 503, "busy")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if left, _, _ := s.gate.Left(context.Background(), sale); left != 1 {
		t.Fatalf("gate left %d after failed publish, want 1", left)
	}
	s.flaky.fail.Store(false)
	want(t, s.purchase(toks[1], sale, paths[1]), 202, "")
	want(t, s.purchase(toks[2], sale, paths[2]), 410, "sold_out")

	st := s.settle(sale)
	s.checkInvariants(sale, st)
	if st.Orders != 2 {
		t.Fatalf("%d orders, want 2", st.Orders)
	}

	// Results and orders. The order is in SQL; its result message may
	// reach the engine a moment later (until then: queued).
	var m map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		res := s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), toks[0], nil)
		want(t, res, 200, "")
		if m = res.json(t); m["status"] != "queued" || time.Now().After(deadline) {
			break
		}
	}
	if m["status"] != "success" || m["order_id"] == nil {
		t.Fatalf("result %v", m)
	}
	orderID := int64(m["order_id"].(float64))
	none := s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), toks[2], nil)
	if none.json(t)["status"] != "none" {
		t.Fatalf("loser's result %s", none.Body)
	}
	want(t, s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), "", nil), 401, "unauthenticated")
	want(t, s.do("GET", "/api/sales/424242/result", toks[0], nil), 404, "not_found")
	// While the engine is not ready (recovering after a restart, when the
	// queue may hold a purchase SQL does not), "none" is not said: busy.
	// A purchase SQL or the instance knows is answered.
	s.engine.StopAdmitting()
	busy := s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), toks[2], nil)
	want(t, busy, 503, "busy")
	if busy.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	want(t, s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), toks[0], nil), 200, "")
	if err := s.engine.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}

	list := s.do("GET", "/api/orders", toks[0], nil)
	want(t, list, 200, "")
	orders := list.json(t)["orders"].([]any)
	if len(orders) != 1 {
		t.Fatalf("%d orders listed", len(orders))
	}
	o := orders[0].(map[string]any)
	if o["status"] != "pending_payment" || int64(o["user_id"].(float64)) != ids[0] || o["price_cents"].(float64) != 99900 || o["order_no"] == "" {
		t.Fatalf("order %v", o)
	}
	empty := s.do("GET", "/api/orders", toks[2], nil)
	if n := len(empty.json(t)["orders"].([]any)); n != 0 {
		t.Fatalf("loser has %d orders", n)
	}
	want(t, s.do("GET", fmt.Sprintf("/api/orders/%d", orderID), toks[0], nil), 200, "")
	want(t, s.do("GET", fmt.Sprintf("/api/orders/%d", orderID), toks[2], nil), 404, "not_found")
	want(t, s.do("GET", "/api/orders/99999", toks[0], nil), 404, "not_found")
	want(t, s.do("GET", "/api/orders", "", nil), 401, "unauthenticated")
}

func TestRateLimits(t *testing.T) {
	s := newStack(t, options{userLimit: inmem.NewLimiter(0.01, 3), ipLimit: inmem.NewLimiter(0.01, 1000),
		purchaseLimit: seckill.Bucket{PerSecond: 0.01, Burst: 2}})
	toks, _ := s.buyers(3)
	sale := s.activeSale(10, false)
	p := s.path(toks[0], sale) // 1st token of the user's bucket
	want(t, s.purchase(toks[0], sale, p), 202, "")
	for range 5 { // known here: answered without a token
		want(t, s.purchase(toks[0], sale, p), 409, "duplicate")
	}
	// Purchases take the per-user-and-sale bucket in the gate, not the
	// user's: two more paths, then the user's bucket is empty.
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[0], nil), 200, "")
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[0], nil), 200, "")
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[0], nil), 429, "rate_limited")
	// Another user has their own bucket.
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[1], nil), 200, "")

	// Presses that reach the gate take the purchase bucket: two releases
	// (the queue fails), then 429 before the gate reserves anything.
	p2 := s.path(toks[2], sale)
	s.flaky.fail.Store(true)
	want(t, s.purchase(toks[2], sale, p2), 503, "busy")
	want(t, s.purchase(toks[2], sale, p2), 503, "busy")
	s.flaky.fail.Store(false)
	r := s.purchase(toks[2], sale, p2)
	want(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}

	// Per-IP bucket on login.
	s2 := newStack(t, options{ipLimit: inmem.NewLimiter(0.01, 3)}) // one token goes to the admin login
	for i := 0; i < 2; i++ {
		want(t, s2.do("POST", "/api/sessions", "", map[string]string{"phone": "13000000000", "password": "whatever1"}), 401, "bad_credentials")
	}
	want(t, s2.do("POST", "/api/sessions", "", map[string]string{"phone": "13000000000", "password": "whatever1"}), 429, "rate_limited")
}

// TestPurchaseIPLimit: purchases that pass the local checks take the
// address's token from PurchaseIPLimit when it is set (serve's in-process
// bucket in front of a Redis one), and only from it; without it, from
// IPLimit.
func TestPurchaseIPLimit(t *testing.T) {
	s := newStack(t, options{ipLimit: inmem.NewLimiter(0.01, 1000), purchaseIPLimit: inmem.NewLimiter(0.01, 1)})
	toks, _ := s.buyers(2)
	sale := s.activeSale(10, false)
	want(t, s.purchase(toks[0], sale, s.path(toks[0], sale)), 202, "")
	p := s.path(toks[1], sale) // the address's shared bucket still has tokens
	r := s.purchase(toks[1], sale, p)
	want(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// A press answered here (known buyer) takes no token and is 409.
	want(t, s.purchase(toks[0], sale, s.path(toks[0], sale)), 409, "duplicate")

	// Without PurchaseIPLimit, IPLimit's bucket: the paths and the
	// purchase share its 3 tokens (one went to the admin's login).
	s2 := newStack(t, options{ipLimit: inmem.NewLimiter(0.01, 3)})
	toks2, _ := s2.buyers(1)
	sale2 := s2.activeSale(10, false)
	p2 := s2.path(toks2[0], sale2)
	want(t, s2.purchase(toks2[0], sale2, p2), 202, "")
	want(t, s2.do("POST", fmt.Sprintf("/api/sales/%d/path", sale2), toks2[0], nil), 429, "rate_limited")
}

// TestSpoofedForwardedFor: behind a trusted proxy that appends to
// X-Forwarded-For, whatever the client writes there itself does not give
// it a fresh per-IP bucket: the limit counts the address the proxy saw.
func TestSpoofedForwardedFor(t *testing.T) {
	// httptest requests come from 192.0.2.1, the proxy here.
	s := newStack(t, options{ipLimit: inmem.NewLimiter(0.01, 3), trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	login := func(xff string) response {
		req := httptest.NewRequest("POST", "/api/sessions", strings.NewReader(`{"phone":"13000000000","password":"whatever1"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		return response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	}
	for i := range 3 {
		want(t, login(fmt.Sprintf("6.6.6.%d, 198.51.100.7", i)), 401, "bad_credentials")
	}
	want(t, login("6.6.6.99, 198.51.100.7"), 429, "rate_limited")
	want(t, login("198.51.100.7"), 429, "rate_limited")
	// Another client behind the same proxy has its own bucket.
	want(t, login("6.6.6.1, 198.51.100.8"), 401, "bad_credentials")
}

// The health checks are served by Health (the operations listener's), not
// by the API: a GET of either on the public handler is not found.
func TestHealth(t *testing.T) {
	s := newStack(t, options{})
	health := s.api.Health()
	check := func(path string, status int, code string) {
		t.Helper()
		rec := httptest.NewRecorder()
		health.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		want(t, response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}, status, code)
	}
	check("/healthz", 200, "")
	check("/readyz", 200, "")
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp := s.do("GET", p, "", nil); resp.Code != 404 {
			t.Errorf("public GET %s: %d, want 404", p, resp.Code)
		}
	}
	s.engine.StopAdmitting()
	check("/readyz", 503, "busy")
	toks, _ := s.buyers(1)
	sale := s.activeSale(1, false)
	want(t, s.purchase(toks[0], sale, s.path(toks[0], sale)), 503, "busy")
}

// TestReadyzBounded: a backend that does not answer (a NATS election, a
// Redis failover) makes /readyz answer 503 within its bound, not hang.
func TestReadyzBounded(t *testing.T) {
	s := newStack(t, options{})
	h := httpapi.New(httpapi.Config{Engine: s.engine, Accounts: s.accounts, Orders: s.db,
		Ready: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.Health().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		done <- rec
	}()
	select {
	case rec := <-done:
		want(t, response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}, 503, "busy")
	case <-time.After(10 * time.Second):
		t.Fatal("/readyz still waiting for a backend after 10 s")
	}
}

// Requests the server can refuse on its own (bad path, sold out) are refused
// before the rate limits, which may cost a shared backend a round trip:
// they take no token.
func TestRefusedLocallyBeforeRateLimits(t *testing.T) {
	s := newStack(t, options{userLimit: inmem.NewLimiter(0.01, 3), purchaseLimit: seckill.Bucket{PerSecond: 0.01, Burst: 2}})
	toks, _ := s.buyers(2)
	sale := s.activeSale(1, false)
	p0 := s.path(toks[0], sale)
	want(t, s.purchase(toks[0], sale, p0), 202, "") // user 0's purchase bucket: 1st token
	p := s.path(toks[1], sale)                      // user 1's bucket: 1st token
	want(t, s.purchase(toks[1], sale, p), 410, "sold_out")
	for range 5 {
		want(t, s.purchase(toks[1], sale, p), 410, "sold_out")   // the local flag: no token
		want(t, s.purchase(toks[0], sale, p0), 409, "duplicate") // a buyer known here: no token
		want(t, s.purchase(toks[1], sale, "nope"), 403, "bad_path")
	}
	// Purchases take no token of the user's bucket (theirs is in the gate).
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[1], nil), 200, "") // 2nd token
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[1], nil), 200, "") // 3rd token
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[1], nil), 429, "rate_limited")
}

// largestWrite is a ResponseWriter that keeps the answer and the size of
// the largest single Write.
type largestWrite struct {
	*httptest.ResponseRecorder
	max int
}

func (w *largestWrite) Write(b []byte) (int, error) {
	w.max = max(w.max, len(b))
	return w.ResponseRecorder.Write(b)
}

// TestSalesCatalogStreamed: the catalogue is written a sale at a time, not
// encoded whole into one buffer first (a client reading a large catalogue
// slowly pinned megabytes each), and reads as the same JSON.
func TestSalesCatalogStreamed(t *testing.T) {
	s := newStack(t, options{})
	now := time.Now()
	const n = 40
	desc := strings.Repeat("很好的茶。", 600) // 9,000 bytes
	for i := range n {
		want(t, s.do("POST", "/api/admin/sales", s.admin, map[string]any{"name": fmt.Sprintf("tea %d", i), "description": desc,
			"price_cents": 100, "original_price_cents": 300, "stock": 10,
			"starts_at": now.Add(time.Hour), "ends_at": now.Add(2 * time.Hour)}), 201, "")
	}
	w := &largestWrite{ResponseRecorder: httptest.NewRecorder()}
	s.h.ServeHTTP(w, httptest.NewRequest("GET", "/api/sales", nil))
	r := response{Code: w.Code, Header: w.Header(), Body: w.Body.Bytes()}
	want(t, r, 200, "")
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if len(r.Body) < n*len(desc) || w.max > 2*len(desc) {
		t.Fatalf("a %d-byte answer written with writes of up to %d bytes, want none above %d", len(r.Body), w.max, 2*len(desc))
	}
	var body struct {
		Sales []struct {
			Name        string `json:"name"`
			Description string `json:"description"`
			Status      string `json:"status"`
		} `json:"sales"`
		ServerTime time.Time `json:"server_time"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || !bytes.HasSuffix(r.Body, []byte("}\n")) {
		t.Fatalf("the answer does not read as JSON: %v", err)
	}
	if len(body.Sales) != n || body.ServerTime.IsZero() {
		t.Fatalf("%d sales, server time %v", len(body.Sales), body.ServerTime)
	}
	for i, sale := range body.Sales {
		if sale.Name != fmt.Sprintf("tea %d", i) || sale.Description != desc || sale.Status != "upcoming" {
			t.Fatalf("sale %d: %q %q, %d-byte description", i, sale.Name, sale.Status, len(sale.Description))
		}
	}
}
