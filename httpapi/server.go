// Package httpapi serves the HTTP contract of api.md over the engine: JSON
// in and out, one error body, error codes mapped to statuses in one place,
// authentication by bearer token or cookie, and rate limits.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"seckill"
	"seckill/account"
	"seckill/checkout"
)

// Config wires the server.
type Config struct {
	Engine   *checkout.Engine
	Accounts *account.Service
	Orders   seckill.OrderStore
	// UserLimit and IPLimit are token buckets per user and per client IP.
	// Purchases take neither: their per-user limit is the engine's
	// (checkout.Config.PurchaseLimit), per user and sale, in the gate, and
	// their per-address one is PurchaseIPLimit's.
	UserLimit seckill.Limiter
	IPLimit   seckill.Limiter
	// PurchaseIPLimit is the per-address bucket of purchases that pass the
	// engine's local checks (nil: IPLimit's). An in-process one keeps a
	// purchase that reserves at one round trip to a shared backend, the
	// gate's: with IPLimit in Redis it would be two.
	PurchaseIPLimit seckill.Limiter
	// TrustedProxies are the proxies whose X-Forwarded-For entries are
	// believed (clientip.go); empty, the client IP is the peer's address.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are the origins ("https://shop.example") besides the
	// request's own host whose pages may send unsafe requests with the
	// session cookie (csrf.go). Empty: same origin only.
	AllowedOrigins []string
	// CookieSecure marks the session cookie Secure whatever the request
	// says (set it when every client reaches seckill over HTTPS). Without
	// it the cookie is Secure when the connection is TLS, or when a trusted
	// proxy says X-Forwarded-Proto: https.
	CookieSecure bool
	// BadTokens bounds, per client IP and instance, the requests that
	// present a token that authenticates nobody (invented, expired, logged
	// out); beyond it they get 429 before the session store is asked.
	// Zero: DefaultBadTokens. Registrations bounds account creations per
	// client IP and instance; zero: DefaultRegistrations. A negative Rate
	// turns either off.
	BadTokens     Budget
	Registrations Budget
	// SignedLookups bounds, per client IP over its BadTokens and instance,
	// the lookups of signed tokens the session cache does not know (authed).
	// Zero: DefaultSignedLookups; a negative Rate turns it off.
	SignedLookups Budget
	// Reads bounds, per user and instance, the authenticated reads:
	// GET /api/me, /api/orders and /api/orders/{id} share one such
	// budget, /api/sales/{id}/result has another; beyond it they get 429
	// with Retry-After. Zero: DefaultReads; a negative Rate turns it off.
	Reads Budget
	// Ready reports whether every backend is reachable (for /readyz).
	Ready func(ctx context.Context) error
	// Static serves everything outside /api (the web page); may be nil.
	Static http.Handler
	// Observe, when set, is told of every answered request: the ServeMux
	// pattern that served it ("" for none), the error code ("" on success),
	// the status and the time taken. It runs on every request; keep it cheap.
	Observe func(route, code string, status int, d time.Duration)
	// BenchUsers, when set, enables the admin's bulk provisioning of
	// benchmark accounts, POST /api/admin/bench/users (see bench.go).
	BenchUsers account.BulkUsers
	// Results, when set, carries every instance's order results to the
	// WebSockets of GET /api/ws (ws.go), which pushes them to their buyers.
	// Unset, the route does not exist (404 like any unknown path) and
	// clients poll /result.
	Results seckill.ResultBus
	// DashBus, when set, carries this instance's dashboard counts
	// (admissions and refusals) to the other instances and theirs here,
	// so that every instance's dashboard shows the whole cluster's
	// (dashshare.go); Close stops it. Unset, the dashboard counts this
	// instance's only. DashShare is how often the new counts are
	// published; zero: DefaultDashShare.
	DashBus   DashBus
	DashShare time.Duration
	// WS tunes the WebSockets: ping interval, send buffer, limits.
	WS WSConfig
	// WebSockets, when set, is told +1 when a WebSocket opens and -1 when
	// it closes (a gauge of open sockets).
	WebSockets func(delta int)
	// PublicURL is the server's base URL as clients and the payment
	// provider reach it (notify and return URLs are built on it); empty,
	// the return URL is built on each request's scheme and Host and the
	// notify URL on the address the request came in on.
	PublicURL string
	Log       *slog.Logger
	// Now is this instance's own clock: the engine's (checkout.Config.Now),
	// whose skew from the shared clock the engine measures. What the
	// instances compare (the dashboard's seconds) is on the shared clock,
	// Now plus Engine.ClockSkew (sharedNow); local caches and rate buckets
	// age on Now. Nil: time.Now.
	Now func() time.Time
}

// Server is the HTTP handler of seckill.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	log      *slog.Logger
	methods  map[string][]string // route path → methods it serves
	hub      *hub                // WebSockets; nil without Config.Results
	sales    *salePush           // the sale push to the hub's sockets; nil without hub
	dash     *dashboard          // the admin dashboard's series (dashboard.go)
	dashPush *dashPush           // its stream to the admins' sockets; nil without hub
	catalog  *catalog            // GET /api/sales's cached list (catalog.go)
	badAuth  *ipBuckets          // unknown tokens per client IP (limits.go)
	dead     *tokenSet           // signed tokens found without a session lately (middleware.go)
	signed   *ipBuckets          // lookups of signed tokens per client IP over badAuth (limits.go)
	signups  *ipBuckets          // registrations per client IP (limits.go)
	reads    *ipBuckets          // authenticated reads per user (limits.go)
	results  *ipBuckets          // /result reads per user, a budget of their own
}

// sharedNow is the time on the clock the instances share (the
// database's), as the engine last measured its skew: what another
// instance's dashboard compares with.
func (s *Server) sharedNow() time.Time {
	t := s.cfg.Now()
	if s.cfg.Engine != nil {
		t = t.Add(s.cfg.Engine.ClockSkew())
	}
	return t
}

// New returns the handler.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BadTokens == (Budget{}) {
		cfg.BadTokens = DefaultBadTokens
	}
	if cfg.SignedLookups == (Budget{}) {
		cfg.SignedLookups = DefaultSignedLookups
	}
	if cfg.Registrations == (Budget{}) {
		cfg.Registrations = DefaultRegistrations
	}
	if cfg.Reads == (Budget{}) {
		cfg.Reads = DefaultReads
	}
	if cfg.DashShare <= 0 {
		cfg.DashShare = DefaultDashShare
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Log, methods: map[string][]string{}}
	if cfg.Results != nil {
		s.hub = newHub(cfg.Results, cfg.WS, cfg.Log, cfg.WebSockets)
		if cfg.Accounts != nil {
			s.hub.sessionOf = cfg.Accounts.SessionOf
		}
	}
	s.catalog = &catalog{load: cfg.Engine.Sales, now: cfg.Now}
	s.dash = newDashboard(s)
	if s.hub != nil {
		s.sales = newSalePush(s.hub, s)
		s.dashPush = newDashPush(s)
	}
	s.dash.subscribe()
	s.badAuth = newIPBuckets(cfg.BadTokens)
	s.dead = newTokenSet(maxDeadTokens)
	s.signed = newIPBuckets(cfg.SignedLookups)
	s.signups = newIPBuckets(cfg.Registrations)
	s.reads = newIPBuckets(cfg.Reads)
	s.reads.now = cfg.Now
	s.results = newIPBuckets(cfg.Reads)
	s.results.now = cfg.Now
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if uncleanAPIPath(r.URL.Path) {
		// ServeMux would answer a plain-text 307 to the cleaned path
		// (found by review): the API's errors are JSON, and no client
		// of it sends such a path.
		writeError(w, r, s.log, seckill.Errorf(seckill.ENotFound, "no such endpoint: %s", quoteShort(r.URL.Path)))
		return
	}
	if s.cfg.Observe != nil {
		s.observed(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// uncleanAPIPath reports whether p is /api itself or an API path that
// ServeMux would redirect to its clean form (with "..", "." or "//").
func uncleanAPIPath(p string) bool {
	if p == "/api" {
		return true
	}
	if !strings.HasPrefix(p, "/api/") {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") {
		c += "/"
	}
	return c != p
}

// handler is an endpoint that answers errors by returning them.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(pattern string, h handler) {
	if method, path, ok := strings.Cut(pattern, " "); ok {
		s.methods[path] = append(s.methods[path], method)
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		err := s.sameOrigin(r)
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

func (s *Server) routes() {
	s.handle("POST /api/users", s.limitIP(jsonBody(s.createUser)))
	s.handle("POST /api/sessions", s.limitIP(jsonBody(s.login)))
	s.handle("DELETE /api/sessions", s.authed(s.logout))
	s.handle("GET /api/me", s.fromThisSite(s.authed(s.read(s.me))))

	s.handle("GET /api/sales", s.listSales)
	s.handle("GET /api/sales/{id}", s.getSale)
	s.handle("POST /api/admin/sales", jsonBody(s.admin(s.createSale)))
	s.handle("GET /api/admin/sales/{id}/stats", s.admin(s.saleStats))
	s.handle("POST /api/admin/sales/{id}/stop", s.admin(s.stopSale))
	s.handle("GET /api/admin/dashboard", s.admin(s.dashboardHandler))
	if s.cfg.BenchUsers != nil { // off: the path is as unknown as any other
		s.handle("POST /api/admin/bench/users", jsonBody(s.admin(s.benchUsers)))
	}

	// A captcha spends one of the user's supply, and the authenticated
	// reads their per-user budget: not from another site.
	s.handle("GET /api/sales/{id}/captcha", s.fromThisSite(s.authed(s.limited(s.captcha))))
	s.handle("POST /api/sales/{id}/path", jsonBody(s.authed(s.counted(s.limited(s.path), false))))
	// purchase applies the per-address limit itself, after the checks
	// that need no shared backend; the gate applies the per-user one.
	s.handle("POST /api/sales/{id}/purchase/{path}", s.authed(s.counted(s.purchase, true)))
	s.handle("GET /api/sales/{id}/result", s.fromThisSite(s.authed(s.readFrom(s.results, s.result))))

	s.handle("GET /api/orders", s.fromThisSite(s.authed(s.read(s.listOrders))))
	s.handle("GET /api/orders/{id}", s.fromThisSite(s.authed(s.read(s.getOrder))))
	s.handle("POST /api/orders/{id}/cancel", s.authed(s.limited(s.cancelOrder)))
	s.handle("POST /api/orders/{id}/pay", s.authed(s.limited(s.payOrder)))
	// No rate limit: the provider posts from few addresses, at the pace
	// of payments; a forged post costs one signature check.
	s.handle("POST /api/payments/notify", s.paymentNotify)
	s.handle("POST /api/admin/orders/{id}/reconcile-payment", s.admin(s.reconcilePayment))
	s.handle("POST /api/admin/orders/{id}/refund", s.admin(s.refundOrder))
	if s.hub != nil {
		s.handle("GET /api/ws", s.limitIP(s.authed(s.webSocket)))
		s.handle("GET /api/admin/ws", s.limitIP(s.admin(s.adminSocket)))
	}

	s.handle("/api/", func(w http.ResponseWriter, r *http.Request) error {
		return seckill.Errorf(seckill.ENotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	// A known path asked with another method gets the contract's JSON
	// error rather than ServeMux's plain-text 405.
	for path, methods := range s.methods {
		allow := strings.Join(methods, ", ")
		s.handle(path, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allow)
			return seckill.Errorf(seckill.EMethod, "%s is not allowed here; use %s", r.Method, allow)
		})
	}
	if s.cfg.Static != nil {
		s.mux.Handle("/", s.cfg.Static)
	}
}
