package checkout

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/inmem"
	"seckill/internal/testenv"
	"seckill/mq"
	"seckill/rdb"
	"seckill/sqldb"
)

// writerBenchOrders is the size of the sale each iteration sells out: one
// accepted purchase per buyer, every buyer distinct.
const writerBenchOrders = 100_000

// BenchmarkWriterDrain measures the order writer of one instance (one
// RunWriter, batches of up to 2000 as `seckill serve` runs it) turning a 100k-unit
// sale's worth of accepted purchases into orders. Every iteration is one
// fresh sale: the 100,000 reservations are made in the gate off the clock,
// then 256 goroutines publish the OrderRequests, as the purchase handlers
// would after the gate.
//
//   - backlog: everything is published first, then the writer starts;
//     orders/s is 100,000 over the time from its start until the last
//     order is committed: the writer's sustained rate.
//   - live: the writer runs while the requests are published;
//     drain_s is the time from the return of the last publish until the
//     last order is committed (the "within 5 s" of issue 4), and orders/s
//     is 100,000 over the time from the first publish to the last commit.
//
// Backends: sqlite is SQLite + embedded JetStream + the in-process gate
// (`seckill serve` with no flags); postgres is the server in
// SECKILL_TEST_POSTGRES (a fresh schema) with the NATS server in
// SECKILL_TEST_NATS and the Redis gate in SECKILL_TEST_REDIS (each falling
// back to the embedded one when unset, which the name then says).
//
//	go test -run '^$' -bench WriterDrain -benchtime 3x ./checkout/
//	SECKILL_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	SECKILL_TEST_NATS=nats://127.0.0.1:4222 SECKILL_TEST_REDIS=redis://127.0.0.1:6379 \
//	  go test -run '^$' -bench WriterDrain/postgres -benchtime 3x ./checkout/
func BenchmarkWriterDrain(b *testing.B) {
	for _, sqlName := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"backlog", "live"} {
			b.Run(sqlName+"/"+mode, func(b *testing.B) {
				w := newWriterBench(b, sqlName)
				b.Logf("backends: %s", w.desc)
				w.run(b, mode == "live")
			})
		}
	}
}

// writerBench is one set of backends with an engine whose observer counts
// the orders committed.
type writerBench struct {
	desc   string
	db     *sqldb.DB
	queue  *mq.Queue
	gate   seckill.StockGate
	engine *Engine
	obs    *countingObserver
	phases phaseTimes
	users  []int64
	clean  func(saleID int64) // forgets a sale's gate state; nil: nothing to do
}

func newWriterBench(b *testing.B, sqlName string) *writerBench {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	w := &writerBench{obs: &countingObserver{}}

	dbURL := "sqlite:" + dir + "/db"
	qcfg := mq.Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)}
	w.gate = inmem.NewGate()
	w.desc = "sqlite, embedded JetStream, in-process gate"
	if sqlName == "postgres" {
		base := os.Getenv("SECKILL_TEST_POSTGRES")
		if base == "" {
			b.Skip("SECKILL_TEST_POSTGRES not set: skipping the PostgreSQL writer benchmark")
		}
		dbURL = benchSchema(b, base)
		w.desc = "postgres"
		if nu := os.Getenv("SECKILL_TEST_NATS"); nu != "" {
			qcfg.URL, qcfg.Prefix = nu, benchName("WB_")
			b.Cleanup(func() { _ = testenv.DeleteOrderStream(nu, qcfg.Prefix) })
			w.desc += ", NATS " + nu
		} else {
			w.desc += ", embedded JetStream (SECKILL_TEST_NATS not set)"
		}
		if ru := os.Getenv("SECKILL_TEST_REDIS"); ru != "" {
			c, err := rdb.Open(ctx, ru)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			prefix := benchName("wb_") + ":"
			w.gate = rdb.NewGate(c, prefix)
			w.clean = redisForget(b, ru, prefix)
			w.desc += ", Redis gate " + ru
		} else {
			w.desc += ", in-process gate (SECKILL_TEST_REDIS not set)"
		}
	}

	db, err := sqldb.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	q, err := mq.Open(ctx, qcfg)
	if err != nil {
		_ = db.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = q.Close()
		_ = db.Close()
	})
	w.db, w.queue = db, q

	// SQLite's orders reference users; PostgreSQL's do not, but the same
	// buyers keep the two runs alike.
	us := make([]*seckill.User, writerBenchOrders)
	for i := range us {
		us[i] = &seckill.User{Phone: fmt.Sprintf("13%09d", i), Nickname: "b", Role: seckill.RoleBuyer, PasswordHash: "x"}
	}
	if err := db.CreateUsers(ctx, us); err != nil {
		b.Fatal(err)
	}
	w.users = make([]int64, len(us))
	for i, u := range us {
		w.users[i] = u.ID
	}

	// The configuration of `seckill serve` (batches of up to 2000, default wait)
	// unless SECKILL_BENCH_BATCH says another batch size. The writer's
	// backends are timed, to say where its time goes.
	pt := &w.phases
	batch, _ := strconv.Atoi(os.Getenv("SECKILL_BENCH_BATCH"))
	e, err := New(Config{Secret: testSecret, BatchSize: batch, Observer: w.obs},
		Backends{Sales: db, Orders: timedOrders{db, pt}, Gate: timedGate{w.gate, pt}, Queue: timedQueue{q, q, pt},
			Bus: timedBus{q, pt}, Captchas: inmem.NewCaptchaStore()},
		slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	w.engine = e
	return w
}

// run sells out one fresh sale per iteration and reports the averages.
func (w *writerBench) run(b *testing.B, live bool) {
	ctx := context.Background()
	var pubSecs, writeSecs, drainSecs float64
	var batches int64
	var phaseSum [nPhases]int64
	iters := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		sale := &seckill.Sale{Name: "bench", PriceCents: 100, OriginalPriceCents: 200, Stock: writerBenchOrders,
			StartsAt: time.Now().Add(-time.Minute), EndsAt: time.Now().Add(time.Hour)}
		if err := w.db.CreateSale(ctx, sale); err != nil {
			b.Fatal(err)
		}
		reqs := w.reserve(b, sale.ID)
		w.obs.reset(writerBenchOrders)
		w.phases.reset()
		b.StartTimer()

		var pubStart, pubEnd, writeStart time.Time
		var stop func()
		if live {
			writeStart = time.Now()
			stop = w.startWriter()
			pubStart, pubEnd = w.publish(b, reqs)
		} else {
			pubStart, pubEnd = w.publish(b, reqs)
			writeStart = time.Now()
			stop = w.startWriter()
		}
		var done time.Time
		select {
		case <-w.obs.done:
			done = time.Unix(0, w.obs.at.Load())
		case <-time.After(5 * time.Minute):
			stop()
			b.Fatalf("writer committed %d of %d orders in 5 minutes", w.obs.written.Load(), writerBenchOrders)
		}
		stop()
		b.StopTimer()

		st, err := w.db.SaleStats(ctx, sale.ID)
		if err != nil {
			b.Fatal(err)
		}
		if st.Orders != writerBenchOrders || w.obs.failed.Load() != 0 {
			b.Fatalf("sale %d: %d orders in SQL, %d refused; want %d and 0", sale.ID, st.Orders, w.obs.failed.Load(), writerBenchOrders)
		}
		if w.clean != nil {
			w.clean(sale.ID)
		}
		pubSecs += pubEnd.Sub(pubStart).Seconds()
		if live {
			writeSecs += done.Sub(pubStart).Seconds()
		} else {
			writeSecs += done.Sub(writeStart).Seconds()
		}
		drainSecs += max(done.Sub(pubEnd), 0).Seconds()
		batches += w.obs.batches.Load()
		for i := range phaseSum {
			phaseSum[i] += w.phases.ns[i].Load()
		}
		iters++
		b.StartTimer()
	}
	n := float64(iters)
	b.ReportMetric(writerBenchOrders*n/writeSecs, "orders/s")
	b.ReportMetric(writerBenchOrders*n/pubSecs, "published/s")
	b.ReportMetric(drainSecs/n, "drain_s")
	b.ReportMetric(float64(writerBenchOrders)*n/float64(batches), "orders/batch")
	// Wall time per batch of each step of WriteBatch; Fetch includes the
	// wait for messages when the writer is ahead of the publishers.
	for i, name := range phaseNames {
		b.ReportMetric(float64(phaseSum[i])/1e6/float64(batches), name+"_ms/batch")
	}
}

// The steps of the writer's WriteBatch, timed by the wrappers below.
const (
	phFetch = iota
	phClaim
	phSQL
	phAck
	phSettle
	phResults
	nPhases
)

var phaseNames = [nPhases]string{"fetch", "claim", "sql", "ack", "settle", "results"}

// phaseTimes sums the wall time spent in each step.
type phaseTimes struct{ ns [nPhases]atomic.Int64 }

func (p *phaseTimes) reset() {
	for i := range p.ns {
		p.ns[i].Store(0)
	}
}

func (p *phaseTimes) since(ph int, t time.Time) { p.ns[ph].Add(int64(time.Since(t))) }

type timedQueue struct {
	seckill.OrderQueue
	acker seckill.BatchAcker
	pt    *phaseTimes
}

func (q timedQueue) Fetch(ctx context.Context, max int, wait time.Duration) ([]seckill.Delivery, error) {
	defer q.pt.since(phFetch, time.Now())
	return q.OrderQueue.Fetch(ctx, max, wait)
}

func (q timedQueue) AckAll(ctx context.Context, ds []seckill.Delivery) error {
	defer q.pt.since(phAck, time.Now())
	return q.acker.AckAll(ctx, ds)
}

type timedOrders struct {
	seckill.OrderStore
	pt *phaseTimes
}

func (o timedOrders) WriteOrders(ctx context.Context, reqs []seckill.OrderRequest, payBy time.Time) ([]seckill.OrderResult, error) {
	defer o.pt.since(phSQL, time.Now())
	return o.OrderStore.WriteOrders(ctx, reqs, payBy)
}

type timedGate struct {
	seckill.StockGate
	pt *phaseTimes
}

func (g timedGate) Claim(ctx context.Context, saleID int64, claims []seckill.Settled) ([]bool, error) {
	defer g.pt.since(phClaim, time.Now())
	return g.StockGate.Claim(ctx, saleID, claims)
}

func (g timedGate) Settle(ctx context.Context, saleID int64, settled []seckill.Settled) error {
	defer g.pt.since(phSettle, time.Now())
	return g.StockGate.Settle(ctx, saleID, settled)
}

type timedBus struct {
	seckill.ResultBus
	pt *phaseTimes
}

func (r timedBus) PublishResults(ctx context.Context, rs []seckill.OrderResult) error {
	defer r.pt.since(phResults, time.Now())
	return r.ResultBus.PublishResults(ctx, rs)
}

// reserve takes one unit of the sale for every buyer in the gate, as the
// purchase handlers do before publishing, and returns the requests.
func (w *writerBench) reserve(b *testing.B, saleID int64) []seckill.OrderRequest {
	b.Helper()
	ctx := context.Background()
	if ok, err := w.gate.Load(ctx, saleID, seckill.GateState(writerBenchOrders, nil)); err != nil || !ok {
		b.Fatalf("load sale %d: %v, %v", saleID, ok, err)
	}
	reqs := make([]seckill.OrderRequest, len(w.users))
	now := time.Now().UTC()
	for i, u := range w.users {
		reqs[i] = seckill.OrderRequest{SaleID: saleID, UserID: u, Ticket: newTicket(), PriceCents: 100, At: now}
	}
	parallel(b, 64, len(reqs), func(i int) error {
		r := reqs[i]
		res, err := w.gate.Reserve(ctx, seckill.Reservation{SaleID: r.SaleID, UserID: r.UserID, Ticket: r.Ticket, At: r.At})
		if err == nil && res != seckill.Reserved {
			err = fmt.Errorf("gate answered %v for user %d", res, r.UserID)
		}
		return err
	})
	return reqs
}

// publish puts reqs on the queue from 256 goroutines and returns when the
// first publish began and the last one returned.
func (w *writerBench) publish(b *testing.B, reqs []seckill.OrderRequest) (start, end time.Time) {
	b.Helper()
	start = time.Now()
	parallel(b, 256, len(reqs), func(i int) error { return w.queue.Publish(context.Background(), reqs[i]) })
	return start, time.Now()
}

// startWriter runs the engine's writers (SECKILL_BENCH_WRITERS of them,
// default 1) until stop is called.
func (w *writerBench) startWriter() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	n, _ := strconv.Atoi(os.Getenv("SECKILL_BENCH_WRITERS"))
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() { w.engine.RunWriter(ctx) })
	}
	return func() { cancel(); wg.Wait() }
}

// parallel calls do(0..n-1) from workers goroutines, failing tb on the
// first error.
func parallel(tb testing.TB, workers, n int, do func(i int) error) {
	tb.Helper()
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && firstErr.Load() == nil; i = int(next.Add(1) - 1) {
				if err := do(i); err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		tb.Fatal(*e)
	}
}

// countingObserver counts the writer's committed orders and notes when the
// count reaches its target.
type countingObserver struct {
	written, failed, batches atomic.Int64
	target                   int64
	at                       atomic.Int64 // unix ns the target was reached
	done                     chan struct{}
}

// reset starts a new count; call it with no writer running.
func (o *countingObserver) reset(target int64) {
	o.written.Store(0)
	o.failed.Store(0)
	o.batches.Store(0)
	o.at.Store(0)
	o.target = target
	o.done = make(chan struct{})
}

func (*countingObserver) GateResult(seckill.GateResult, error) {}

func (o *countingObserver) BatchWritten(n, failed int, _ time.Duration, err error) {
	if err != nil {
		return // nothing committed; the batch is redelivered
	}
	o.batches.Add(1)
	o.failed.Add(int64(failed))
	if o.written.Add(int64(n)) >= o.target && o.at.CompareAndSwap(0, time.Now().UnixNano()) {
		close(o.done)
	}
}

func benchName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// benchSchema creates a schema on the PostgreSQL server of base, drops it
// when the benchmark ends, and returns a URL whose search_path is it.
func benchSchema(b *testing.B, base string) string {
	b.Helper()
	name := benchName("wb_")
	db, err := sql.Open("pgx", base)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + name); err != nil {
		b.Fatalf("SECKILL_TEST_POSTGRES: %v", err)
	}
	b.Cleanup(func() {
		if db, err := sql.Open("pgx", base); err == nil {
			_, _ = db.Exec("DROP SCHEMA " + name + " CASCADE")
			_ = db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// redisForget returns a function that deletes a sale's gate keys under
// prefix (see the key layout of package rdb), best effort.
func redisForget(b *testing.B, redisURL, prefix string) func(saleID int64) {
	b.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opt)
	b.Cleanup(func() { _ = c.Close() })
	return func(saleID int64) {
		tag := fmt.Sprintf("%s{sale:%d}:", prefix, saleID)
		_ = c.Del(context.Background(), tag+"stock", tag+"buyers", tag+"resv").Err()
	}
}
