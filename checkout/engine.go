// Package checkout is the engine of seckill: admission of purchases (sale
// window, hidden path, captcha, local sold-out flag, in-flight cap), the
// atomic stock gate, the durable order queue, the batched order writer, the
// result store, and recovery after a crash. It talks to backends only
// through the interfaces of package seckill.
//
// One file per stage of a purchase:
//
//	engine.go     Config, Backends, New/Close, the sale cache, CreateSale, Stats
//	admission.go  captchas, the hidden path, CheckPurchase/Admit: gate and publish, tickets
//	writer.go     the order writer: queue → SQL in batches, settle, ack, publish results
//	results.go    where a purchase stands: the result map, Result, lost-result rechecks
//	recover.go    start-up and gate rebuilds: Recover, RebuildGate, loading a sale's gate
//	reconcile.go  the reconciler's rounds: lost reservations, ended sales
//	lifecycle.go  after the order: cancel, the deadline sweeper, units back to the gate
//	payments.go   paying orders: the provider, its notifications, refunds
//	observer.go   what the engine tells metrics
//	clock.go      the shared clock: its readings, the skew, SaleTime
package checkout

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"seckill"
	"seckill/payment"
)

// MinSecret is the shortest Config.Secret New takes, in bytes.
const MinSecret = 16

// Config tunes the engine; zero values take the defaults.
type Config struct {
	Secret         []byte        // HMAC key of purchase paths; required, same on every instance
	PathTTL        time.Duration // a path is valid for one to two of these (give or take the clock skew checkPath allows); default 5m
	CaptchaTTL     time.Duration // default 2m
	CaptchaLead    time.Duration // captchas are issued from this long before the start, not earlier (no stockpiling); default 30s
	CaptchaEvery   time.Duration // how often CaptchaLimit lets one more captcha through once a user's are used up: the Retry-After of its refusal (0: 1 s)
	PayWindow      time.Duration // unpaid orders' deadline after creation; default 10m
	InFlight       int           // purchases between gate and queue ack at once; default 4096
	AdmitFactor    float64       // a sale admits at most this × its stock purchases a second to the gate, per instance (admission.go); 0: no cap
	PublishTimeout time.Duration // default 3s
	BatchSize      int           // order writer batch; default 2000
	BatchWait      time.Duration // writer waits this long for a first message; default 200ms
	SaleCacheTTL   time.Duration // how stale the cached catalogue may be; default 1s
	// ResultRecheck is how long a purchase may stay queued before its
	// result is looked up in SQL (a result message may be lost); default
	// 5s. A look-up that finds nothing is repeated after as long again.
	ResultRecheck time.Duration
	Now           func() time.Time
	Observer      Observer // told of gate results and writer batches (metrics); nil: nobody
	// PurchaseLimit is each user's purchase bucket in each sale, looked at
	// by the gate in the step that reserves (seckill.Reservation.Limit), so
	// a purchase costs one call of a shared gate: the presses of a user
	// that end without a unit (refused by the gate, or reserved and then
	// released when the publish failed) come at most this fast in one
	// sale, wherever they land. The press that reserves takes no token (a
	// user reserves once), nor do presses the engine answers without the
	// gate (sold out, or a buyer it knows, admission.go). Zero: no limit.
	PurchaseLimit seckill.Bucket
}

func (c *Config) defaults() {
	if c.PathTTL <= 0 {
		c.PathTTL = 5 * time.Minute
	}
	if c.CaptchaTTL <= 0 {
		c.CaptchaTTL = 2 * time.Minute
	}
	if c.CaptchaLead <= 0 {
		c.CaptchaLead = 30 * time.Second
	}
	if c.PayWindow <= 0 {
		c.PayWindow = 10 * time.Minute
	}
	if c.InFlight <= 0 {
		c.InFlight = 4096
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 3 * time.Second
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 2000
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 200 * time.Millisecond
	}
	if c.SaleCacheTTL <= 0 {
		c.SaleCacheTTL = time.Second
	}
	if c.ResultRecheck <= 0 {
		c.ResultRecheck = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

// Backends are what the engine runs on.
type Backends struct {
	Sales    seckill.SaleStore
	Orders   seckill.OrderStore
	Gate     seckill.StockGate
	Queue    seckill.OrderQueue
	Bus      seckill.ResultBus
	Captchas seckill.CaptchaStore
	// CaptchaMaker makes the captchas' questions and pictures and checks
	// answers (package captcha's Maker in serve); nil: captchas cannot be
	// issued or checked (EInternal), sales without one still sell.
	CaptchaMaker seckill.CaptchaMaker
	// CaptchaLimit caps the captchas one user gets for one sale (key
	// "sale:user"), shared by every instance when the limiter is: a bucket
	// with a burst of a few dozen and a slow refill. nil: no cap.
	CaptchaLimit seckill.Limiter
	// Locker elects the instance that rebuilds a gate that lost its state;
	// nil for a gate that cannot lose it apart from the process.
	Locker seckill.Locker
	// Payments is the payment provider orders are paid through; nil: no
	// order can be paid (Pay answers ENotPayable) and nothing is refunded.
	Payments payment.Provider
	// Clock is the clock instances share for pay deadlines (the
	// database's); nil: Config.Now, right for one process only.
	Clock seckill.Clock
}

// Engine admits purchases and turns them into orders.
type Engine struct {
	cfg Config
	b   Backends
	log *slog.Logger

	ready    atomic.Bool
	inflight chan struct{}
	macs     sync.Pool // HMAC-SHA256 keyed with cfg.Secret, for the hidden paths (admission.go)
	admits   sync.Map  // sale id → *rate.Limiter of AdmitFactor (admission.go)

	saleMu    sync.Mutex
	saleCache map[int64]cachedSale
	// saleReads holds the read under way of each cached sale found stale
	// (loadSale), which every request finding it so shares.
	saleReads map[int64]*saleRead
	saleGen   uint64 // counts the copies put in saleCache
	// noSales holds the reads of ids not cached and at most newest: the
	// answer of the last one is "none" (a gap, or an insert not yet
	// committed) as long as the id stays out of the cache.
	noSales map[int64]*freshRead
	// newest is the highest sale id seen (listed from SQL, or created
	// here). An id above it is no sale unless a listing of the catalogue
	// that started after the request arrived shows it (listing).
	newest  atomic.Int64
	listing freshRead

	born         time.Time // the engine's own clock at New: uptime counts from it
	soldOut      sync.Map  // sale id → uptime (time.Duration) when the gate said sold out
	viewLefts    sync.Map  // sale id → *leftReading: units left for the sale's views (viewLeft)
	buyers       sync.Map  // sale id → *knownBuyers: who this instance knows holds a unit (buyers.go)
	seedMu       sync.Mutex
	seeds        map[int64]buyerSeed // sale id → how far reading its buyers got (buyers.go)
	seedGen      uint64              // gaps in what this instance heard so far (buyersGap)
	reading      sync.Map            // sale id → struct{}: its buyers are being read (readingBuyers)
	readsRunning atomic.Int32        // how many such reads are under way

	results     *resultMap
	unsubscribe func()
	opened      openedPayments // payments Pay opened lately, for a buyer who asks again (payments.go)

	// local are the listeners subscribed through Results, by id.
	localMu  sync.Mutex
	localSeq int64
	local    map[int64]func(seckill.OrderResult)

	staleWarn  atomic.Int64 // cached sales served while SQL failed
	clockSkew  atomic.Int64 // shared clock minus the engine's, in ns, as skew estimates it (clock.go)
	skew       skewEstimate
	forgotten  sync.Map // sale id → struct{}: ended sales this process dropped from the gate
	rebuilding atomic.Bool
	rebuilds   rebuildCounter
	rebuildMu  sync.Mutex
	// rebuildAfter is when maybeRebuild may start a rebuild again after
	// rebuildFails failed in a row (real monotonic time).
	rebuildAfter time.Time
	rebuildFails int

	// staleSeen is when Reconcile first found each reservation it has not
	// released yet stale, per sale, on this process's monotonic clock;
	// staleWait is how long one must stay stale after that before it is
	// released (reconcile.go). The reconciler is one goroutine; the mutex
	// is for tests that reconcile from several.
	staleMu   sync.Mutex
	staleSeen map[int64]map[staleKey]time.Time
	staleWait time.Duration

	relay       relayState     // rounds of RelayReturns (relay.go)
	refundAfter atomic.Int64   // payment id after which the next RetryRefunds round reads (payments.go)
	refundStuck refundStuck    // the payment whose refund failed the last rounds in a row (payments.go)
	refused     refusedRefunds // refunds the provider refused, and when each is asked again (payments.go)
	// askDownUntil is when (unix ns) the sweeper may ask the provider
	// again after a question failed (askTrade).
	askDownUntil atomic.Int64

	closerOnce sync.Once
	closeQ     chan *seckill.Order // swept orders whose payments the closer closes (closeLater)
	stopOnce   sync.Once
	stopped    chan struct{} // closed by Close
}

// cachedSale is a sale as read at fetched (the engine's clock, e.now),
// the how-many-th copy cached it is (gen), and when a read of it last
// failed.
type cachedSale struct {
	sale    *seckill.Sale
	fetched time.Time
	gen     uint64
	failed  time.Time
}

// saleRead is one read of a cached sale found stale: done is closed when
// sale or err is set.
type saleRead struct {
	done chan struct{}
	sale *seckill.Sale
	err  error
}

// New returns an engine that admits nothing until Recover has run.
func New(cfg Config, b Backends, log *slog.Logger) (*Engine, error) {
	cfg.defaults()
	if len(cfg.Secret) < MinSecret {
		return nil, fmt.Errorf("checkout: secret must be at least %d bytes", MinSecret)
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{
		cfg: cfg, b: b, log: log,
		inflight:  make(chan struct{}, cfg.InFlight),
		saleCache: make(map[int64]cachedSale),
		saleReads: make(map[int64]*saleRead),
		noSales:   make(map[int64]*freshRead),
		staleSeen: make(map[int64]map[staleKey]time.Time),
		staleWait: cfg.PublishTimeout,
		results:   newResultMap(),
		seeds:     make(map[int64]buyerSeed),
		stopped:   make(chan struct{}),
	}
	e.relay.life, e.relay.endLife = context.WithCancel(context.Background())
	e.born = cfg.Now()
	e.results.now = cfg.Now
	e.macs.New = e.newMAC
	cancel, err := b.Bus.SubscribeResults(e.resultArrived)
	if err != nil {
		return nil, fmt.Errorf("subscribe results: %w", err)
	}
	e.unsubscribe = cancel
	// With a shared gate other instances admit too: their buyers are
	// learned as their requests are queued (requestQueued).
	if feed, ok := b.Queue.(seckill.RequestFeed); ok && b.Locker != nil {
		stop, err := feed.SubscribeRequests(e.requestQueued, e.buyersGap)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("subscribe requests: %w", err)
		}
		e.unsubscribe = func() { stop(); cancel() }
	}
	return e, nil
}

// Close stops listening for results and closing the payments of swept
// orders, and ends the relay rounds under way, waiting for them: the
// stores they use may close next.
func (e *Engine) Close() {
	e.stopOnce.Do(func() { close(e.stopped) })
	e.ready.Store(false)
	e.stopRelays()
	if e.unsubscribe != nil {
		e.unsubscribe()
	}
}

// Ready reports whether the gate is loaded and purchases are admitted.
func (e *Engine) Ready() bool { return e.ready.Load() }

// StopAdmitting makes every purchase answer EBusy from now on (shutdown).
func (e *Engine) StopAdmitting() { e.ready.Store(false) }

func (e *Engine) now() time.Time { return e.cfg.Now() }

// uptime is the engine's own clock as the time since New, what its local
// answers (the sold-out flag, buyers learned from the gate) age on. With
// time.Now (the default) it is read on the monotonic clock: no step of
// this host's wall clock, nor of the shared one (SaleTime), moves it.
func (e *Engine) uptime() time.Duration { return e.now().Sub(e.born) }

// Sale returns the sale from a cache at most SaleCacheTTL old, for a
// request. ENotFound if there is none. Its answer is never older than the
// request: a sale whose creation was answered before the request arrived
// is found, on any instance. Yet ids that do not exist cost no SQL read
// each: an id above every sale seen waits for the next listing of the
// catalogue, and an id SQL said is none (a gap, or an insert not yet
// committed) for the next read of that id; such reads start after the
// request arrived, at most one per relistEvery, and every request waiting
// shares it. The order writer does not take these ways (loadSale).
func (e *Engine) Sale(ctx context.Context, id int64) (*seckill.Sale, error) {
	if id <= 0 {
		return nil, noSale(id) // never an id: not a read, nor a cache entry
	}
	e.saleMu.Lock()
	c, cached := e.saleCache[id]
	e.saleMu.Unlock()
	if cached {
		if e.now().Sub(c.fetched) < e.cfg.SaleCacheTTL {
			return c.sale, nil // a purchase's usual path: one look at the cache
		}
		return e.loadSale(ctx, id) // a sale we know: read it again
	}
	// Later than the request's arrival, which only makes the reads it
	// accepts fresher.
	arrived := time.Now()
	if id > e.newest.Load() {
		// Only a listing can tell an id above every sale seen: while SQL
		// cannot list, such a request fails (paced like the listings)
		// rather than reading its id, so that invented ids cost no read
		// each during an outage either.
		if err := e.listing.refresh(ctx, arrived, e.listSales); err != nil {
			return nil, e.saleReadFailed(ctx, id, err)
		}
		if id > e.newest.Load() {
			return nil, noSale(id)
		}
		// Listed, and cached since.
	}
	e.saleMu.Lock()
	if c, ok := e.saleCache[id]; ok {
		e.saleMu.Unlock()
		return c.sale, nil
	}
	r := e.noSales[id]
	if r == nil {
		if len(e.noSales) >= maxNoSales {
			clear(e.noSales)
		}
		r = &freshRead{}
		e.noSales[id] = r
	}
	e.saleMu.Unlock()
	err := r.refresh(ctx, arrived, func(ctx context.Context) error {
		_, err := e.loadSale(ctx, id) // caches the sale it finds
		if seckill.ErrorCode(err) == seckill.ENotFound {
			return nil // the answer is none, until the next read
		}
		return err
	})
	if err != nil {
		return nil, e.saleReadFailed(ctx, id, err)
	}
	// A read that started after this request arrived: the sale, cached
	// since, or none.
	e.saleMu.Lock()
	c, cached = e.saleCache[id]
	e.saleMu.Unlock()
	if cached {
		return c.sale, nil
	}
	return nil, noSale(id)
}

// saleReadFailed turns the failure of a shared read of the sales, which
// SQL's own errors make an internal one, into busy (503, retry): the
// buyer's request was fine, the database is away. The failure is logged
// once, then every 1000th time.
func (e *Engine) saleReadFailed(ctx context.Context, id int64, err error) error {
	if ctx.Err() != nil || seckill.ErrorCode(err) != seckill.EInternal {
		return err
	}
	if e.staleWarn.Add(1)%1000 == 1 {
		e.log.Warn("sale read failed; answering busy", "sale", id, "err", err, "times", e.staleWarn.Load())
	}
	return seckill.Errorf(seckill.EBusy, "sales cannot be read right now; retry shortly")
}

// maxNoSales bounds the ids read as none (they are ids below the newest
// sale: gaps, few; the bound is for the unforeseen).
const maxNoSales = 10_000

// freshRead runs reads of SQL for the requests that ask, so that each is
// answered by a read that started after it arrived, while a flood of them
// costs at most one read per relistEvery: reads run one at a time, each
// attempt at least relistEvery after the one before (failed ones too), and
// a request takes the answer of the first read that starts no earlier than
// it arrived, waiting for it no longer than its own context allows. A read
// runs detached from the requests (one leaving does not fail it for the
// rest), bounded by freshReadTimeout.
type freshRead struct {
	mu       sync.Mutex
	fresh    time.Time // when the last read that succeeded started (process clock)
	last     time.Time // when the last read started, whatever its outcome
	next     *flight   // the read that has not started yet, if any
	inFlight *flight   // the read running, if any
}

// flight is one read and the requests waiting for it.
type flight struct {
	done chan struct{} // closed when the read ended: err is set
	err  error
}

// freshReadTimeout bounds one shared read.
const freshReadTimeout = 10 * time.Second

// refresh returns once a read that started at or after arrived has
// succeeded, starting one when none is due; read records its answer where
// the caller looks. It returns the read's error, or ctx's if ctx ends
// first (the read goes on for the others).
func (f *freshRead) refresh(ctx context.Context, arrived time.Time, read func(context.Context) error) error {
	f.mu.Lock()
	if !f.fresh.Before(arrived) {
		f.mu.Unlock()
		return nil // a read that started after this request arrived
	}
	// A read that has not started yet starts after this request arrived:
	// join it, or schedule one.
	fl := f.next
	if fl == nil {
		fl = &flight{done: make(chan struct{})}
		f.next = fl
		go f.run(fl, read)
	}
	f.mu.Unlock()
	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run starts fl's read when the read in flight has ended and relistEvery
// has passed since the last one started.
func (f *freshRead) run(fl *flight, read func(context.Context) error) {
	var start time.Time
	for {
		f.mu.Lock()
		prev := f.inFlight
		wait := relistEvery - time.Since(f.last)
		if prev == nil && wait <= 0 {
			// Start: requests arriving from now on need the next read.
			f.next, f.inFlight = nil, fl
			start = time.Now()
			f.last = start
			f.mu.Unlock()
			break
		}
		f.mu.Unlock()
		if prev != nil {
			<-prev.done
		} else {
			time.Sleep(wait)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), freshReadTimeout)
	defer cancel()
	// Whatever read does, its waiters are told and the next read may run:
	// this goroutine is no request's, and a panic here would end the process.
	defer func() {
		if p := recover(); p != nil {
			fl.err = seckill.Errorf(seckill.EInternal, "sale read panicked: %v", p)
		}
		f.mu.Lock()
		if fl.err == nil && start.After(f.fresh) {
			f.fresh = start
		}
		f.inFlight = nil
		f.mu.Unlock()
		close(fl.done)
	}()
	fl.err = read(ctx)
}

// staleSaleWait is how long a request that finds its sale's cached copy
// stale waits for the read that refreshes it before it takes the stale
// copy (loadSale; a variable for tests).
var staleSaleWait = 100 * time.Millisecond

// loadSale returns the sale from a cache at most SaleCacheTTL old, or else
// from SQL. ENotFound only when SQL says so. A stale copy is read again
// once for all the requests that find it so (not once each: a crowd's
// presses in the moment it went stale each read it), each waiting for that
// read up to staleSaleWait; when SQL fails, or has not answered by then,
// the request takes what was cached, however old: admission goes on with
// what we knew, and the queue holds the purchases until the writer can
// reach SQL again. Before, a database that stopped answering held every
// purchase of a known sale for its read's whole timeout (found by review:
// 57 presses with no answer, then each waiting 5 s). After a failed read
// the next waits relistEvery.
func (e *Engine) loadSale(ctx context.Context, id int64) (*seckill.Sale, error) {
	now := e.now()
	e.saleMu.Lock()
	c, ok := e.saleCache[id]
	if !ok {
		gen := e.saleGen
		e.saleMu.Unlock()
		s, err := e.b.Sales.Sale(ctx, id)
		if err != nil {
			return nil, err
		}
		return e.cacheRead(s, now, gen), nil
	}
	if now.Sub(c.fetched) < e.cfg.SaleCacheTTL {
		e.saleMu.Unlock()
		return c.sale, nil
	}
	r := e.saleReads[id]
	if r == nil {
		if now.Sub(c.failed) < relistEvery {
			e.saleMu.Unlock()
			return c.sale, nil // SQL failed just now: not again at once
		}
		r = &saleRead{done: make(chan struct{})}
		e.saleReads[id] = r
		go e.rereadSale(id, r, now, e.saleGen)
	}
	e.saleMu.Unlock()
	wait := time.NewTimer(staleSaleWait)
	defer wait.Stop()
	select {
	case <-r.done:
		if r.err == nil {
			return r.sale, nil
		}
		if seckill.ErrorCode(r.err) == seckill.ENotFound {
			return nil, r.err
		}
		if e.staleWarn.Add(1)%1000 == 1 { // once, then every 1000th: SQL outages are loud enough
			e.log.Warn("sale refresh failed; serving the cached sale", "sale", id, "err", r.err, "times", e.staleWarn.Load())
		}
	case <-wait.C: // the read goes on for the next requests
	case <-ctx.Done():
	}
	// A copy cached meanwhile (the admin's stop, answered while this
	// press waited: found by review, admitted 95 ms after the stop) is
	// newer than the one this press found.
	e.saleMu.Lock()
	cur := e.saleCache[id]
	e.saleMu.Unlock()
	if cur.gen > c.gen {
		return cur.sale, nil
	}
	return c.sale, nil
}

// rereadSale runs r, the read of sale id's stale cached copy that started
// at start when saleGen was gen, detached from the requests waiting for it
// (one leaving does not fail it for the rest), bounded by
// freshReadTimeout.
func (e *Engine) rereadSale(id int64, r *saleRead, start time.Time, gen uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), freshReadTimeout)
	defer cancel()
	var (
		s   *seckill.Sale
		err error
	)
	// Whatever the read does, its waiters are told and the next read may
	// run: this goroutine is no request's, and a panic here would end the
	// process.
	defer func() {
		if p := recover(); p != nil {
			err = seckill.Errorf(seckill.EInternal, "sale read panicked: %v", p)
		}
		e.saleMu.Lock()
		delete(e.saleReads, id)
		if err == nil {
			s = e.cacheReadLocked(s, start, gen)
		} else if cur, ok := e.saleCache[id]; ok {
			cur.failed = e.now()
			e.saleCache[id] = cur
		}
		e.saleMu.Unlock()
		r.sale, r.err = s, err
		close(r.done)
	}()
	s, err = e.b.Sales.Sale(ctx, id)
}

// cacheSale caches s as the newest copy of its sale at now (it was just
// written: created, stopped), and forgets the reads of its id.
func (e *Engine) cacheSale(s *seckill.Sale, now time.Time) {
	e.saleMu.Lock()
	e.saleGen++
	e.saleCache[s.ID] = cachedSale{sale: s, fetched: now, gen: e.saleGen}
	delete(e.noSales, s.ID)
	e.saleMu.Unlock()
}

// cacheRead caches s, read from SQL by a read that started at start when
// saleGen was gen, unless a copy cached since that start is newer (the
// admin's stop, or a later read: found by review, a listing that began
// before a stop put the open sale back in the cache of the instance that
// had answered the stop, fresh for a whole TTL). It returns the copy now
// cached.
func (e *Engine) cacheRead(s *seckill.Sale, start time.Time, gen uint64) *seckill.Sale {
	e.saleMu.Lock()
	defer e.saleMu.Unlock()
	return e.cacheReadLocked(s, start, gen)
}

// cacheReadLocked is cacheRead with saleMu held.
func (e *Engine) cacheReadLocked(s *seckill.Sale, start time.Time, gen uint64) *seckill.Sale {
	if cur, ok := e.saleCache[s.ID]; ok && cur.gen > gen {
		return cur.sale
	}
	e.saleGen++
	e.saleCache[s.ID] = cachedSale{sale: s, fetched: start, gen: e.saleGen}
	delete(e.noSales, s.ID)
	return s
}

func noSale(id int64) error { return seckill.Errorf(seckill.ENotFound, "no sale %d", id) }

// relistEvery is how often at most the catalogue is listed for ids above
// the newest seen, and an id SQL said is none read again; a request for
// such an id waits for the next read, up to relistEvery.
const relistEvery = 50 * time.Millisecond

// listSales lists the catalogue: it caches every sale and raises newest.
func (e *Engine) listSales(ctx context.Context) error {
	start := e.now()
	e.saleMu.Lock()
	gen := e.saleGen
	e.saleMu.Unlock()
	sales, err := e.b.Sales.Sales(ctx)
	if err != nil {
		return err
	}
	for _, s := range sales {
		e.cacheRead(s, start, gen)
		e.sawSale(s.ID)
	}
	return nil
}

// sawSale raises newest to id.
func (e *Engine) sawSale(id int64) {
	for {
		n := e.newest.Load()
		if id <= n || e.newest.CompareAndSwap(n, id) {
			return
		}
	}
}

// SaleView is a sale as clients see it: stock_left and status from the gate
// when it is loaded (SQL lags by the writer's batch). For the pushes and
// the dashboard, which read it once a tick.
func (e *Engine) SaleView(ctx context.Context, s *seckill.Sale) (*seckill.Sale, string) {
	v := *s
	if left, loaded, err := e.b.Gate.Left(ctx, s.ID); err == nil && loaded {
		v.StockLeft = left
	}
	return e.status(&v)
}

// PublicSaleView is SaleView for the public catalogue (GET /api/sales and
// /api/sales/{id}), which anyone may request as often as they like: its
// units left come from a reading of the gate at most viewLeftFor old
// (viewLeft), so its traffic costs the gate no read per request.
func (e *Engine) PublicSaleView(ctx context.Context, s *seckill.Sale) (*seckill.Sale, string) {
	v := *s
	if left, loaded := e.viewLeft(ctx, s.ID); loaded {
		v.StockLeft = left
	}
	return e.status(&v)
}

func (e *Engine) status(v *seckill.Sale) (*seckill.Sale, string) {
	return v, v.Status(e.SaleTime(), v.StockLeft)
}

// viewLeftFor is how long a sale's units left, read from the gate for a
// public view, serve every public view of the sale on this instance. The catalogue is
// public and anyone may list it as often as they like: read per request,
// each listing cost a shared gate a round trip per sale. Now the views of
// a sale cost it at most one read in this time, whatever the traffic
// (api.md lets stock_left lag by about a second).
const viewLeftFor = 200 * time.Millisecond

// leftReading is a sale's units left as the gate answered at uptime at.
type leftReading struct {
	left   int64
	loaded bool
	at     time.Duration
}

// viewLeft is the sale's units left in the gate and whether it is loaded
// there, from a reading at most viewLeftFor old. Of the views that find
// the reading stale at once, one reads the gate and the others answer
// from the stale reading meanwhile. A gate that fails reads as not loaded
// (the view shows SQL's figure) and is asked again next time.
func (e *Engine) viewLeft(ctx context.Context, saleID int64) (int64, bool) {
	up := e.uptime()
	v, ok := e.viewLefts.Load(saleID)
	if ok {
		r := v.(*leftReading)
		if up-r.at < viewLeftFor {
			return r.left, r.loaded
		}
		// Claim the read: the others see a fresh stamp on the old figure.
		if !e.viewLefts.CompareAndSwap(saleID, r, &leftReading{left: r.left, loaded: r.loaded, at: up}) {
			return r.left, r.loaded
		}
	}
	left, loaded, err := e.b.Gate.Left(ctx, saleID)
	if err != nil {
		e.viewLefts.Delete(saleID)
		return 0, false
	}
	e.viewLefts.Store(saleID, &leftReading{left: left, loaded: loaded, at: up})
	return left, loaded
}

// Sales lists the catalogue.
func (e *Engine) Sales(ctx context.Context) ([]*seckill.Sale, error) {
	return e.b.Sales.Sales(ctx)
}

// MaxImageURL bounds a sale's image_url, in bytes: MySQL's column holds
// 1,024 characters, and a longer URL was a 500 there rather than a 400.
const MaxImageURL = 1024

// ValidateSale checks an admin's new sale; EInvalid says what is wrong.
// A price above the original price is refused (a "sale" dearer than the
// list price is a typo or a trick); an original price of 0 means none is
// shown, and any price goes. The price is what the buyer pays the
// provider: at least a cent, at most its limit.
func ValidateSale(s *seckill.Sale) error {
	switch {
	case s.Name == "" || len(s.Name) > 200:
		return seckill.Errorf(seckill.EInvalid, "name must be 1 to 200 bytes")
	case !plainText(s.Name) || !plainText(s.Description) || !plainText(s.ImageURL):
		return seckill.Errorf(seckill.EInvalid, "name, description and image_url must be UTF-8 without NUL characters")
	case len(s.Description) > 10000:
		return seckill.Errorf(seckill.EInvalid, "description must be at most 10000 bytes")
	case len(s.ImageURL) > MaxImageURL:
		return seckill.Errorf(seckill.EInvalid, "image_url must be at most %d bytes", MaxImageURL)
	case s.PriceCents < 0 || s.OriginalPriceCents < 0:
		return seckill.Errorf(seckill.EInvalid, "prices must not be negative")
	case s.PriceCents == 0:
		// Its orders could never be paid, and every one would lapse.
		return seckill.Errorf(seckill.EInvalid, "price_cents must be at least 1: an order is paid through the payment provider, which takes no zero amount")
	case s.PriceCents > payment.MaxAmountCents || s.OriginalPriceCents > payment.MaxAmountCents:
		return seckill.Errorf(seckill.EInvalid, "prices must be at most %d cents (the payment provider's limit)", payment.MaxAmountCents)
	case s.OriginalPriceCents > 0 && s.PriceCents > s.OriginalPriceCents:
		return seckill.Errorf(seckill.EInvalid, "the sale price (price_cents %d) must not be above the original price (original_price_cents %d)",
			s.PriceCents, s.OriginalPriceCents)
	case s.Stock < 1 || s.Stock > seckill.MaxStock:
		return seckill.Errorf(seckill.EInvalid, "stock must be 1 to %d", seckill.MaxStock)
	case s.StartsAt.IsZero() || s.EndsAt.IsZero():
		return seckill.Errorf(seckill.EInvalid, "starts_at and ends_at are required")
	case s.StartsAt.Before(minSaleTime) || !s.EndsAt.Before(maxSaleTime):
		// A mistyped year or offset (9999-12-31T23:59:59-01:00 is year
		// 10000 in UTC, which JSON cannot carry): refused here rather than
		// stored and breaking every answer that lists the sale.
		return seckill.Errorf(seckill.EInvalid, "starts_at and ends_at must be in the years 2000 to 2199 (UTC)")
	case !s.EndsAt.After(s.StartsAt):
		return seckill.Errorf(seckill.EInvalid, "ends_at must be after starts_at")
	}
	return nil
}

// plainText reports whether s can be stored as text on every engine:
// valid UTF-8 without NUL (which PostgreSQL's text refuses).
func plainText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// The range of a sale's times: anything outside is a typo.
var (
	minSaleTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxSaleTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// CreateSale validates and stores a sale and loads its stock into the gate.
// A rebuild may find the sale in SQL first and load it: then the gate
// keeps that load (a live sale is never loaded twice), and so it does if
// this load is overtaken; a sale left unloaded is found by the next
// rebuild.
func (e *Engine) CreateSale(ctx context.Context, s *seckill.Sale) error {
	// Times as every store keeps them, to the millisecond: checked and
	// answered as stored (found by review: 0.1 and 0.9 ms past a second
	// passed the check and were stored equal, a sale never open, and the
	// answer showed nanoseconds no later read had).
	s.StartsAt, s.EndsAt = s.StartsAt.UTC().Truncate(time.Millisecond), s.EndsAt.UTC().Truncate(time.Millisecond)
	if err := ValidateSale(s); err != nil {
		return err
	}
	if err := e.b.Sales.CreateSale(ctx, s); err != nil {
		return err
	}
	e.sawSale(s.ID)
	e.saleMu.Lock()
	delete(e.noSales, s.ID) // asked for before it was committed
	e.saleMu.Unlock()
	// Read from SQL and the queue like any load rather than taken from s:
	// if the gate loses its state between a rebuild's load and this one,
	// buyers may already exist. The sale is created once it is in SQL: a
	// load cut short (the admin's request gone, a read that failed) is
	// left to the rebuild that the sale's first purchase starts, not
	// reported as a sale not created (the admin would create it twice).
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := e.loadGate(lctx, s.ID); err != nil {
		e.log.Warn("load a new sale into the gate; its first purchase will rebuild it", "sale", s.ID, "err", err)
		e.maybeRebuild()
	}
	return nil
}

// StopSale ends a sale now, on the admin's word: purchases are refused
// with EEnded from then on (an upcoming sale never opens; an ended one
// keeps its end). This instance refuses at once; the others when their
// cached sale expires, within SaleCacheTTL. Purchases accepted before
// stay accepted. It returns the sale as stored; ENotFound if none.
func (e *Engine) StopSale(ctx context.Context, id int64) (*seckill.Sale, error) {
	s, err := e.b.Sales.EndSale(ctx, id, e.SaleTime())
	if err != nil {
		return nil, err
	}
	e.cacheSale(s, e.now())
	return s, nil
}

// Stats is the admin's view of a sale, for checking the invariants: at
// rest, live orders (pending + paid) + stock_left = stock = the ledger's
// sum, and gate_left = stock_left − queued − returns_unapplied.
type Stats struct {
	seckill.SaleStats
	GateLeft int64 `json:"gate_left"`
	Queued   int64 `json:"queued"`
	// The lifecycle's numbers; zero on a store without a lifecycle.
	seckill.LifecycleStats
}

// Stats returns SQL counts with the gate's units left and the queue depth.
func (e *Engine) Stats(ctx context.Context, saleID int64) (*Stats, error) {
	ss, err := e.b.Sales.SaleStats(ctx, saleID)
	if err != nil {
		return nil, err
	}
	st := &Stats{SaleStats: *ss, GateLeft: -1}
	if left, loaded, err := e.b.Gate.Left(ctx, saleID); err == nil && loaded {
		st.GateLeft = left
	}
	if st.Queued, err = e.b.Queue.Pending(ctx, saleID); err != nil {
		return nil, err
	}
	if lc := e.lifecycle(); lc != nil {
		ls, err := lc.LifecycleStats(ctx, saleID)
		if err != nil {
			return nil, err
		}
		st.LifecycleStats = *ls
	}
	return st, nil
}
