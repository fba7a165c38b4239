package checkout

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/captcha"
	"seckill/inmem"
	"seckill/internal/testenv"
	"seckill/mq"
	"seckill/rdb"
	"seckill/sqldb"
)

// testSecret is long enough for New.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// envStore is what the tests ask of the SQL side: the stores the engine
// uses and bulk user creation.
type envStore interface {
	seckill.SaleStore
	seckill.OrderStore
	CreateUsers(ctx context.Context, users []*seckill.User) error
}

// envQueue is the order queue, batch acker and result bus of an env.
type envQueue interface {
	seckill.OrderQueue
	seckill.BatchAcker
	seckill.ResultBus
}

// env is one set of backends for the engine: by default the in-memory
// store, queue and gate of package inmem (each test runs in milliseconds,
// no server); withSQLite, withPostgres and withMySQL put it on that SQL
// store with embedded JetStream, withRedisGate on the shared Redis gate.
type env struct {
	t        *testing.T
	db       envStore
	queue    envQueue
	gate     seckill.StockGate
	gateNow  *offsetClock   // the in-process gate's clock, moved on by tests; nil with withRedisGate
	locker   seckill.Locker // nil but with a shared gate
	captchas *inmem.CaptchaStore
	log      *slog.Logger
	phones   int // users created so far, for unique phone numbers
}

// envOption chooses the backends of newEnv.
type envOption func(t *testing.T, v *env)

// withSQLite puts the env on SQLite and embedded JetStream in a data dir of
// the test's own, for the tests whose point is how a real backend behaves
// (a transaction's snapshot, a server's redelivery).
func withSQLite(t *testing.T, v *env) {
	t.Helper()
	withSQL(t, v, "sqlite:"+t.TempDir()+"/db")
}

// withPostgres puts the env on a fresh schema of the PostgreSQL server in
// SECKILL_TEST_POSTGRES and embedded JetStream; the test is skipped
// without the variable (failed in CI).
func withPostgres(t *testing.T, v *env) {
	t.Helper()
	withSQL(t, v, testenv.FreshDatabase(t, testenv.URL(t, "SECKILL_TEST_POSTGRES")))
}

// withMySQL puts the env on a fresh database of the MySQL server in
// SECKILL_TEST_MYSQL and embedded JetStream; the test is skipped without
// the variable (failed in CI).
func withMySQL(t *testing.T, v *env) {
	t.Helper()
	withSQL(t, v, testenv.FreshDatabase(t, testenv.URL(t, "SECKILL_TEST_MYSQL")))
}

// withSQL puts the env on the SQL store at dbURL and embedded JetStream in
// a data dir of the test's own.
func withSQL(t *testing.T, v *env, dbURL string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqldb.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q, err := mq.Open(ctx, mq.Config{DataDir: dir, Logger: v.log})
	if err != nil {
		_ = db.Close()
		t.Fatal(err)
	}
	// Registered first, so it runs after the engines and writers are gone.
	t.Cleanup(func() {
		_ = q.Close()
		_ = db.Close()
	})
	v.db, v.queue = db, q
}

// withRedisGate puts the env's gate on the Redis server in
// SECKILL_TEST_REDIS, under a key prefix of the test's own (its keys are
// deleted when it ends), with the Redis locker a shared gate needs; the
// test is skipped without the variable (failed in CI). The gate keeps the
// server's time: v.gateNow is nil.
func withRedisGate(t *testing.T, v *env) {
	t.Helper()
	c, prefix := testRedis(t)
	v.gate, v.locker, v.gateNow = rdb.NewGate(c, prefix), rdb.NewLocker(c, prefix), nil
}

// testRedis opens the Redis server in SECKILL_TEST_REDIS (the test is
// skipped without it, failed in CI) and returns it with a key prefix of
// the test's own, whose keys are deleted when the test ends.
func testRedis(t *testing.T) (*rdb.Client, string) {
	t.Helper()
	c, err := rdb.Open(context.Background(), testenv.URL(t, "SECKILL_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("ckt_") + ":"
	t.Cleanup(func() {
		defer c.Close()
		if err := deleteKeys(context.Background(), c.Redis(), prefix); err != nil {
			t.Errorf("deleting the test's keys %s*: %v", prefix, err)
		}
	})
	return c, prefix
}

// deleteKeys deletes the keys starting with prefix (no glob characters in
// it) from a single Redis server.
func deleteKeys(ctx context.Context, r redis.UniversalClient, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := r.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := r.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// backendCell is one cell of the matrix of stores and gates that the
// lifecycle tests of issue 11 run on.
type backendCell struct {
	name string // store/gate
	opts []envOption
}

// backendMatrix is every store (in-memory, SQLite, PostgreSQL, MySQL) with
// every gate (in-process, Redis). The cells on a server skip without its
// variable, and fail in CI.
func backendMatrix() []backendCell {
	stores := []struct {
		name string
		opt  envOption
	}{{"inmem", nil}, {"sqlite", withSQLite}, {"postgres", withPostgres}, {"mysql", withMySQL}}
	gates := []struct {
		name string
		opt  envOption
	}{{"inmem", nil}, {"redis", withRedisGate}}
	var cells []backendCell
	for _, s := range stores {
		for _, g := range gates {
			c := backendCell{name: s.name + "/" + g.name}
			for _, o := range []envOption{s.opt, g.opt} {
				if o != nil {
					c.opts = append(c.opts, o)
				}
			}
			cells = append(cells, c)
		}
	}
	return cells
}

// forEachBackend runs fn as a subtest on a fresh env of every cell of
// backendMatrix.
func forEachBackend(t *testing.T, fn func(t *testing.T, cell string, v *env)) {
	for _, c := range backendMatrix() {
		t.Run(c.name, func(t *testing.T) { fn(t, c.name, newEnv(t, c.opts...)) })
	}
}

// newEnv returns a fresh env, on the in-memory backends unless an option
// says otherwise.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	gateNow := &offsetClock{}
	v := &env{t: t, gate: inmem.NewGateClock(gateNow.Now), gateNow: gateNow, captchas: inmem.NewCaptchaStore(), log: log}
	for _, o := range opts {
		o(t, v)
	}
	if v.db == nil {
		q := inmem.NewQueue()
		t.Cleanup(func() { _ = q.Close() })
		v.db, v.queue = inmem.NewStore(), q
	}
	return v
}

// testWriter sends log lines to t.Log; it is only used with -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// backends returns the backends of the env.
func (v *env) backends() Backends {
	return Backends{Sales: v.db, Orders: v.db, Gate: v.gate, Locker: v.locker, Queue: v.queue, Bus: v.queue, Captchas: v.captchas, CaptchaMaker: captcha.Maker{}}
}

// engine returns a new engine on b (the env's backends when b is nil), not
// yet recovered. A zero cfg.Secret takes testSecret; BatchWait defaults to a
// short wait so writers and drains stay quick.
func (v *env) engine(cfg Config, b *Backends) *Engine {
	v.t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = 20 * time.Millisecond
	}
	bk := v.backends()
	if b != nil {
		bk = *b
	}
	e, err := New(cfg, bk, v.log)
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(e.Close)
	return e
}

// recovered returns a new engine that has run Recover, so it admits.
func (v *env) recovered(cfg Config, b *Backends) *Engine {
	v.t.Helper()
	e := v.engine(cfg, b)
	if err := e.Recover(context.Background()); err != nil {
		v.t.Fatalf("recover: %v", err)
	}
	if !e.Ready() {
		v.t.Fatal("engine not ready after Recover")
	}
	return e
}

// users provisions n buyers in SQL (orders need them) and returns their ids.
func (v *env) users(n int) []int64 {
	v.t.Helper()
	us := make([]*seckill.User, n)
	for i := range us {
		us[i] = &seckill.User{Phone: fmt.Sprintf("13%09d", v.phones), Nickname: "b", Role: seckill.RoleBuyer, PasswordHash: "x"}
		v.phones++
	}
	if err := v.db.CreateUsers(context.Background(), us); err != nil {
		v.t.Fatal(err)
	}
	ids := make([]int64, n)
	for i, u := range us {
		ids[i] = u.ID
	}
	return ids
}

// sale stores a sale open from starts to ends in SQL only (the gate is left
// alone: Recover or the test loads it).
func (v *env) sale(stock int64, starts, ends time.Time) *seckill.Sale {
	v.t.Helper()
	s := &seckill.Sale{
		Name: "phone", PriceCents: 99900, OriginalPriceCents: 199900, Stock: stock,
		StartsAt: starts.UTC(), EndsAt: ends.UTC(),
	}
	if err := v.db.CreateSale(context.Background(), s); err != nil {
		v.t.Fatal(err)
	}
	return s
}

// openSale stores a sale open from a minute ago for an hour, by the wall clock.
func (v *env) openSale(stock int64) *seckill.Sale {
	v.t.Helper()
	return v.sale(stock, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// publish puts requests straight on the queue, as Purchase would after the
// gate, with no writer running.
func (v *env) publish(saleID int64, users ...int64) {
	v.t.Helper()
	for _, u := range users {
		v.publishTicket(saleID, u, newTicket())
	}
}

// publishTicket puts one request with the given ticket on the queue: the
// request of a reservation the test made at the gate.
func (v *env) publishTicket(saleID, userID int64, ticket string) {
	v.t.Helper()
	r := seckill.OrderRequest{SaleID: saleID, UserID: userID, Ticket: ticket, PriceCents: 99900, At: time.Now().UTC()}
	if err := v.queue.Publish(context.Background(), r); err != nil {
		v.t.Fatalf("publish %d:%d: %v", saleID, userID, err)
	}
}

// writeOrders writes orders for users straight into SQL, bypassing gate and
// queue, and fails unless every one succeeds.
func (v *env) writeOrders(saleID int64, users ...int64) {
	v.t.Helper()
	reqs := make([]seckill.OrderRequest, len(users))
	for i, u := range users {
		reqs[i] = seckill.OrderRequest{SaleID: saleID, UserID: u, Ticket: newTicket(), PriceCents: 99900, At: time.Now().UTC()}
	}
	rs, err := v.db.WriteOrders(context.Background(), reqs, time.Now().Add(10*time.Minute))
	if err != nil {
		v.t.Fatal(err)
	}
	for _, r := range rs {
		if r.Status != seckill.ResultSuccess {
			v.t.Fatalf("write order %d:%d: %s %s", r.SaleID, r.UserID, r.Status, r.Reason)
		}
	}
}

func (v *env) pending(saleID int64) int64 {
	v.t.Helper()
	n, err := v.queue.Pending(context.Background(), saleID)
	if err != nil {
		v.t.Fatal(err)
	}
	return n
}

func (v *env) stats(saleID int64) *seckill.SaleStats {
	v.t.Helper()
	st, err := v.db.SaleStats(context.Background(), saleID)
	if err != nil {
		v.t.Fatal(err)
	}
	return st
}

// gateLeft returns the gate's units left of a sale, failing if not loaded.
func (v *env) gateLeft(saleID int64) int64 {
	v.t.Helper()
	left, loaded, err := v.gate.Left(context.Background(), saleID)
	if err != nil {
		v.t.Fatal(err)
	}
	if !loaded {
		v.t.Fatalf("sale %d not loaded in the gate", saleID)
	}
	return left
}

// buyers returns the sale's buyers in SQL as a set, failing on a user who
// holds two orders (I2).
func (v *env) buyers(saleID int64) map[int64]bool {
	v.t.Helper()
	ids, err := v.db.SaleBuyers(context.Background(), saleID)
	if err != nil {
		v.t.Fatal(err)
	}
	set := make(map[int64]bool, len(ids))
	for _, u := range ids {
		if set[u] {
			v.t.Errorf("I2: user %d holds two orders in sale %d", u, saleID)
		}
		set[u] = true
	}
	return set
}

// checkAtRest asserts I1, I2 and I4 for a sale with an empty queue.
func (v *env) checkAtRest(saleID int64) *seckill.SaleStats {
	v.t.Helper()
	if n := v.pending(saleID); n != 0 {
		v.t.Fatalf("queue holds %d requests of sale %d; not at rest", n, saleID)
	}
	st := v.stats(saleID)
	live := st.Pending + st.Paid
	if live > st.Stock {
		v.t.Errorf("I1: %d live orders > stock %d", live, st.Stock)
	}
	if live+st.SQLStockLeft != st.Stock {
		v.t.Errorf("I4: live %d + stock_left %d != stock %d", live, st.SQLStockLeft, st.Stock)
	}
	if st.LedgerSum != st.SQLStockLeft {
		v.t.Errorf("ledger sum %d != stock_left %d", st.LedgerSum, st.SQLStockLeft)
	}
	if got := v.gateLeft(saleID); got != st.SQLStockLeft {
		v.t.Errorf("I4: gate left %d != SQL stock_left %d with nothing queued", got, st.SQLStockLeft)
	}
	if n := int64(len(v.buyers(saleID))); n != st.Orders {
		v.t.Errorf("I2: %d distinct buyers for %d orders", n, st.Orders)
	}
	return st
}

// setGate puts a sale into the gate with the state given, replacing what
// the gate holds of it (as a gate that lost it and was loaded again).
func (v *env) setGate(saleID, left int64, buyers ...int64) {
	v.t.Helper()
	ctx := context.Background()
	if err := v.gate.Forget(ctx, saleID); err != nil {
		v.t.Fatal(err)
	}
	if ok, err := v.gate.Load(ctx, saleID, seckill.GateState(left, buyers)); err != nil || !ok {
		v.t.Fatalf("load sale %d: %v, %v", saleID, ok, err)
	}
}

// reserve asks the gate directly.
func (v *env) reserve(saleID, userID int64) seckill.GateResult {
	v.t.Helper()
	r, err := v.gate.Reserve(context.Background(), seckill.Reservation{SaleID: saleID, UserID: userID, Ticket: newTicket(), At: time.Now()})
	if err != nil {
		v.t.Fatal(err)
	}
	return r
}

// runWriter runs e's order writer until the test ends or stop is called.
func runWriter(t *testing.T, e *Engine) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.RunWriter(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// drain writes everything queued into SQL, within a bound.
func drain(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// waitFor polls cond until it holds, failing after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// result reads the engine's answer for a user, failing on error.
func result(t *testing.T, e *Engine, userID, saleID int64) seckill.Result {
	t.Helper()
	r, err := e.Result(context.Background(), userID, saleID)
	if err != nil {
		t.Fatalf("result of user %d in sale %d: %v", userID, saleID, err)
	}
	return r
}

// waitResult waits until the user's result has the given status.
func waitResult(t *testing.T, e *Engine, userID, saleID int64, status string) seckill.Result {
	t.Helper()
	var r seckill.Result
	waitFor(t, fmt.Sprintf("result %q of user %d in sale %d", status, userID, saleID), func() bool {
		r = result(t, e, userID, saleID)
		return r.Status == status
	})
	return r
}

// path issues the user's purchase path (the sale needs no captcha).
func path(t *testing.T, e *Engine, userID, saleID int64) string {
	t.Helper()
	p, _, err := e.IssuePath(context.Background(), userID, saleID, "", "")
	if err != nil {
		t.Fatalf("issue path of user %d in sale %d: %v", userID, saleID, err)
	}
	return p
}

// wantCode fails unless err carries the application error code (""= nil).
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := seckill.ErrorCode(err); got != code {
		t.Fatalf("got error %v (code %q), want code %q", err, got, code)
	}
}

// collectResults subscribes to the result bus and records what it carries.
type collectResults struct {
	mu sync.Mutex
	rs []seckill.OrderResult
}

func subscribeResults(t *testing.T, bus seckill.ResultBus) *collectResults {
	t.Helper()
	c := &collectResults{}
	cancel, err := bus.SubscribeResults(func(r seckill.OrderResult) {
		c.mu.Lock()
		c.rs = append(c.rs, r)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return c
}

// waitStatus waits for the order_status push of o moving to status,
// addressed to its buyer.
func (c *collectResults) waitStatus(t *testing.T, o *seckill.Order, status seckill.OrderStatus) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the order_status push of order %d, %s", o.ID, status), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range c.rs {
			if r.IsOrderStatus() && r.OrderID == o.ID && r.OrderStatus == status && r.UserID == o.UserID {
				return true
			}
		}
		return false
	})
}

// find returns the first result for (sale, user).
func (c *collectResults) find(saleID, userID int64) (seckill.OrderResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.rs {
		if r.SaleID == saleID && r.UserID == userID {
			return r, true
		}
	}
	return seckill.OrderResult{}, false
}

// fakeClock is an injected Config.Now that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) Now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// offsetClock is the wall clock plus an offset that tests move forward, to
// age what was stamped before.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }
