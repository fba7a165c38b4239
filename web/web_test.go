package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServesFiles(t *testing.T) {
	h := Handler()
	tests := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html", `<script src="app.js"`},
		{"/app.js", "javascript", "/api/sales"},
		{"/style.css", "text/css", ".card"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := get(t, h, http.MethodGet, tt.path)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want it to contain %q", ct, tt.contentType)
			}
			if !strings.Contains(body(t, res), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
			for _, k := range []string{"ETag", "Content-Security-Policy", "X-Content-Type-Options"} {
				if res.Header.Get(k) == "" {
					t.Errorf("no %s header", k)
				}
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/nope.js", "/static/app.js", "/api/unknown", "/../web.go", "/app.js/", "/dir/"} {
		if res := get(t, h, http.MethodGet, p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, res.StatusCode)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	res := get(t, Handler(), http.MethodPost, "/")
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: status %d, want 405", res.StatusCode)
	}
}

func TestETagRevalidates(t *testing.T) {
	h := Handler()
	etag := get(t, h, http.MethodGet, "/app.js").Header.Get("ETag")
	res := get(t, h, http.MethodGet, "/app.js", "If-None-Match", etag)
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d with a matching If-None-Match, want 304", res.StatusCode)
	}
}

// TestScriptCoversAPI is a cheap guard against drift between the page and
// api.md: the script must call every route the page is meant to use, written
// as template literals such as `/api/sales/${id}/captcha`.
func TestScriptCoversAPI(t *testing.T) {
	js := body(t, get(t, Handler(), http.MethodGet, "/app.js"))
	js = regexp.MustCompile(`\$\{[^}]*\}`).ReplaceAllString(js, "{}")
	routes := []struct{ method, path string }{
		{"POST", "/api/users"},
		{"POST", "/api/sessions"},
		{"DELETE", "/api/sessions"},
		{"GET", "/api/me"},
		{"GET", "/api/sales"},
		{"GET", "/api/sales/{}/captcha"},
		{"POST", "/api/sales/{}/path"},
		{"POST", "/api/sales/{}/purchase/{}"},
		{"GET", "/api/sales/{}/result"},
		{"GET", "/api/orders"},
		{"GET", "/api/orders/{}"},
		{"POST", "/api/orders/{}/pay"},
		{"POST", "/api/orders/{}/cancel"},
		{"POST", "/api/admin/sales"},
		{"GET", "/api/admin/dashboard"},
		{"POST", "/api/admin/sales/{}/stop"},
	}
	for _, r := range routes {
		re := regexp.MustCompile(`api\('` + r.method + `', ` + "[`']" + regexp.QuoteMeta(r.path) + "[`']")
		if !re.MatchString(js) {
			t.Errorf("app.js does not call %s %s", r.method, r.path)
		}
	}
	if strings.Contains(js, "innerHTML") {
		t.Error("app.js uses innerHTML; build nodes and set textContent instead")
	}
	if !strings.Contains(js, "server_time") {
		t.Error("app.js ignores server_time")
	}
}

// TestScriptUsesPush: the page opens the push socket on its own origin (an
// admin's also streams the dashboard) and settles a purchase with what it
// pushes, keeping /result as the fallback (both feeding noteResult); the
// CSP lets it connect there and nowhere else.
func TestScriptUsesPush(t *testing.T) {
	res := get(t, Handler(), http.MethodGet, "/app.js")
	js := body(t, res)
	for _, want := range []string{
		"new WebSocket(", "//${location.host}${isAdmin() ? '/api/admin/ws' : '/api/ws'}`", "'wss:' : 'ws:'", // same origin, TLS when the page has it
		"m.type === 'dash'", "noteDash(m)",
		"m.type === 'order_result'", "m.type === 'order_status'",
		"noteResult(m.sale_id, m)", "/result`", "noteResult(saleId, r.data)",
	} {
		if !strings.Contains(js, want) {
			t.Errorf("app.js lacks %q", want)
		}
	}
	csp := res.Header.Get("Content-Security-Policy")
	var connect string
	for _, d := range strings.Split(csp, ";") {
		if f := strings.Fields(d); len(f) > 0 && f[0] == "connect-src" {
			connect = strings.Join(f[1:], " ")
		}
	}
	if connect != "'self'" {
		t.Errorf("CSP %q: connect-src %q, want 'self' alone", csp, connect)
	}
}

// TestNoRemoteAssets keeps the page working offline: nothing is loaded from
// another origin.
func TestNoRemoteAssets(t *testing.T) {
	html := body(t, get(t, Handler(), http.MethodGet, "/"))
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).FindString(html); m != "" {
		t.Errorf("index.html loads a remote asset: %s", m)
	}
}
