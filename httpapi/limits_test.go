package httpapi_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"seckill/httpapi"
)

// TestUnknownTokensLimited: an address presenting tokens that authenticate
// nobody gets 401 up to DefaultBadTokens' burst, then 429 with Retry-After
// (issue 12 item 12).
func TestUnknownTokensLimited(t *testing.T) {
	s := newStack(t, options{})
	for i := range 50 {
		want(t, s.do("GET", "/api/me", fmt.Sprintf("invented-%d", i), nil), 401, "unauthenticated")
	}
	r := s.do("GET", "/api/me", "invented-x", nil)
	want(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// No token at all is not a guess: plain 401.
	want(t, s.do("GET", "/api/me", "", nil), 401, "unauthenticated")
}

// TestRegistrationLimited: one address creates DefaultRegistrations' burst
// of accounts, taken phones included, then 429 (issue 12 item 11).
func TestRegistrationLimited(t *testing.T) {
	s := newStack(t, options{})
	for i := range 9 {
		want(t, s.do("POST", "/api/users", "", map[string]string{"phone": fmt.Sprintf("1380000000%d", i), "password": "password-1"}), 201, "")
	}
	want(t, s.do("POST", "/api/users", "", map[string]string{"phone": "13800000000", "password": "password-1"}), 409, "phone_taken")
	r := s.do("POST", "/api/users", "", map[string]string{"phone": "13800000001", "password": "password-1"})
	want(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") != "60" {
		t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	// Invalid fields cost nothing and say nothing.
	want(t, s.do("POST", "/api/users", "", map[string]string{"phone": "1", "password": "password-1"}), 400, "invalid")
}

// TestRegistrationLimitedPerIPv6Subnet: addresses of one IPv6 /64 share
// one registration budget, so a client cannot escape the per-address
// limits by taking a fresh address of its /64 for every request; another
// /64 has its own budget.
func TestRegistrationLimitedPerIPv6Subnet(t *testing.T) {
	s := newStack(t, options{trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}) // httptest.NewRequest's peer
	from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }
	for i := range 10 {
		r := s.doH("POST", "/api/users", "", map[string]string{"phone": fmt.Sprintf("1390000000%d", i), "password": "password-1"}, from(fmt.Sprintf("2001:db8:7:7::%x", i+1)))
		want(t, r, 201, "")
	}
	want(t, s.doH("POST", "/api/users", "", map[string]string{"phone": "13900000010", "password": "password-1"}, from("2001:db8:7:7:ffff::1")), 429, "rate_limited")
	want(t, s.doH("POST", "/api/users", "", map[string]string{"phone": "13900000011", "password": "password-1"}, from("2001:db8:7:8::1")), 201, "")
}

// TestReadsLimitedPerUser: a user's authenticated reads (/api/me, the
// orders, one order, a sale's result) draw on one bucket of the user's,
// DefaultReads (40 at once, then 10 a second); past it they get 429 with
// Retry-After. Another user at the same address reads on; the limited
// user still buys (purchases have their own limits), and reads again
// once the bucket refills.
func TestReadsLimitedPerUser(t *testing.T) {
	clock := newTestClock()
	s := newStack(t, options{now: clock.now})
	tokens, _ := s.buyers(2)
	reader, other := tokens[0], tokens[1]
	sale := s.activeSale(5, false)
	result := fmt.Sprintf("/api/sales/%d/result", sale)
	// /api/me and the orders share a budget; /result has one of its own.
	for _, reads := range [][]string{{"/api/me", "/api/orders", "/api/orders/1"}, {result}} {
		for i := range httpapi.DefaultReads.Burst {
			if r := s.do("GET", reads[i%len(reads)], reader, nil); r.Code == 429 {
				t.Fatalf("read %d of a burst of %d of %v: 429", i+1, httpapi.DefaultReads.Burst, reads)
			}
		}
		for _, p := range reads {
			r := s.do("GET", p, reader, nil)
			want(t, r, 429, "rate_limited")
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("GET %s: 429 without Retry-After", p)
			}
		}
	}
	want(t, s.do("GET", "/api/me", other, nil), 200, "")
	want(t, s.purchase(reader, sale, s.path(reader, sale)), 202, "")
	clock.advance(time.Second)
	for i := range int(httpapi.DefaultReads.Rate) {
		if r := s.do("GET", "/api/orders", reader, nil); r.Code == 429 {
			t.Fatalf("read %d a second after the burst: 429", i+1)
		}
		if r := s.do("GET", result, reader, nil); r.Code == 429 {
			t.Fatalf("/result %d a second after the burst: 429", i+1)
		}
	}
	want(t, s.do("GET", "/api/me", reader, nil), 429, "rate_limited")
	want(t, s.do("GET", result, reader, nil), 429, "rate_limited")
}

// TestResultReadsOwnBudget: a page that loads over and over (another site
// can send a window of the buyer's to it, and the page then reads /api/me
// and the orders under the buyer's cookie) spends the reads' budget, not
// the buyer's /result polls.
func TestResultReadsOwnBudget(t *testing.T) {
	clock := newTestClock()
	s := newStack(t, options{now: clock.now})
	tokens, _ := s.buyers(1)
	sale := s.activeSale(5, false)
	for range httpapi.DefaultReads.Burst / 2 {
		want(t, s.do("GET", "/api/me", tokens[0], nil), 200, "")
		want(t, s.do("GET", "/api/orders", tokens[0], nil), 200, "")
	}
	want(t, s.do("GET", "/api/me", tokens[0], nil), 429, "rate_limited")
	want(t, s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), tokens[0], nil), 200, "")
}

// TestReadsOfAPageWithinBudget: what the web page reads for a buyer
// waiting on a purchase without a socket (web/static/app.js: /result
// every 0.5 s for up to 120 s, the orders and /api/me now and then) never
// meets the read budget.
func TestReadsOfAPageWithinBudget(t *testing.T) {
	clock := newTestClock()
	s := newStack(t, options{now: clock.now})
	tok, _ := s.buyers(1)
	sale := s.activeSale(5, false)
	want(t, s.do("GET", "/api/me", tok[0], nil), 200, "")
	want(t, s.do("GET", "/api/orders", tok[0], nil), 200, "")
	for i := range 240 {
		want(t, s.do("GET", fmt.Sprintf("/api/sales/%d/result", sale), tok[0], nil), 200, "")
		if i%10 == 0 {
			want(t, s.do("GET", "/api/orders", tok[0], nil), 200, "")
			want(t, s.do("GET", "/api/me", tok[0], nil), 200, "")
		}
		clock.advance(500 * time.Millisecond)
	}
}

// TestReadsBudgetOff: a negative rate turns the read budget off.
func TestReadsBudgetOff(t *testing.T) {
	s := newStack(t, options{reads: httpapi.Budget{Rate: -1}})
	tok, _ := s.buyers(1)
	for range 200 {
		want(t, s.do("GET", "/api/me", tok[0], nil), 200, "")
	}
}

// testClock is a clock that moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
