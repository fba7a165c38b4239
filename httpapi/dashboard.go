package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"seckill"
	"seckill/checkout"
)

// The shop's live dashboard: GET /api/admin/dashboard answers every sale
// with its state, units left, admin stats and the last DashWindow seconds
// of its traffic, second by second; GET /api/admin/ws is /api/ws plus a
// {"type":"dash"} message every WSConfig.DashInterval carrying the same
// numbers with the series' last DashTail seconds only (the page reads the
// whole window once, then merges the tails by second).
//
// Where the numbers come from, and how far they reach:
//
//   - admitted: purchases answered 202;
//   - refused: buying steps (POST …/path and …/purchase) refused, by error
//     code (sold_out, duplicate, rate_limited, busy, bad_captcha, bad_path,
//     not_started, ended, other);
//   - orders: successful results on the result bus, which carries every
//     instance's: orders written per second across the cluster.
//
// Every second is a second of the shared clock (the database's: the
// instance's own corrected by the engine's ClockSkew), so that instances
// whose own clocks are minutes apart count the same moment under the same
// second, and show the same window. Admissions and refusals are counted
// in memory by the instance that answered; with Config.DashBus the instances share their counts once a
// second (dashshare.go), so that every instance's dashboard shows the
// whole cluster's, each instance's counts once. Without it an admin's
// dashboard shows the traffic of the instance it is connected to. A
// restart starts the series empty. Counting costs a map read and a short
// mutex per buying request; nothing is counted for a sale id that is not
// in the catalogue, so invented ids cost no memory.

// DashWindow is how many seconds of each sale's series are kept.
const DashWindow = 300

// DashTail is how many seconds of the series each streamed dash message
// carries: the current second (still filling) and the ones before it, so
// that a message lost to a full send buffer is made good by the next, and
// so that the counts of another instance, which arrive a publish interval
// (DefaultDashShare) later and bucketed on its reading of the shared
// clock (up to DashSkew behind), still reach the page.
const DashTail = 10

// PushDash is the type of the dashboard's streamed message.
const PushDash = "dash"

// refusalCodes are the refusal reasons the series count, in their order;
// any other code counts as "other".
var refusalCodes = [...]string{
	seckill.ESoldOut, seckill.EDuplicate, seckill.ERateLimited, seckill.EBusy,
	seckill.EBadCaptcha, seckill.EBadPath, seckill.ENotStarted, seckill.EEnded, "other",
}

func refusalIndex(code string) int {
	for i, c := range refusalCodes[:len(refusalCodes)-1] {
		if c == code {
			return i
		}
	}
	return len(refusalCodes) - 1
}

// DashMessage is the dashboard: GET /api/admin/dashboard's answer and,
// with Type "dash" and shortened series, the stream's message.
type DashMessage struct {
	Type       string     `json:"type"` // PushDash
	ServerTime time.Time  `json:"server_time"`
	Window     int        `json:"window_seconds"` // seconds the server keeps
	Sales      []DashSale `json:"sales"`
}

// DashSale is one sale on the dashboard.
type DashSale struct {
	SaleID int64  `json:"sale_id"`
	Name   string `json:"name"`
	State  string `json:"state"` // as in the sale push: upcoming, running, sold_out, ended
	Left   int64  `json:"left"`
	Stock  int64  `json:"stock"`
	// Stats are the admin stats (GET …/stats), read at most every
	// dashStatsTTL (dashEndedTTL once the sale ended); absent while they
	// cannot be read.
	Stats  *checkout.Stats `json:"stats,omitempty"`
	Series DashSeries      `json:"series"`
}

// DashSeries counts one sale's traffic per second: element i of each
// slice is the second Start+i (Unix seconds).
type DashSeries struct {
	Start    int64              `json:"start"`
	Admitted []int64            `json:"admitted"`
	Orders   []int64            `json:"orders"`
	Refused  map[string][]int64 `json:"refused"` // by error code; codes without a refusal in the span are left out
}

// Stats are cached: the stream and every polling page share one SQL read
// per sale and TTL.
const (
	dashStatsTTL = 2 * time.Second
	dashEndedTTL = 30 * time.Second
)

// dashBucket is one second of one sale.
type dashBucket struct {
	sec        int64 // the Unix second it counts; 0: unused
	orders     int64
	dashCounts // every instance's admissions and refusals
	// unsent are this instance's admissions and refusals not yet
	// published on the DashBus (zero without one).
	unsent dashCounts
}

// dashCounts are admissions and refusals.
type dashCounts struct {
	admitted int64
	refused  [len(refusalCodes)]int64 // by refusalIndex
}

// add counts an admission (refusal < 0) or a refusal by its index.
func (c *dashCounts) add(refusal int) {
	if refusal < 0 {
		c.admitted++
	} else {
		c.refused[refusal]++
	}
}

// saleSeries is a ring of DashWindow buckets.
type saleSeries struct {
	mu      sync.Mutex
	last    int64 // the latest second written
	dirty   int64 // the earliest second with unsent counts; 0: none
	buckets [DashWindow]dashBucket
}

// bucket returns the bucket of sec, emptied if it held an older second;
// nil for a second already out of the window. Called with mu held.
func (ss *saleSeries) bucket(sec int64) *dashBucket {
	if sec <= ss.last-DashWindow {
		return nil
	}
	b := &ss.buckets[sec%DashWindow]
	if b.sec != sec {
		*b = dashBucket{sec: sec}
	}
	ss.last = max(ss.last, sec)
	return b
}

// span returns the seconds from-…to (inclusive) of the series.
func (ss *saleSeries) span(from, to int64) DashSeries {
	n := int(to - from + 1)
	out := DashSeries{Start: from, Admitted: make([]int64, n), Orders: make([]int64, n), Refused: map[string][]int64{}}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for i := range n {
		sec := from + int64(i)
		b := &ss.buckets[sec%DashWindow]
		if b.sec != sec {
			continue
		}
		out.Admitted[i], out.Orders[i] = b.admitted, b.orders
		for c, v := range b.refused {
			if v == 0 {
				continue
			}
			code := refusalCodes[c]
			if out.Refused[code] == nil {
				out.Refused[code] = make([]int64, n)
			}
			out.Refused[code][i] = v
		}
	}
	return out
}

type cachedStats struct {
	st *checkout.Stats
	at time.Time
}

// dashboard holds the series of every sale with traffic, and the stats
// cache.
type dashboard struct {
	s  *Server
	id string // this instance's name on the DashBus

	mu     sync.RWMutex
	series map[int64]*saleSeries

	statsMu sync.Mutex
	stats   map[int64]cachedStats

	subMu       sync.Mutex
	unsubscribe func() // nil while not subscribed to the result bus
	unsubDash   func() // nil while not subscribed to the DashBus
	closed      bool

	// With a DashBus: the publisher of this instance's counts.
	shareCtx    context.Context
	shareCancel context.CancelFunc
	shareDone   chan struct{}
}

func newDashboard(s *Server) *dashboard {
	d := &dashboard{s: s, id: newInstanceID(), series: map[int64]*saleSeries{}, stats: map[int64]cachedStats{}}
	if s.cfg.DashBus != nil {
		d.shareCtx, d.shareCancel = context.WithCancel(context.Background())
		d.shareDone = make(chan struct{})
		go d.runShare()
	}
	return d
}

// subscribe listens to the result bus for the orders series, and to the
// DashBus for the other instances' counts, unless it does already; it is
// tried at New and again at each dashboard request, so a bus that failed
// at start is retried.
func (d *dashboard) subscribe() {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	if d.closed {
		return
	}
	if bus := d.s.cfg.Results; bus != nil {
		d.subscribeBus(&d.unsubscribe, "orders", func() (func(), error) { return bus.SubscribeResults(d.result) })
	}
	if bus := d.s.cfg.DashBus; bus != nil {
		d.subscribeBus(&d.unsubDash, "other instances' counts", func() (func(), error) { return bus.SubscribeDash(d.heard) })
	}
}

// close stops listening and publishing (publishing what was counted
// since the last message first).
func (d *dashboard) close() {
	d.subMu.Lock()
	d.closed = true
	for _, cancel := range []*func(){&d.unsubscribe, &d.unsubDash} {
		if *cancel != nil {
			(*cancel)()
			*cancel = nil
		}
	}
	d.subMu.Unlock()
	if d.shareCancel != nil {
		d.shareCancel()
		<-d.shareDone
	}
}

// result counts a written order (the bus's results come from the order
// writers: their sales exist).
func (d *dashboard) result(r seckill.OrderResult) {
	if r.IsOrderStatus() || r.Status != seckill.ResultSuccess {
		return
	}
	ss := d.get(r.SaleID, true)
	ss.mu.Lock()
	if b := ss.bucket(d.s.sharedNow().Unix()); b != nil {
		b.orders++
	}
	ss.mu.Unlock()
}

// count records the outcome of a buying step of sale id: err nil is an
// admission when admits, nothing otherwise; an error is a refusal by its
// code.
func (d *dashboard) count(ctx context.Context, id int64, admits bool, err error) {
	if err == nil && !admits {
		return
	}
	code := seckill.ErrorCode(err)
	if code == seckill.ENotFound {
		return // no such sale
	}
	ss := d.get(id, false)
	if ss == nil && d.inCatalog(ctx, id) {
		ss = d.get(id, true)
	}
	if ss == nil {
		return
	}
	refusal := -1
	if err != nil {
		refusal = refusalIndex(code)
	}
	sec := d.s.sharedNow().Unix()
	ss.mu.Lock()
	if b := ss.bucket(sec); b != nil {
		b.add(refusal)
		if d.shareCancel != nil {
			b.unsent.add(refusal)
			if ss.dirty == 0 || sec < ss.dirty {
				ss.dirty = sec
			}
		}
	}
	ss.mu.Unlock()
}

func (d *dashboard) inCatalog(ctx context.Context, id int64) bool {
	sales, err := d.s.catalog.get(ctx)
	if err != nil {
		return false
	}
	for _, s := range sales {
		if s.ID == id {
			return true
		}
	}
	return false
}

// get returns the sale's series, creating it when create (and dropping
// the series idle for a whole window meanwhile); nil if there is none.
func (d *dashboard) get(id int64, create bool) *saleSeries {
	d.mu.RLock()
	ss := d.series[id]
	d.mu.RUnlock()
	if ss != nil || !create {
		return ss
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ss = d.series[id]; ss != nil {
		return ss
	}
	now := d.s.sharedNow().Unix()
	for k, old := range d.series {
		old.mu.Lock()
		idle := old.last <= now-DashWindow
		old.mu.Unlock()
		if idle {
			delete(d.series, k)
		}
	}
	ss = &saleSeries{}
	d.series[id] = ss
	return ss
}

// stats returns the sale's admin stats, from the cache when fresh enough.
func (d *dashboard) readStats(ctx context.Context, id int64, ended bool, now time.Time) *checkout.Stats {
	ttl := dashStatsTTL
	if ended {
		ttl = dashEndedTTL
	}
	d.statsMu.Lock()
	c, ok := d.stats[id]
	d.statsMu.Unlock()
	if ok && now.Sub(c.at) < ttl {
		return c.st
	}
	st, err := d.s.cfg.Engine.Stats(ctx, id)
	if err != nil {
		d.s.log.Debug("dashboard: stats", "sale", id, "err", err)
		return c.st // the last known, if any
	}
	d.statsMu.Lock()
	d.stats[id] = cachedStats{st: st, at: now}
	d.statsMu.Unlock()
	return st
}

// message builds the dashboard with the last seconds of each series
// (DashWindow for the whole window).
func (d *dashboard) message(ctx context.Context, seconds int) (*DashMessage, error) {
	sales, err := d.s.catalog.get(ctx)
	if err != nil {
		return nil, err
	}
	// The series' seconds are on the shared clock, as every instance
	// counts; the stats cache ages on this instance's own, which a new
	// reading of the skew cannot make jump.
	local, now := d.s.cfg.Now(), d.s.sharedNow()
	to := now.Unix()
	from := to - int64(seconds) + 1
	out := &DashMessage{Type: PushDash, ServerTime: now.UTC(), Window: DashWindow, Sales: make([]DashSale, 0, len(sales))}
	for _, sale := range sales {
		v, status := d.s.cfg.Engine.SaleView(ctx, sale)
		ds := DashSale{
			SaleID: sale.ID, Name: sale.Name, State: saleState(status), Left: max(v.StockLeft, 0), Stock: sale.Stock,
			Stats: d.readStats(ctx, sale.ID, status == seckill.SaleEnded, local),
		}
		if ss := d.get(sale.ID, false); ss != nil {
			ds.Series = ss.span(from, to)
		} else {
			ds.Series = (&saleSeries{}).span(from, to)
		}
		out.Sales = append(out.Sales, ds)
	}
	return out, nil
}

// dashboardHandler is GET /api/admin/dashboard: the whole window.
func (s *Server) dashboardHandler(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	s.dash.subscribe()
	m, err := s.dash.message(r.Context(), DashWindow)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, m)
	return nil
}

// counted records the outcome of a buying step in the sale's dashboard
// series: an admission (admits, and h answered without error) or a
// refusal by its code.
func (s *Server) counted(h authedHandler, admits bool) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
		err := h(w, r, sess)
		if id, perr := pathID(r, "id"); perr == nil {
			s.dash.count(r.Context(), id, admits, err)
		}
		return err
	}
}

// dashPush streams the dashboard to the admins' sockets: while one is
// open here, every DashInterval (or DashTicks) it builds the message with
// the series' last DashTail seconds, encodes it once, and offers it to
// each (best-effort, as the sale push: a slow admin skips a message, and
// the next one's tail makes it good).
type dashPush struct {
	s     *Server
	ticks <-chan time.Time
	every time.Duration

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newDashPush(s *Server) *dashPush {
	p := &dashPush{s: s, ticks: s.hub.cfg.DashTicks, every: s.hub.cfg.DashInterval, done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// start runs the streamer unless it runs already (at the first admin
// socket).
func (p *dashPush) start() { p.once.Do(func() { go p.run() }) }

// stop ends the streamer and waits for it; a streamer never started
// never will be.
func (p *dashPush) stop() {
	p.cancel()
	p.once.Do(func() { close(p.done) })
	<-p.done
}

func (p *dashPush) run() {
	defer close(p.done)
	tickLoop(p.ctx, p.ticks, p.every, func() bool { return p.s.hub.dashSockets() > 0 }, p.tick)
}

func (p *dashPush) tick() {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	m, err := p.s.dash.message(ctx, DashTail)
	if err != nil {
		p.s.log.Debug("dashboard push", "err", err)
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		p.s.log.Warn("dashboard push not encodable", "err", err)
		return
	}
	p.s.hub.broadcastDash(b, func(wc *wsConn) bool { return p.s.stillAdmin(ctx, wc) })
}
