package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/account"
	"seckill/captcha"
	"seckill/checkout"
	"seckill/httpapi"
	"seckill/inmem"
	"seckill/mq"
	"seckill/sqldb"
)

// stackStore is every store the API and the engine use, and bulk user
// creation.
type stackStore interface {
	seckill.UserStore
	seckill.SessionStore
	seckill.SaleStore
	seckill.OrderStore
	account.BulkUsers
	Ping(ctx context.Context) error
}

// stackQueue is the order queue, the result bus and the dashboard's bus.
type stackQueue interface {
	seckill.OrderQueue
	seckill.ResultBus
	httpapi.DashBus
}

// stack is the whole engine behind the real HTTP handler: on the in-memory
// store and queue of package inmem, or with options.sqlite on SQLite and
// embedded JetStream, the embedded default of seckill serve.
type stack struct {
	t        testing.TB
	h        http.Handler
	api      *httpapi.Server
	db       stackStore
	queue    stackQueue
	gate     *inmem.Gate
	engine   *checkout.Engine
	accounts *account.Service
	sessions *inmem.SessionCache // the accounts' session cache
	flaky    *flakyQueue
	captchas *inmem.CaptchaStore
	admin    string // admin token
}

type options struct {
	userLimit, ipLimit seckill.Limiter
	purchaseIPLimit    seckill.Limiter // Config.PurchaseIPLimit
	purchaseLimit      seckill.Bucket  // checkout.Config.PurchaseLimit
	ws                 httpapi.WSConfig
	wsGauge            func(delta int)    // Config.WebSockets
	phones, ips        seckill.LoginGuard // account.Config's login back-off
	trusted            []netip.Prefix     // Config.TrustedProxies
	origins            []string           // Config.AllowedOrigins
	cookieSecure       bool               // Config.CookieSecure
	dashShare          time.Duration      // Config.DashShare
	reads              httpapi.Budget     // Config.Reads
	now                func() time.Time   // Config.Now
	sessionTTL         time.Duration      // account.Config.SessionTTL
	lookups            *atomic.Int64      // when set, counts the session cache's reads of the store
	lookupDelay        time.Duration      // with lookups: each read of the store takes this long
	lookupFails        *atomic.Bool       // with lookups: while true, each read of the store fails (EBusy)
	signedLookups      httpapi.Budget     // Config.SignedLookups
	// sqlite runs the stack on SQLite and embedded JetStream instead of
	// the in-memory backends, for tests about the real ones.
	sqlite bool
}

// flakyQueue fails Publish on demand, to drill the 503 path.
type flakyQueue struct {
	seckill.OrderQueue
	fail atomic.Bool
}

func (q *flakyQueue) Publish(ctx context.Context, r seckill.OrderRequest) error {
	if q.fail.Load() {
		return seckill.Errorf(seckill.EBusy, "queue down (test)")
	}
	return q.OrderQueue.Publish(ctx, r)
}

// countingSessions counts the reads of a session store, each taking
// delay, and failing while fails is set.
type countingSessions struct {
	seckill.SessionStore
	n     *atomic.Int64
	delay time.Duration
	fails *atomic.Bool
}

func (c countingSessions) Session(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	c.n.Add(1)
	time.Sleep(c.delay)
	if c.fails != nil && c.fails.Load() {
		return nil, seckill.Errorf(seckill.EBusy, "session store down (test)")
	}
	return c.SessionStore.Session(ctx, tokenHash)
}

// cheap argon2 parameters: the tests check behaviour, not hashing cost.
var cheap = account.Params{Memory: 64, Time: 1, Threads: 1}

func newStack(t testing.TB, opt options) *stack {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	var (
		db stackStore
		q  stackQueue
	)
	if opt.sqlite {
		dir := t.TempDir()
		sdb, err := sqldb.Open(ctx, "sqlite:"+dir+"/seckill.db")
		if err != nil {
			t.Fatal(err)
		}
		js, err := mq.Open(ctx, mq.Config{DataDir: dir, Logger: log})
		if err != nil {
			_ = sdb.Close()
			t.Fatal(err)
		}
		// Registered first, so it runs after the engine and the API are gone.
		t.Cleanup(func() {
			_ = js.Close()
			_ = sdb.Close()
		})
		db, q = sdb, js
	} else {
		mem := inmem.NewQueue()
		t.Cleanup(func() { _ = mem.Close() })
		db, q = inmem.NewStore(), mem
	}
	s := &stack{t: t, db: db, queue: q, gate: inmem.NewGate(), flaky: &flakyQueue{OrderQueue: q}, captchas: inmem.NewCaptchaStore()}
	var err error
	var sessionStore seckill.SessionStore = db
	if opt.lookups != nil {
		sessionStore = countingSessions{SessionStore: db, n: opt.lookups, delay: opt.lookupDelay, fails: opt.lookupFails}
	}
	s.sessions = inmem.NewSessionCache(sessionStore, time.Second, 10000)
	s.accounts, err = account.New(db, s.sessions, account.Config{Params: cheap, Phones: opt.phones, IPs: opt.ips, SessionTTL: opt.sessionTTL, TokenKey: testTokenKey})
	if err != nil {
		t.Fatal(err)
	}
	s.engine, err = checkout.New(checkout.Config{Secret: []byte("0123456789abcdef0123456789abcdef"), BatchWait: 20 * time.Millisecond, PurchaseLimit: opt.purchaseLimit},
		checkout.Backends{Sales: db, Orders: db, Gate: s.gate, Queue: s.flaky, Bus: q, Captchas: s.captchas, CaptchaMaker: captcha.Maker{}}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.engine.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.engine.RunWriter(wctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		s.engine.Close()
	})
	s.api = httpapi.New(httpapi.Config{
		Engine: s.engine, Accounts: s.accounts, Orders: db,
		UserLimit: opt.userLimit, IPLimit: opt.ipLimit, PurchaseIPLimit: opt.purchaseIPLimit, Log: log,
		Ready:   func(ctx context.Context) error { return db.Ping(ctx) },
		Results: s.engine.Results(), WS: opt.ws, WebSockets: opt.wsGauge, TrustedProxies: opt.trusted,
		AllowedOrigins: opt.origins, CookieSecure: opt.cookieSecure,
		DashBus: q, DashShare: opt.dashShare, Reads: opt.reads, Now: opt.now, SignedLookups: opt.signedLookups,
	})
	s.h = s.api
	t.Cleanup(func() { _ = s.api.Close() })
	if _, err := s.accounts.EnsureAdmin(ctx, "19900000000", "admin-password"); err != nil {
		t.Fatal(err)
	}
	s.admin = s.login("19900000000", "admin-password")
	return s
}

// instance returns another instance on the stack's stores, gate and queue,
// as behind a load balancer: an engine of its own whose clock is now, with
// the store's clock as the shared one (the database's in serve), and a
// server of its own sharing dashboard counts every dashShare. It answers
// with the stack's tokens; the stack's writer writes its orders.
func (s *stack) instance(now func() time.Time, dashShare time.Duration) *stack {
	s.t.Helper()
	clock, ok := s.db.(seckill.Clock)
	if !ok {
		s.t.Fatalf("the store %T has no clock", s.db)
	}
	// A locker, so that its Recover takes the shared gate as it is
	// instead of draining and reloading it.
	e, err := checkout.New(checkout.Config{Secret: []byte("0123456789abcdef0123456789abcdef"), Now: now},
		checkout.Backends{Sales: s.db, Orders: s.db, Gate: s.gate, Locker: inmem.NewLocker(), Queue: s.flaky, Bus: s.queue,
			Captchas: s.captchas, CaptchaMaker: captcha.Maker{}, Clock: clock}, slog.New(slog.DiscardHandler))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(e.Close)
	if err := e.Recover(context.Background()); err != nil {
		s.t.Fatal(err)
	}
	api := httpapi.New(httpapi.Config{
		Engine: e, Accounts: s.accounts, Orders: s.db, Now: now, Log: slog.New(slog.DiscardHandler),
		Results: e.Results(), DashBus: s.queue, DashShare: dashShare,
	})
	s.t.Cleanup(func() { _ = api.Close() })
	o := *s
	o.h, o.api, o.engine = api, api, e
	return &o
}

type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// response is a recorded answer.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

func (r response) errCode() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// do sends a request through the handler. body may be nil, a string (sent
// as is) or anything JSON-encodable.
func (s *stack) do(method, path, token string, body any) response {
	return s.doH(method, path, token, body, nil)
}

// doH is do with extra request headers, which replace do's own
// (Content-Type: application/json, and Authorization with a token).
func (s *stack) doH(method, path, token string, body any, header http.Header) response {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// want fails unless the response has the status and, for errors, the code.
func want(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.Code != status || r.errCode() != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.Code, r.errCode(), bytes.TrimSpace(r.Body), status, code)
	}
}

func (s *stack) login(phone, password string) string {
	s.t.Helper()
	r := s.do("POST", "/api/sessions", "", map[string]string{"phone": phone, "password": password})
	want(s.t, r, 200, "")
	return r.json(s.t)["token"].(string)
}

// buyers creates n users with sessions directly in the stores (argon2 per
// user would dominate the test) and returns their tokens and ids.
// testTokenKey signs the stack's session tokens, as serve's key does.
var testTokenKey = []byte("fedcba9876543210fedcba9876543210")

func (s *stack) buyers(n int) ([]string, []int64) {
	s.t.Helper()
	ctx := context.Background()
	hash, err := account.HashPassword("password-1", cheap)
	if err != nil {
		s.t.Fatal(err)
	}
	base := time.Now().UnixNano() % 1_000_000_000
	users := make([]*seckill.User, n)
	for i := range users {
		users[i] = &seckill.User{Phone: fmt.Sprintf("13%09d", (base+int64(i))%1_000_000_000), Nickname: "b", Role: seckill.RoleBuyer, PasswordHash: hash}
	}
	if err := s.db.CreateUsers(ctx, users); err != nil {
		s.t.Fatal(err)
	}
	tokens, ids := make([]string, n), make([]int64, n)
	for i, u := range users {
		tok, _, err := s.accounts.OpenSession(ctx, u)
		if err != nil {
			s.t.Fatal(err)
		}
		tokens[i], ids[i] = tok, u.ID
	}
	return tokens, ids
}

// sale creates a sale through the admin API.
func (s *stack) sale(stock int64, starts, ends time.Time, captcha bool) int64 {
	s.t.Helper()
	r := s.do("POST", "/api/admin/sales", s.admin, map[string]any{
		"name": "phone", "description": "a phone", "price_cents": 99900, "original_price_cents": 199900,
		"stock": stock, "starts_at": starts, "ends_at": ends, "require_captcha": captcha,
	})
	want(s.t, r, 201, "")
	return int64(r.json(s.t)["sale"].(map[string]any)["id"].(float64))
}

func (s *stack) activeSale(stock int64, captcha bool) int64 {
	return s.sale(stock, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), captcha)
}

// path gets the hidden purchase path of a sale without a captcha.
func (s *stack) path(token string, sale int64) string {
	s.t.Helper()
	r := s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), token, nil)
	want(s.t, r, 200, "")
	return r.json(s.t)["path"].(string)
}

func (s *stack) purchase(token string, sale int64, path string) response {
	return s.do("POST", fmt.Sprintf("/api/sales/%d/purchase/%s", sale, path), token, nil)
}

// settle waits until the queue is empty, then reads the admin stats.
func (s *stack) settle(sale int64) checkout.Stats {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := s.queue.Pending(context.Background(), 0)
		if err != nil {
			s.t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("queue still holds %d messages after 30 s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := s.do("GET", fmt.Sprintf("/api/admin/sales/%d/stats", sale), s.admin, nil)
	want(s.t, r, 200, "")
	var st checkout.Stats
	if err := json.Unmarshal(r.Body, &st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// checkInvariants asserts I1, I2 and I4 at rest from SQL and the gate.
func (s *stack) checkInvariants(sale int64, st checkout.Stats) {
	s.t.Helper()
	live := st.Pending + st.Paid
	if live > st.Stock {
		s.t.Errorf("I1: %d live orders > stock %d", live, st.Stock)
	}
	if live+st.SQLStockLeft != st.Stock {
		s.t.Errorf("I4: live %d + stock_left %d != stock %d", live, st.SQLStockLeft, st.Stock)
	}
	if st.GateLeft != st.SQLStockLeft-st.Queued {
		s.t.Errorf("I4: gate %d != sql %d - queued %d", st.GateLeft, st.SQLStockLeft, st.Queued)
	}
	if st.LedgerSum != st.SQLStockLeft {
		s.t.Errorf("ledger sum %d != stock_left %d", st.LedgerSum, st.SQLStockLeft)
	}
	buyers, err := s.db.SaleBuyers(context.Background(), sale)
	if err != nil {
		s.t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, u := range buyers {
		if seen[u] {
			s.t.Errorf("I2: user %d holds two orders", u)
		}
		seen[u] = true
	}
	if int64(len(buyers)) != st.Orders {
		s.t.Errorf("I2: %d distinct buyers for %d orders", len(buyers), st.Orders)
	}
}

// engineCaptchaAnswer reads the answer of a captcha issued to user from
// the store, leaving the captcha in place.
func (s *stack) engineCaptchaAnswer(id string, user int64) (string, error) {
	ctx := context.Background()
	c, err := s.captchas.TakeCaptcha(ctx, id, user)
	if err != nil {
		return "", err
	}
	return c.Answer, s.captchas.PutCaptcha(ctx, id, *c)
}
