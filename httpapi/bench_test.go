package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"seckill/account"
	"seckill/httpapi"
)

// withBench swaps the stack's handler for one with bench provisioning on.
func (s *stack) withBench(observe func(route, code string, status int, d time.Duration)) {
	s.h = httpapi.New(httpapi.Config{
		Engine: s.engine, Accounts: s.accounts, Orders: s.db,
		BenchUsers: s.db, Observe: observe,
	})
}

func TestBenchUsersOff(t *testing.T) {
	s := newStack(t, options{})
	want(t, s.do("POST", "/api/admin/bench/users", s.admin, map[string]any{"count": 1, "prefix": "17"}), 404, "not_found")
	want(t, s.do("GET", "/api/admin/bench/users", s.admin, nil), 404, "not_found")
}

func TestBenchUsers(t *testing.T) {
	s := newStack(t, options{})
	buyers, _ := s.buyers(1)
	s.withBench(nil)

	cases := []struct {
		name   string
		token  string
		body   any
		status int
		code   string
	}{
		{"no session", "", map[string]any{"count": 1, "prefix": "17"}, 401, "unauthenticated"},
		{"buyer", buyers[0], map[string]any{"count": 1, "prefix": "17"}, 403, "forbidden"},
		{"zero", s.admin, map[string]any{"count": 0, "prefix": "17"}, 400, "invalid"},
		{"too many", s.admin, map[string]any{"count": account.MaxProvision + 1, "prefix": "17"}, 400, "invalid"},
		{"prefix not digits", s.admin, map[string]any{"count": 1, "prefix": "1a"}, 400, "invalid"},
		{"prefix not starting with 1", s.admin, map[string]any{"count": 1, "prefix": "27"}, 400, "invalid"},
		{"empty prefix", s.admin, map[string]any{"count": 1, "prefix": ""}, 400, "invalid"},
		{"prefix too long", s.admin, map[string]any{"count": 1, "prefix": "17000000000"}, 400, "invalid"},
		{"no room", s.admin, map[string]any{"count": 11, "prefix": "1700000000"}, 400, "invalid"},
		{"unknown field", s.admin, `{"count":1,"prefix":"17","x":1}`, 400, "invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want(t, s.do("POST", "/api/admin/bench/users", c.token, c.body), c.status, c.code)
		})
	}

	t.Run("created", func(t *testing.T) {
		r := s.do("POST", "/api/admin/bench/users", s.admin, map[string]any{"count": 250, "prefix": "1712"})
		want(t, r, 201, "")
		var body struct {
			Users []struct {
				ID    int64
				Token string
			}
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Users) != 250 {
			t.Fatalf("%d users, want 250", len(body.Users))
		}
		ids := map[int64]bool{}
		for _, u := range body.Users {
			if u.ID == 0 || u.Token == "" || ids[u.ID] {
				t.Fatalf("bad or repeated user %+v", u)
			}
			ids[u.ID] = true
		}
		// Every account can buy with its session.
		sale := s.activeSale(10, false)
		for _, u := range body.Users[:3] {
			me := s.do("GET", "/api/me", u.Token, nil)
			want(t, me, 200, "")
			if m := me.json(t); m["role"] != "buyer" || !strings.HasPrefix(m["phone"].(string), "1712") || len(m["phone"].(string)) != 11 {
				t.Fatalf("me = %v", m)
			}
			want(t, s.purchase(u.Token, sale, s.path(u.Token, sale)), 202, "")
		}
		// The same prefix again collides; another does not.
		want(t, s.do("POST", "/api/admin/bench/users", s.admin, map[string]any{"count": 1, "prefix": "1712"}), 409, "phone_taken")
		want(t, s.do("POST", "/api/admin/bench/users", s.admin, map[string]any{"count": 1, "prefix": "1713"}), 201, "")
	})
}

type observation struct {
	route, code string
	status      int
}

func TestObserve(t *testing.T) {
	s := newStack(t, options{})
	var mu sync.Mutex
	var seen []observation
	s.withBench(func(route, code string, status int, d time.Duration) {
		if d <= 0 {
			t.Errorf("duration %v", d)
		}
		mu.Lock()
		seen = append(seen, observation{route, code, status})
		mu.Unlock()
	})
	tok, _ := s.buyers(1)
	sale := s.activeSale(1, false)
	p := s.path(tok[0], sale)
	s.purchase(tok[0], sale, p)
	s.purchase(tok[0], sale, p)
	s.do("GET", "/api/nothing", "", nil)
	s.do("PUT", "/api/me", tok[0], nil)
	s.do("GET", "/api/sales", "", nil)

	wantSeen := []observation{
		{"POST /api/admin/sales", "", 201},
		{"POST /api/sales/{id}/path", "", 200},
		{"POST /api/sales/{id}/purchase/{path}", "", 202},
		{"POST /api/sales/{id}/purchase/{path}", "duplicate", 409},
		{"/api/", "not_found", 404},
		{"/api/me", "method_not_allowed", 405},
		{"GET /api/sales", "", 200},
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != fmt.Sprint(wantSeen) {
		t.Fatalf("observed\n%v\nwant\n%v", seen, wantSeen)
	}
}
