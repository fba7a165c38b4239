package httpapi_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestCookieSecure: the session cookie is Secure behind a TLS-terminating
// proxy that is trusted and says X-Forwarded-Proto: https, or always with
// CookieSecure; a client writing the header itself does not make it so,
// nor does a trusted proxy that says http (issue 12 item 7).
func TestCookieSecure(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} // httptest's peer is 192.0.2.1
	login := map[string]string{"phone": "13800000000", "password": "password-1"}
	cases := []struct {
		name   string
		opt    options
		proto  []string
		secure bool
	}{
		{"trusted proxy, https", options{trusted: proxy}, []string{"https"}, true},
		{"trusted proxy, appended https", options{trusted: proxy}, []string{"http, https"}, true},
		{"trusted proxy, http", options{trusted: proxy}, []string{"https, http"}, false},
		{"trusted proxy, no header", options{trusted: proxy}, nil, false},
		{"untrusted peer says https", options{}, []string{"https"}, false},
		{"cookie-secure", options{cookieSecure: true}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStack(t, c.opt)
			want(t, s.do("POST", "/api/users", "", login), 201, "")
			h := http.Header{}
			for _, p := range c.proto {
				h.Add("X-Forwarded-Proto", p)
			}
			r := s.doH("POST", "/api/sessions", "", login, h)
			want(t, r, 200, "")
			cookie := r.Header.Get("Set-Cookie")
			if got := strings.Contains(cookie, "; Secure"); got != c.secure {
				t.Errorf("Set-Cookie %q: Secure %v, want %v", cookie, got, c.secure)
			}
		})
	}
}
