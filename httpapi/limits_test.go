package httpapi_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
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
