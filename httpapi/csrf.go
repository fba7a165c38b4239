package httpapi

import (
	"mime"
	"net/http"
	"net/url"
	"strings"

	"seckill"
)

// Cross-site request forgery. A page on another site can make the browser
// send a form (text/plain, urlencoded or multipart, no preflight) to any
// of our routes, with the session cookie attached (SameSite=Lax keeps it
// off cross-site POSTs, but not off same-site ones, nor the login's own
// Set-Cookie: a forged login logs the victim into the attacker's account).
// Two checks stop it, each enough on its own in a modern browser:
//
//   - jsonBody: a route that reads a JSON body refuses a body whose
//     Content-Type is not application/json (400 invalid, the contract's code
//     for a body it cannot take; api.md has no 415). A browser sends
//     application/json cross-site only after a CORS preflight, which we
//     never grant.
//   - sameOrigin: an unsafe method (anything but GET, HEAD, OPTIONS) not
//     authenticated by a bearer header (so: by the cookie, or a login, which
//     sets it, or a registration) is refused (403 forbidden) when its Origin
//     is neither this host nor in Config.AllowedOrigins, or when the
//     browser marks it Sec-Fetch-Site: cross-site. No Origin (curl, server
//     to server, old browsers) passes: they carry no victim's cookie.
//
// Bearer tokens need neither: a browser never attaches them by itself.

// jsonBody refuses, with 400 invalid, a request that has a body whose
// Content-Type is not application/json (parameters such as charset are
// allowed). A request without a body passes: routes whose body is
// optional (the path of a sale without captcha) take none.
func jsonBody(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			return h(w, r)
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return seckill.Errorf(seckill.EInvalid, "send the body as Content-Type: application/json")
		}
		return h(w, r)
	}
}

// safeMethod reports whether m changes nothing (RFC 9110).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin returns EForbidden for a cross-site unsafe request a browser
// may have been made to send (see above), nil otherwise.
func (s *Server) sameOrigin(r *http.Request) error {
	if safeMethod(r.Method) || r.Header.Get("Authorization") != "" {
		return nil
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return seckill.Errorf(seckill.EForbidden, "cross-site request refused")
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	if s.originAllowed(origin, r) {
		return nil
	}
	return seckill.Errorf(seckill.EForbidden, "cross-site request refused: Origin does not match this site")
}

// originAllowed reports whether origin (scheme://host[:port]) names the
// host of r (its Host, which a proxy must pass unchanged) or is one of
// Config.AllowedOrigins. "null" (sandboxed frames, file: pages) is never
// allowed. Nor is an http:// origin when r came over HTTPS (see secure):
// a browser takes http://shop and https://shop for two sites, and the
// plain one is a page anyone on the network path can write, so it may not
// act for a buyer logged in on the other. Whether a plain-HTTP request
// came through a TLS-terminating proxy that does not say so cannot be
// told, so such a request may come from either scheme.
func (s *Server) originAllowed(origin string, r *http.Request) bool {
	if strings.EqualFold(origin, "null") { // not even from AllowedOrigins
		return false
	}
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if u.Scheme == "http" && s.secure(r) {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// ParseOrigins splits a comma-separated list of origins for
// Config.AllowedOrigins, dropping blanks and trailing slashes.
func ParseOrigins(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// fromThisSite refuses (403 forbidden) a request not authenticated by a
// bearer header that the browser marks as sent from another site
// (Sec-Fetch-Site: cross-site or same-site), unless its Origin is this
// host or one of Config.AllowedOrigins; and, like sameOrigin, one whose
// Origin is foreign. It is for GET routes that spend something of the
// user's: a captcha takes one of the user's capped supply for the sale,
// and a read (/api/me, orders, /result) a token of the user's read
// budget; the SameSite=Lax cookie goes along on another site's top-level
// navigations (a window it opened, sent to the captcha URL again and
// again) and on a sibling subdomain's <img>: such a page used to spend
// the victim's captchas and keep them out of the sale, or hold their
// /result polls at 429 through it. A navigation or an
// image sends no Origin, so it is refused; the page's own fetches are
// same-origin, and clients without Sec-Fetch-Site carry no victim's
// cookie.
func (s *Server) fromThisSite(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get("Authorization") == "" {
			origin := r.Header.Get("Origin")
			if origin != "" && !s.originAllowed(origin, r) {
				return seckill.Errorf(seckill.EForbidden, "cross-site request refused: Origin does not match this site")
			}
			if site := r.Header.Get("Sec-Fetch-Site"); (site == "cross-site" || site == "same-site") && origin == "" {
				return seckill.Errorf(seckill.EForbidden, "cross-site request refused")
			}
		}
		return h(w, r)
	}
}
