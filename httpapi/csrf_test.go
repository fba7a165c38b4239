package httpapi_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"seckill/httpapi"
)

// TestLoginCSRF holds the defences against cross-site request forgery
// (csrf.go): a form's Content-Type is refused on every route that reads a
// JSON body, a foreign Origin is refused on unsafe requests that a bearer
// header does not authenticate, and a body whose keys repeat or match a
// field only when case is ignored is invalid.
func TestLoginCSRF(t *testing.T) {
	s := newStack(t, options{origins: []string{"https://shop.example"}})
	want(t, s.do("POST", "/api/users", "", map[string]string{"phone": "13800000000", "password": "password-1"}), 201, "")
	login := `{"phone":"13800000000","password":"password-1"}`
	ct := func(v string) http.Header { return http.Header{"Content-Type": {v}} }

	t.Run("content type", func(t *testing.T) {
		for _, c := range []string{"text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
			want(t, s.doH("POST", "/api/sessions", "", login, ct(c)), 400, "invalid")
			want(t, s.doH("POST", "/api/users", "", `{"phone":"13800000009","password":"password-1"}`, ct(c)), 400, "invalid")
		}
		want(t, s.doH("POST", "/api/sessions", "", login, ct("application/json; charset=utf-8")), 200, "")
	})

	t.Run("origin", func(t *testing.T) {
		foreign := http.Header{"Origin": {"https://evil.example"}}
		want(t, s.doH("POST", "/api/sessions", "", login, foreign), 403, "forbidden")
		want(t, s.doH("POST", "/api/sessions", "", login, http.Header{"Origin": {"null"}}), 403, "forbidden")
		want(t, s.doH("POST", "/api/sessions", "", login, http.Header{"Sec-Fetch-Site": {"cross-site"}}), 403, "forbidden")
		// httptest's requests are for Host example.com.
		want(t, s.doH("POST", "/api/sessions", "", login, http.Header{"Origin": {"http://example.com"}}), 200, "")
		want(t, s.doH("POST", "/api/sessions", "", login, http.Header{"Origin": {"https://shop.example"}}), 200, "")
		want(t, s.doH("POST", "/api/sessions", "", login, nil), 200, "")

		tok := s.login("13800000000", "password-1")
		cookie := http.Header{"Cookie": {httpapi.CookieName + "=" + tok}, "Origin": {"https://evil.example"}}
		want(t, s.doH("DELETE", "/api/sessions", "", nil, cookie), 403, "forbidden")
		// A safe method with the cookie from anywhere is fine, but for the
		// reads that spend the user's budget (TestReadsFromAnotherSite).
		want(t, s.doH("GET", "/api/sales", "", nil, cookie), 200, "")
		want(t, s.doH("GET", "/api/me", "", nil, cookie), 403, "forbidden")
		// A bearer header is never sent by a browser of its own accord.
		want(t, s.doH("DELETE", "/api/sessions", tok, nil, http.Header{"Origin": {"https://evil.example"}}), 204, "")
	})

	t.Run("keys", func(t *testing.T) {
		for _, body := range []string{
			`{"phone":"13800000000","password":"password-1","phone":"13800000001"}`,
			`{"PHONE":"13800000000","password":"password-1"}`,
			`{"phone":"13800000000","Password":"password-1"}`,
			`{"phone":"13800000000","password":"password-1","password":"password-1"}`,
			`{"phone":"13800000000","pa\u0073sword":"password-1","password":"x"}`,
		} {
			r := s.do("POST", "/api/sessions", "", body)
			want(t, r, 400, "invalid")
		}
		want(t, s.do("POST", "/api/sessions", "", `{"password":"password-1", "phone":"13800000000"}`), 200, "")
	})
}

// TestCaptchaFromAnotherSite: a captcha spends one of the user's capped
// supply for the sale (20, then one every 3 minutes), so its GET is not
// safe: another site's page that navigates a window it opened to the
// captcha URL again and again (a top-level GET carries the SameSite=Lax
// cookie) or a sibling subdomain's <img> (same-site: the cookie goes along)
// used to spend the victim's captchas and keep them out of the sale. A
// cookie-authenticated captcha request that the browser marks cross-site
// or same-site is refused unless its Origin is allowed; the page's own
// requests (same-origin), API clients (no Sec-Fetch-Site) and bearer
// tokens pass.
func TestCaptchaFromAnotherSite(t *testing.T) {
	s := newStack(t, options{origins: []string{"https://shop.example"}})
	toks, _ := s.buyers(1)
	url := fmt.Sprintf("/api/sales/%d/captcha", s.activeSale(5, true))
	cookie := func(h http.Header) http.Header {
		h.Set("Cookie", httpapi.CookieName+"="+toks[0])
		return h
	}
	for _, site := range []string{"cross-site", "same-site"} {
		want(t, s.doH("GET", url, "", nil, cookie(http.Header{"Sec-Fetch-Site": {site}})), 403, "forbidden")
		want(t, s.doH("GET", url, "", nil, cookie(http.Header{"Sec-Fetch-Site": {site}, "Origin": {"https://evil.example"}})), 403, "forbidden")
		want(t, s.doH("GET", url, "", nil, cookie(http.Header{"Sec-Fetch-Site": {site}, "Origin": {"https://shop.example"}})), 200, "")
		want(t, s.doH("GET", url, toks[0], nil, http.Header{"Sec-Fetch-Site": {site}}), 200, "")
	}
	want(t, s.doH("GET", url, "", nil, cookie(http.Header{"Sec-Fetch-Site": {"same-origin"}})), 200, "")
	want(t, s.doH("GET", url, "", nil, cookie(http.Header{})), 200, "")
}

// TestReadsFromAnotherSite: the authenticated reads spend the user's
// read budget (per user and instance), so another site's page that
// navigated a window to /result over and over (the SameSite=Lax cookie
// goes along) held the victim's own polls at 429 during the sale. A
// cookie-authenticated read the browser marks cross-site or same-site is
// refused, and spends nothing; the page's own reads and API clients pass.
func TestReadsFromAnotherSite(t *testing.T) {
	s := newStack(t, options{reads: httpapi.Budget{Rate: 0.001, Burst: 3}})
	toks, _ := s.buyers(1)
	cookie := func(h http.Header) http.Header {
		h.Set("Cookie", httpapi.CookieName+"="+toks[0])
		return h
	}
	sale := s.activeSale(5, false)
	for _, url := range []string{"/api/me", "/api/orders", "/api/orders/1", fmt.Sprintf("/api/sales/%d/result", sale)} {
		for _, site := range []string{"cross-site", "same-site"} {
			for range 5 {
				want(t, s.doH("GET", url, "", nil, cookie(http.Header{"Sec-Fetch-Site": {site}})), 403, "forbidden")
			}
		}
	}
	// The budget of 3 is whole: the refusals took none of it.
	want(t, s.doH("GET", "/api/me", "", nil, cookie(http.Header{"Sec-Fetch-Site": {"same-origin"}})), 200, "")
	want(t, s.doH("GET", "/api/orders", "", nil, cookie(http.Header{})), 200, "")
	want(t, s.doH("GET", "/api/me", toks[0], nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}), 200, "")
	want(t, s.doH("GET", "/api/me", toks[0], nil, nil), 429, "rate_limited")
}

// TestNullOriginNeverAllowed: "null" is the Origin of sandboxed frames,
// file: pages and some redirects, which any site can produce: it never
// passes, even written into --allowed-origins (it used to pass then).
func TestNullOriginNeverAllowed(t *testing.T) {
	s := newStack(t, options{origins: httpapi.ParseOrigins("null, https://shop.example")})
	want(t, s.do("POST", "/api/users", "", map[string]string{"phone": "13800000000", "password": "password-1"}), 201, "")
	login := `{"phone":"13800000000","password":"password-1"}`
	want(t, s.doH("POST", "/api/sessions", "", login, http.Header{"Origin": {"null"}}), 403, "forbidden")
	want(t, s.doH("POST", "/api/sessions", "", login, http.Header{"Origin": {"https://shop.example"}}), 200, "")
}

// TestOriginScheme: a request that came over HTTPS (here: through a trusted
// proxy that says so, or with --cookie-secure) refuses an http:// Origin of
// its own host, a page anyone on the network path can write; plain HTTP
// takes either, since a TLS proxy that does not say so cannot be told.
func TestOriginScheme(t *testing.T) {
	login := `{"phone":"13800000000","password":"password-1"}`
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	// httptest's requests are for Host example.com from 192.0.2.1.
	proxied := newStack(t, options{trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	want(t, proxied.do("POST", "/api/users", "", map[string]string{"phone": "13800000000", "password": "password-1"}), 201, "")
	want(t, proxied.doH("POST", "/api/sessions", "", login, h("Origin", "http://example.com", "X-Forwarded-Proto", "https")), 403, "forbidden")
	want(t, proxied.doH("POST", "/api/sessions", "", login, h("Origin", "https://example.com", "X-Forwarded-Proto", "https")), 200, "")
	want(t, proxied.doH("POST", "/api/sessions", "", login, h("Origin", "http://example.com", "X-Forwarded-Proto", "http")), 200, "")
	want(t, proxied.doH("POST", "/api/sessions", "", login, h("Origin", "https://example.com")), 200, "")

	secure := newStack(t, options{cookieSecure: true})
	want(t, secure.do("POST", "/api/users", "", map[string]string{"phone": "13800000000", "password": "password-1"}), 201, "")
	want(t, secure.doH("POST", "/api/sessions", "", login, h("Origin", "http://example.com")), 403, "forbidden")
	want(t, secure.doH("POST", "/api/sessions", "", login, h("Origin", "https://example.com")), 200, "")
	tok := secure.login("13800000000", "password-1")
	cookie := h("Cookie", httpapi.CookieName+"="+tok, "Origin", "http://example.com")
	want(t, secure.doH("GET", "/api/me", "", nil, cookie), 403, "forbidden")
}
