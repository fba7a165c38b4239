// Package httpapi serves the HTTP contract of api.md over the engine: JSON
// in and out, one error body, error codes mapped to statuses in one place,
// authentication by bearer token or cookie, and rate limits.
package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"seckill"
	"seckill/account"
	"seckill/checkout"
)

// CookieName is the session cookie set at login.
const CookieName = "seckill_token"

// Config wires the server.
type Config struct {
	Engine   *checkout.Engine
	Accounts *account.Service
	Orders   seckill.OrderStore
	// UserLimit and IPLimit are token buckets per user and per client IP.
	UserLimit seckill.Limiter
	IPLimit   seckill.Limiter
	// TrustedProxies are the proxies whose X-Forwarded-For entries are
	// believed (clientip.go); empty, the client IP is the peer's address.
	TrustedProxies []netip.Prefix
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
	BenchUsers BulkUsers
	// Results, when set, carries every instance's order results to the
	// WebSockets of GET /api/ws (ws.go), which pushes them to their buyers.
	// Unset, the route does not exist (404 like any unknown path) and
	// clients poll /result.
	Results seckill.ResultBus
	// WS tunes the WebSockets: ping interval, send buffer, limits.
	WS WSConfig
	// WebSockets, when set, is told +1 when a WebSocket opens and -1 when
	// it closes (a gauge of open sockets).
	WebSockets func(delta int)
	Log        *slog.Logger
	Now        func() time.Time
}

// Server is the HTTP handler of seckill.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	log     *slog.Logger
	methods map[string][]string // route path → methods it serves
	hub     *hub                // WebSockets; nil without Config.Results
}

// New returns the handler.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Log, methods: map[string][]string{}}
	if cfg.Results != nil {
		s.hub = newHub(cfg.Results, cfg.WS, cfg.Log, cfg.WebSockets)
	}
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Observe != nil {
		s.observed(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// handler is an endpoint that answers errors by returning them.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(pattern string, h handler) {
	if method, path, ok := strings.Cut(pattern, " "); ok {
		s.methods[path] = append(s.methods[path], method)
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

func (s *Server) routes() {
	s.handle("POST /api/users", s.limitIP(s.createUser))
	s.handle("POST /api/sessions", s.limitIP(s.login))
	s.handle("DELETE /api/sessions", s.logout)
	s.handle("GET /api/me", s.authed(s.me))

	s.handle("GET /api/sales", s.listSales)
	s.handle("GET /api/sales/{id}", s.getSale)
	s.handle("POST /api/admin/sales", s.admin(s.createSale))
	s.handle("GET /api/admin/sales/{id}/stats", s.admin(s.saleStats))
	if s.cfg.BenchUsers != nil { // off: the path is as unknown as any other
		s.handle("POST /api/admin/bench/users", s.admin(s.benchUsers))
	}

	s.handle("GET /api/sales/{id}/captcha", s.authed(s.limited(s.captcha)))
	s.handle("POST /api/sales/{id}/path", s.authed(s.limited(s.path)))
	// purchase applies the rate limits itself, after the checks that need
	// no shared backend.
	s.handle("POST /api/sales/{id}/purchase/{path}", s.authed(s.purchase))
	s.handle("GET /api/sales/{id}/result", s.authed(s.result))

	s.handle("GET /api/orders", s.authed(s.listOrders))
	s.handle("GET /api/orders/{id}", s.authed(s.getOrder))
	if s.hub != nil {
		s.handle("GET /api/ws", s.limitIP(s.authed(s.webSocket)))
	}

	s.handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	})
	s.handle("GET /readyz", s.readyz)
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

// authedHandler is an endpoint that needs a session.
type authedHandler func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error

// token returns the bearer token or the cookie.
func token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value
	}
	return ""
}

func (s *Server) authed(h authedHandler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		sess, err := s.cfg.Accounts.Authenticate(r.Context(), token(r))
		if err != nil {
			return err
		}
		return h(w, r, sess)
	}
}

func (s *Server) admin(h authedHandler) handler {
	return s.authed(func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
		if sess.Role != seckill.RoleAdmin {
			return seckill.Errorf(seckill.EForbidden, "admins only")
		}
		return h(w, r, sess)
	})
}

func (s *Server) allow(ctx context.Context, l seckill.Limiter, key string) error {
	if l == nil {
		return nil
	}
	ok, err := l.Allow(ctx, key)
	if err != nil {
		return err
	}
	if !ok {
		return seckill.Errorf(seckill.ERateLimited, "too many requests; slow down")
	}
	return nil
}

func (s *Server) limitIP(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.allow(r.Context(), s.cfg.IPLimit, s.clientIP(r)); err != nil {
			return err
		}
		return h(w, r)
	}
}

// limited applies the per-user and per-IP buckets.
func (s *Server) limited(h authedHandler) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
		if err := s.takeTokens(r, sess); err != nil {
			return err
		}
		return h(w, r, sess)
	}
}

// takeTokens takes a token from the user's bucket and one from the client
// IP's.
func (s *Server) takeTokens(r *http.Request, sess *seckill.Session) error {
	if err := s.allow(r.Context(), s.cfg.UserLimit, strconv.FormatInt(sess.UserID, 10)); err != nil {
		return err
	}
	return s.allow(r.Context(), s.cfg.IPLimit, s.clientIP(r))
}

// pathID parses a numeric path value; anything else names nothing.
func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, seckill.Errorf(seckill.ENotFound, "no such %s", name)
	}
	return id, nil
}

type userJSON struct {
	ID       int64        `json:"id"`
	Phone    string       `json:"phone"`
	Nickname string       `json:"nickname"`
	Role     seckill.Role `json:"role,omitempty"`
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	req, err := parseCreateUser(http.MaxBytesReader(w, r.Body, MaxBody+1))
	if err != nil {
		return err
	}
	u, err := s.cfg.Accounts.Register(r.Context(), req.Phone, req.Password, req.Nickname)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, userJSON{ID: u.ID, Phone: u.Phone, Nickname: u.Nickname})
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	req, err := parseLogin(http.MaxBytesReader(w, r.Body, MaxBody+1))
	if seckill.ErrorCode(err) == seckill.EInvalid && (req.Phone == "" || req.Password == "") {
		return seckill.Errorf(seckill.EBadCredentials, "wrong phone or password")
	} else if err != nil {
		return err
	}
	tok, sess, u, err := s.cfg.Accounts.LoginFrom(r.Context(), req.Phone, req.Password, s.clientIP(r))
	if we := (*account.WaitError)(nil); errors.As(err, &we) {
		// The phone or the address is in back-off: say when to come back.
		w.Header().Set("Retry-After", strconv.Itoa(we.Seconds()))
	}
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: tok, Path: "/", Expires: sess.ExpiresAt,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil,
	})
	writeJSON(w, http.StatusOK, map[string]any{
		"token": tok, "expires_at": sess.ExpiresAt,
		"user": userJSON{ID: u.ID, Phone: u.Phone, Nickname: u.Nickname, Role: u.Role},
	})
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	tok := token(r)
	if _, err := s.cfg.Accounts.Authenticate(r.Context(), tok); err != nil {
		return err
	}
	if err := s.cfg.Accounts.Logout(r.Context(), tok); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	u, err := s.cfg.Accounts.User(r.Context(), sess.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userJSON{ID: u.ID, Phone: u.Phone, Nickname: u.Nickname, Role: u.Role})
	return nil
}

// saleJSON is a sale with its status.
type saleJSON struct {
	*seckill.Sale
	Status string `json:"status"`
}

func (s *Server) view(ctx context.Context, sale *seckill.Sale) saleJSON {
	v, status := s.cfg.Engine.SaleView(ctx, sale)
	return saleJSON{Sale: v, Status: status}
}

func (s *Server) listSales(w http.ResponseWriter, r *http.Request) error {
	sales, err := s.cfg.Engine.Sales(r.Context())
	if err != nil {
		return err
	}
	out := make([]saleJSON, len(sales))
	for i, sale := range sales {
		out[i] = s.view(r.Context(), sale)
	}
	writeJSON(w, http.StatusOK, map[string]any{"sales": out, "server_time": s.cfg.Now().UTC()})
	return nil
}

func (s *Server) getSale(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	sale, err := s.cfg.Engine.Sale(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sale": s.view(r.Context(), sale), "server_time": s.cfg.Now().UTC()})
	return nil
}

func (s *Server) createSale(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	sale, err := parseCreateSale(http.MaxBytesReader(w, r.Body, MaxBody+1))
	if err != nil {
		return err
	}
	if err := s.cfg.Engine.CreateSale(r.Context(), sale); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"sale": s.view(r.Context(), sale), "server_time": s.cfg.Now().UTC()})
	return nil
}

func (s *Server) saleStats(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	st, err := s.cfg.Engine.Stats(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) captcha(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	cid, png, exp, err := s.cfg.Engine.Captcha(r.Context(), sess.UserID, id)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"captcha_id": cid,
		"image":      "data:image/png;base64," + base64.StdEncoding.EncodeToString(png),
		"expires_at": exp,
	})
	return nil
}

func (s *Server) path(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	req, err := parsePath(http.MaxBytesReader(w, r.Body, MaxBody+1))
	if err != nil {
		return err
	}
	p, exp, err := s.cfg.Engine.IssuePath(r.Context(), sess.UserID, id, req.CaptchaID, req.Answer)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": p, "expires_at": exp})
	return nil
}

func (s *Server) purchase(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	// The local checks first: once a sale sells out, nearly every request
	// is answered here without a round trip to a shared limiter.
	a, err := s.cfg.Engine.CheckPurchase(r.Context(), sess.UserID, id, r.PathValue("path"))
	if err != nil {
		return err
	}
	if err := s.takeTokens(r, sess); err != nil {
		return err
	}
	ticket, err := s.cfg.Engine.Admit(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": seckill.ResultQueued, "ticket": ticket})
	return nil
}

func (s *Server) result(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	res, err := s.cfg.Engine.Result(r.Context(), sess.UserID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) listOrders(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	orders, err := s.cfg.Orders.OrdersByUser(r.Context(), sess.UserID)
	if err != nil {
		return err
	}
	if orders == nil {
		orders = []*seckill.Order{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": orders})
	return nil
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	o, err := s.cfg.Orders.Order(r.Context(), id)
	if err != nil {
		return err
	}
	if o.UserID != sess.UserID {
		// Someone else's order is indistinguishable from none.
		return seckill.Errorf(seckill.ENotFound, "no such order")
	}
	writeJSON(w, http.StatusOK, map[string]any{"order": o})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			s.log.Warn("not ready", "err", err)
			return seckill.Errorf(seckill.EBusy, "not ready: %v", seckill.ErrorMessage(err))
		}
	}
	if !s.cfg.Engine.Ready() {
		return seckill.Errorf(seckill.EBusy, "not ready: stock gate is loading")
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
