package httpapi_test

import (
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// TestLoginBackoff checks the login route under a guessing attack: after
// the free tries the phone answers 429 rate_limited with the wait in
// Retry-After, for the right password too, and a phone not under attack
// logs in as usual.
func TestLoginBackoff(t *testing.T) {
	policy := seckill.Backoff{Free: 3, Base: time.Minute, Max: time.Hour, Forget: time.Hour}
	s := newStack(t, options{phones: inmem.NewLoginGuard(policy)})
	for _, phone := range []string{"13800000000", "13800000001"} {
		want(t, s.do("POST", "/api/users", "", map[string]string{"phone": phone, "password": "password-1"}), 201, "")
	}
	victim := map[string]string{"phone": "13800000000", "password": "wrong password"}
	for range policy.Free {
		want(t, s.do("POST", "/api/sessions", "", victim), 401, "bad_credentials")
	}
	r := s.do("POST", "/api/sessions", "", victim)
	want(t, r, 429, "rate_limited")
	if got := r.Header.Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After %q, want 60", got)
	}
	victim["password"] = "password-1"
	want(t, s.do("POST", "/api/sessions", "", victim), 429, "rate_limited")
	want(t, s.do("POST", "/api/sessions", "", map[string]string{"phone": "13800000001", "password": "password-1"}), 200, "")
}
