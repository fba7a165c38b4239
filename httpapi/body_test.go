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

// TestRequestBodyProblems: a body that is not UTF-8 is refused, not
// stored with its bad bytes replaced (two passwords became one, found by
// review), and the 400s say what is wrong in JSON's terms, without Go's
// type names or its time parser's layout.
func TestRequestBodyProblems(t *testing.T) {
	s := newStack(t, options{})
	bad := s.do("POST", "/api/users", "", "{\"phone\":\"13800000002\",\"password\":\"pass\xffword12\"}")
	want(t, bad, 400, "invalid")
	if !strings.Contains(string(bad.Body), "UTF-8") {
		t.Errorf("invalid UTF-8: %s", bad.Body)
	}
	want(t, s.do("POST", "/api/users", "", "{\"phone\":\"13800000003\",\"password\":\"secret-pw\",\"nickname\":\"\xc0\xafx\"}"), 400, "invalid")
	// Escapes of half a surrogate pair decode to U+FFFD just the same.
	for _, pw := range []string{`secret\ud800`, `secret\udc01x`, `secret\ud800\ud800`, `secret\ud800x\udc00`, `secret\ud800\u0041`} {
		want(t, s.do("POST", "/api/users", "", `{"phone":"13800000004","password":"`+pw+`"}`), 400, "invalid")
	}
	// A whole pair, or an escaped backslash before "ud800", is fine.
	want(t, s.do("POST", "/api/users", "", `{"phone":"13800000004","password":"secret-\ud83d\ude00","nickname":"a\\ud800"}`), 201, "")
	// Nothing was stored: the phone registers now.
	want(t, s.do("POST", "/api/users", "", `{"phone":"13800000002","password":"pass-word12"}`), 201, "")

	for _, c := range []struct{ body, says string }{
		{`[]`, "the body must be an object"},
		{`{"name":"tea","stock":"ten"}`, `field "stock" must be an integer`},
		{`{"name":"tea","require_captcha":"yes"}`, `field "require_captcha" must be true or false`},
		{`{"name":"tea","starts_at":5}`, "RFC 3339"},
		{`{"name":"tea","starts_at":"2026-13-01T00:00:00Z"}`, "RFC 3339"},
	} {
		r := s.do("POST", "/api/admin/sales", s.admin, c.body)
		want(t, r, 400, "invalid")
		body := r.json(t)["error"].(map[string]any)["message"].(string)
		if !strings.Contains(body, c.says) {
			t.Errorf("%s: %s, want it to say %q", c.body, body, c.says)
		}
		for _, leak := range []string{"httpapi.", "int64", "time.Time", "UnmarshalJSON", "2006-01-02"} {
			if strings.Contains(body, leak) {
				t.Errorf("%s: %s names Go's %q", c.body, body, leak)
			}
		}
	}
}
