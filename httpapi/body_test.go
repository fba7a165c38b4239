package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestRequestBodies holds every route that reads a body to the one
// decoder's contract: over 64 KiB is 413 too_large, an unknown field or a
// wrong type 400 invalid.
func TestRequestBodies(t *testing.T) {
	s := newStack(t, options{})
	s.withBench(nil)
	buyers, _ := s.buyers(1)
	sale := s.activeSale(1, true)
	huge := `{"x":"` + strings.Repeat("x", 70<<10) + `"}`
	routes := []struct {
		path, token string
		unknown     string // a body with an unknown field
		wrongType   string
	}{
		{"/api/users", "", `{"phone":"13800000001","password":"secret-pw","x":1}`, `{"phone":13800000001}`},
		// A login without phone or password is bad_credentials, as a wrong
		// type leaves it.
		{"/api/sessions", "", `{"phone":"13800000001","password":"secret-pw","x":1}`, ""},
		{"/api/admin/sales", s.admin, `{"name":"tea","x":1}`, `{"name":"tea","stock":"ten"}`},
		{fmt.Sprintf("/api/sales/%d/path", sale), buyers[0], `{"captcha_id":"a","x":1}`, `{"answer":12}`},
		{"/api/admin/bench/users", s.admin, `{"count":1,"prefix":"17","x":1}`, `{"count":"1","prefix":"17"}`},
	}
	for _, r := range routes {
		t.Run(r.path, func(t *testing.T) {
			want(t, s.do("POST", r.path, r.token, huge), 413, "too_large")
			want(t, s.do("POST", r.path, r.token, r.unknown), 400, "invalid")
			if r.wrongType != "" {
				want(t, s.do("POST", r.path, r.token, r.wrongType), 400, "invalid")
			}
		})
	}
}
