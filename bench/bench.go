// Package bench is the load generator of `seckill bench`: it provisions a
// sale and its buyers on a running server (through the admin-only bulk
// route the server enables with --bench-provisioning), drives a flash crowd
// over a fixed number of keep-alive connections, and checks the invariants
// of design.md from the admin stats once every accepted purchase is an
// order. Its plain mode GETs one URL at the same concurrency, so the same
// generator measures a hello-world server for comparison; its ws-idle mode
// holds idle WebSockets open and reads what they cost the server's memory.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Modes of a run.
const (
	ModePurchase = "purchase"
	ModePlain    = "plain"
)

// maxPerCall is the most users one call of the bulk route creates;
// perCall is how many the bench asks for at once: a call opens a session
// per user one by one (a row in SQL, and in Redis in production), and
// 100,000 of them took longer than the client's 30 s timeout on
// PostgreSQL + Redis.
const (
	maxPerCall = 100_000
	perCall    = 20_000
)

// Config is one run; zero values take the defaults.
type Config struct {
	Target        string // base URL of the server, e.g. http://127.0.0.1:8080
	AdminPhone    string
	AdminPassword string

	Users   int           // buyers; default 10000
	Stock   int64         // units on sale; default 1000
	Tries   int           // purchase attempts per buyer when Duration is 0; default 2
	StartIn time.Duration // the sale starts this long after it is created; 0: at once

	Conns    int           // connections and workers; default 64
	Duration time.Duration // run for this long instead of a number of tries
	Rate     float64       // requests/s over all connections; 0: as fast as possible

	// URLOnly switches to the plain mode: GET this URL, Requests times or
	// for Duration (default 10s), and nothing else.
	URLOnly  string
	Requests int

	// WSIdle switches to the ws-idle mode: open this many WebSockets to
	// GET /api/ws, WSPerUser (default 4) per provisioned buyer, Conns
	// handshakes at a time; hold them idle for WSHold (default 5s); read
	// the server's memory from its /metrics (on Ops) before and after.
	WSIdle    int
	WSPerUser int
	WSHold    time.Duration
	// Ops is the base URL of the server's operations listener, where its
	// /metrics is (never on the public one); default DefaultOps.
	Ops string

	// PayRatio, above 0, runs the order lifecycle after the crowd: this
	// fraction of the winners pays through the server's payment provider,
	// the rest never do; the bench waits past their pay deadline (run the
	// server with a short --pay-window, a few seconds longer than the
	// resale takes) and resells the returned units (see Lifecycle).
	PayRatio float64

	SettleTimeout time.Duration // wait for the queue to drain; default 60s
	Progress      io.Writer     // a line a second while running; nil: none
}

func (c *Config) defaults() {
	if c.Users <= 0 {
		c.Users = 10000
	}
	if c.Stock <= 0 {
		c.Stock = 1000
	}
	if c.Tries <= 0 {
		c.Tries = 2
	}
	if c.Conns <= 0 {
		c.Conns = 64
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = 60 * time.Second
	}
	if c.URLOnly != "" && c.Requests <= 0 && c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.WSPerUser <= 0 {
		c.WSPerUser = 4
	}
	if c.WSHold <= 0 {
		c.WSHold = 5 * time.Second
	}
	if c.Ops == "" {
		c.Ops = DefaultOps
	}
}

// DefaultOps is the operations listener of a server on this machine with
// the default --ops-addr.
const DefaultOps = "http://127.0.0.1:9090"

// Run performs the run and returns what it measured. An error means the
// run could not be carried out; broken invariants are in the result
// (Result.Failed), not an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if cfg.Progress != nil {
		// The ticker's lines and the workers' reports (a payment refused)
		// come from several goroutines; a Progress such as a
		// strings.Builder is not safe for that.
		cfg.Progress = &lockedWriter{w: cfg.Progress}
	}
	b := &runner{cfg: cfg, client: newClient(cfg.Conns)}
	defer b.client.CloseIdleConnections()
	if cfg.URLOnly != "" {
		return b.plain(ctx)
	}
	if cfg.WSIdle > 0 {
		return b.wsIdle(ctx)
	}
	return b.purchase(ctx)
}

// newClient keeps exactly conns connections to the server alive.
//
// An idle connection is dropped after 4 s, before serve's default
// --read-header-timeout (5 s) closes one that never carried a request (the
// transport's dial race leaves such connections in the pool): a purchase
// sent on one as the server closes it would fail with EOF or a reset,
// which the transport does not retry for a POST. Between phases (after a
// long provisioning) the bench dials again instead.
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     4 * time.Second,
			DisableCompression:  true,
		},
	}
}

type runner struct {
	cfg    Config
	client *http.Client
	admin  string

	counts [nClasses]atomic.Int64
}

func (b *runner) plain(ctx context.Context) (*Result, error) {
	url := b.cfg.URLOnly
	res := &Result{Mode: ModePlain, Target: url, Conns: b.cfg.Conns, Rate: b.cfg.Rate}
	crowd := b.crowd(ctx, "plain", b.cfg.Requests, func(int) (class, bool) {
		return classify(b.send(ctx, "GET", url, "")), true
	})
	b.fill(res, crowd)
	res.OK = res.Outcomes.OK == res.Requests
	return res, ctx.Err()
}

func (b *runner) purchase(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	base := strings.TrimRight(cfg.Target, "/")
	res := &Result{Mode: ModePurchase, Target: base, Conns: cfg.Conns, Rate: cfg.Rate, Users: cfg.Users, Stock: cfg.Stock, Tries: cfg.Tries}

	var login struct{ Token string }
	if err := b.login(ctx, base, &login); err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	b.admin = login.Token

	now := time.Now().UTC()
	starts := now.Add(cfg.StartIn)
	if cfg.StartIn <= 0 {
		starts = now.Add(-time.Second) // open already, whatever the clocks' jitter
	}
	var sale struct{ Sale struct{ ID int64 } }
	if err := b.call(ctx, "POST", base+"/api/admin/sales", b.admin, map[string]any{
		"name": "bench " + now.Format(time.RFC3339), "description": "seckill bench", "price_cents": 100, "original_price_cents": 200,
		"stock": cfg.Stock, "starts_at": starts, "ends_at": starts.Add(24 * time.Hour), "require_captcha": false,
	}, 201, &sale); err != nil {
		return nil, fmt.Errorf("create sale: %w", err)
	}
	res.SaleID = sale.Sale.ID

	t0 := time.Now()
	users, err := b.provision(ctx, base, cfg.Users)
	if err != nil {
		return nil, err
	}
	res.ProvisionSeconds = time.Since(t0).Seconds()

	if wait := time.Until(starts); wait > 0 {
		b.progress("waiting %.1fs for the sale to start", wait.Seconds())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	// Each buyer asks for the hidden path first, as a browser does at the
	// start; the crowd below then only buys.
	t0 = time.Now()
	urls := make([]string, len(users))
	var pathErr atomic.Pointer[error]
	b.crowd(ctx, "paths", len(users), func(i int) (class, bool) {
		var p struct{ Path string }
		u := fmt.Sprintf("%s/api/sales/%d/path", base, res.SaleID)
		if err := b.call(ctx, "POST", u, users[i].auth, nil, 200, &p); err != nil {
			pathErr.CompareAndSwap(nil, &err)
			return cErr, false
		}
		urls[i] = fmt.Sprintf("%s/api/sales/%d/purchase/%s", base, res.SaleID, p.Path)
		return cOK, true
	})
	if e := pathErr.Load(); e != nil {
		return nil, fmt.Errorf("get purchase paths: %w", *e)
	}
	res.PathsSeconds = time.Since(t0).Seconds()
	for i := range b.counts {
		b.counts[i].Store(0)
	}

	// The crowd: job i is buyer i mod N, so every buyer tries once before
	// anyone tries again.
	answered := make([]atomic.Bool, len(users))
	acceptedBy := make([]atomic.Int32, len(users)) // 202s per user (I2)
	got := newAnswers(len(users))                  // tickets and unknown answers per user (I3)
	var lastAccept, accepted atomic.Int64
	jobs := 0
	if cfg.Duration <= 0 {
		jobs = len(users) * cfg.Tries
	}
	// Meanwhile the admin stats are sampled, to tell when the orders caught
	// up with the accepted purchases even while the crowd goes on.
	stopSampling := b.sample(ctx, base, res.SaleID, accepted.Load, lastAccept.Load)
	crowd := b.crowd(ctx, "crowd", jobs, func(i int) (class, bool) {
		u := i % len(users)
		status, ticket := b.buy(ctx, "POST", urls[u], users[u].auth)
		c := classify(status)
		got.note(u, c, ticket)
		if c.definitive() {
			answered[u].Store(true)
		}
		if c == cAccepted {
			lastAccept.Store(time.Now().UnixNano())
			accepted.Add(1)
			acceptedBy[u].Add(1)
		}
		return c, true
	})
	b.fill(res, crowd)
	sampled := stopSampling()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	// Settle: every 202 must become an order.
	st, settled, err := b.settle(ctx, base, res.SaleID, res.Outcomes.Accepted)
	if err != nil {
		return res, err
	}
	end := time.Now()
	res.Settled, res.Stats = settled, st
	res.SettleSeconds = end.Sub(crowd.end).Seconds()
	if la := lastAccept.Load(); la > 0 && settled {
		caughtUp := end
		for _, sm := range sampled {
			if sm.orders >= res.Outcomes.Accepted && sm.queued == 0 {
				caughtUp = sm.at
				break
			}
		}
		res.SettleAfterLastAccept = max(caughtUp.Sub(time.Unix(0, la)), 0).Seconds()
	}
	n := 0
	for i := range answered {
		if answered[i].Load() {
			n++
		}
	}
	twice := 0
	for i := range acceptedBy {
		if acceptedBy[i].Load() > 1 {
			twice++
		}
	}
	var tickets *TicketCheck
	if settled {
		tc, err := b.verifyTickets(ctx, base, res.SaleID, users, got)
		if err != nil {
			return res, fmt.Errorf("read the buyers' results: %w", err)
		}
		tickets = &tc
	}
	res.Invariants = CheckInvariants(*st, Crowd{Accepted: res.Outcomes.Accepted, Users: len(users), Answered: n, SoldOut: res.Outcomes.SoldOut, AcceptedTwice: twice, Tickets: tickets})
	if cfg.PayRatio > 0 && settled {
		var winners []user
		for i := range acceptedBy {
			if acceptedBy[i].Load() > 0 {
				winners = append(winners, users[i])
			}
		}
		if err := b.lifecycle(ctx, base, res, winners, twice, tickets); err != nil {
			return res, fmt.Errorf("lifecycle: %w", err)
		}
	}
	res.OK = len(res.Failed()) == 0
	return res, nil
}

type user struct {
	id   int64
	auth string // "Bearer <token>"
}

// provision creates n buyers through the bulk route, perCall at a time,
// each call under a fresh random phone prefix (retried on a collision).
func (b *runner) provision(ctx context.Context, base string, n int) ([]user, error) {
	users := make([]user, 0, n)
	for len(users) < n {
		count := min(n-len(users), perCall)
		var out struct {
			Users []struct {
				ID    int64
				Token string
			}
		}
		var err error
		taken, patience := 0, time.Now().Add(statsPatience)
		for {
			// "1" and five digits leave six: room for maxPerCall phones.
			prefix := "1" + strconv.Itoa(10000+rand.IntN(90000))
			b.progress("provisioning %d buyers (prefix %s)", count, prefix)
			err = b.call(ctx, "POST", base+"/api/admin/bench/users", b.admin, map[string]any{"count": count, "prefix": prefix}, 201, &out)
			var he *httpError
			if err == nil || ctx.Err() != nil {
				break
			}
			if errors.As(err, &he) && he.code == "phone_taken" {
				if taken++; taken == 5 {
					break
				}
				continue
			}
			// The server failed (a 5xx: its database away for a moment,
			// which it answers 503) or did not answer: try again, with
			// another prefix, as the stats reads do (a call cut off may
			// have created its buyers; they are left unused).
			if errors.As(err, &he) && he.status < 500 || time.Now().After(patience) {
				break
			}
			wait := 200 * time.Millisecond
			if he != nil {
				wait = he.retryAfter
			}
			b.progress("provisioning failed (%v); trying again in %v", err, wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		if err != nil {
			var he *httpError
			if errors.As(err, &he) && he.status == 404 {
				return nil, fmt.Errorf("provision buyers: the server has no bulk route; start it with --bench-provisioning: %w", err)
			}
			return nil, fmt.Errorf("provision buyers: %w", err)
		}
		for _, u := range out.Users {
			users = append(users, user{id: u.ID, auth: "Bearer " + u.Token})
		}
	}
	return users, nil
}

// settle polls the sale's stats until nothing is queued and the orders
// reach accepted, or SettleTimeout passes; it returns the last stats.
func (b *runner) settle(ctx context.Context, base string, saleID, accepted int64) (*Stats, bool, error) {
	deadline := time.Now().Add(b.cfg.SettleTimeout)
	for {
		st, err := b.stats(ctx, base, saleID)
		if err != nil {
			return nil, false, err
		}
		if st.Queued == 0 && st.Orders >= accepted {
			return st, true, nil
		}
		if time.Now().After(deadline) {
			return st, false, nil
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return st, false, ctx.Err()
		}
	}
}

// sample is one reading of the admin stats during the crowd.
type sample struct {
	at             time.Time
	orders, queued int64
	accepted       int64 // 202s the crowd had received when the reading was asked for
}

// sampleEvery is the resolution of Result.SettleAfterLastAccept, unless a
// reading takes longer than 1/sampleShare of it: then the readings wait
// sampleShare times as long as the last one took, so that the stats (a
// scan of the sale's orders, 30 ms for 50,000 of them) cost the server a
// bounded share of its time while the crowd is measured; but never longer
// than sampleAtMost, the coarsest resolution. Readings are taken only
// between the last 202 so far and the orders catching up with it (see
// sample), a window of a fraction of a second, so the bound costs little.
const (
	sampleEvery  = 25 * time.Millisecond
	sampleShare  = 20
	sampleAtMost = 100 * time.Millisecond
)

// sample reads the sale's stats every sampleEvery until stop is called;
// stop returns the readings. It skips a reading while the last one showed
// every purchase accepted so far (accepted) as an order and nothing
// queued: the stats cost the server a SQL scan of the sale's orders, and
// read 40 times a second through a whole crowd they took a sixth of its
// CPU (a profile of a 5,000-buyer crowd pressing on after the sale sold
// out), which hello-world, measured beside it, never pays. Once caught up,
// only a new 202 makes a reading worth its cost; and while 202s keep coming
// (the last less than sampleEvery ago: lastAccept, unix ns) none is taken,
// since only the readings after the last 202 time the catching up — they
// were 2-4 % of the server's CPU through the admissions of a crowd that
// every buyer wins.
func (b *runner) sample(ctx context.Context, base string, saleID int64, accepted, lastAccept func() int64) (stop func() []sample) {
	var out []sample
	done := make(chan struct{})
	finished := make(chan struct{})
	url := fmt.Sprintf("%s/api/admin/sales/%d/stats", base, saleID)
	go func() {
		defer close(finished)
		t := time.NewTimer(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if n := len(out); n > 0 && out[n-1].queued == 0 && out[n-1].orders >= out[n-1].accepted && out[n-1].accepted == accepted() {
				t.Reset(sampleEvery)
				continue
			}
			if since := time.Since(time.Unix(0, lastAccept())); since < sampleEvery {
				t.Reset(sampleEvery - since)
				continue
			}
			acc := accepted() // before the reading: its orders count at least these
			var st Stats
			asked := time.Now()
			if err := b.call(ctx, "GET", url, b.admin, nil, 200, &st); err == nil {
				out = append(out, sample{at: time.Now(), orders: st.Orders, queued: st.Queued, accepted: acc})
			}
			t.Reset(min(max(sampleEvery, sampleShare*time.Since(asked)), sampleAtMost))
		}
	}()
	return func() []sample {
		close(done)
		<-finished
		return out
	}
}

// crowdRun is what one phase of requests measured.
type crowdRun struct {
	start, end time.Time
	hist       *hdrhistogram.Histogram
}

// crowd runs do over Conns workers: jobs of them (0: until Duration ends),
// paced at Rate when set. A job whose do returns counted=false is not
// counted in the outcomes. With a rate, latency counts from the moment a
// request was due, not from when it was sent, so a slow server cannot hide
// its queueing (coordinated omission).
func (b *runner) crowd(ctx context.Context, phase string, jobs int, do func(i int) (class, bool)) crowdRun {
	cfg := b.cfg
	shards := make([]histShard, min(cfg.Conns, 16))
	for i := range shards {
		shards[i].h = newHistogram()
	}
	var next atomic.Int64
	start := time.Now()
	stopAt := time.Time{}
	if jobs == 0 {
		stopAt = start.Add(cfg.Duration)
	}
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	done := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		b.report(phase, start, done)
	}()

	var wg sync.WaitGroup
	for w := range cfg.Conns {
		sh := &shards[w%len(shards)]
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if jobs > 0 && i >= jobs {
					return
				}
				due := time.Now()
				if interval > 0 {
					due = start.Add(time.Duration(i) * interval)
					if !stopAt.IsZero() && due.After(stopAt) {
						return
					}
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
				} else if !stopAt.IsZero() && due.After(stopAt) {
					return
				}
				c, counted := do(i)
				d := time.Since(due)
				if !counted {
					continue
				}
				b.counts[c].Add(1)
				sh.mu.Lock()
				record(sh.h, d)
				sh.mu.Unlock()
			}
		})
	}
	wg.Wait()
	end := time.Now()
	close(done)
	<-progressDone
	h := newHistogram()
	for i := range shards {
		h.Merge(shards[i].h)
	}
	return crowdRun{start: start, end: end, hist: h}
}

type histShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// fill copies a crowd's measurements into res.
func (b *runner) fill(res *Result, c crowdRun) {
	var counts [nClasses]int64
	for i := range counts {
		counts[i] = b.counts[i].Load()
	}
	res.Outcomes = outcomesOf(counts)
	res.Requests = res.Outcomes.Total()
	res.Seconds = c.end.Sub(c.start).Seconds()
	if res.Seconds > 0 {
		res.RPS = float64(res.Requests) / res.Seconds
	}
	res.Latency = latencyOf(c.hist)
}

// report prints a progress line a second until done.
func (b *runner) report(phase string, start time.Time, done <-chan struct{}) {
	if b.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			var c [nClasses]int64
			for i := range c {
				c[i] = b.counts[i].Load()
			}
			o := outcomesOf(c)
			total := o.Total()
			fmt.Fprintf(b.cfg.Progress, "[%5.1fs] %-6s %9d requests %7d/s  202 %d  409 %d  410 %d  429 %d  503 %d  200 %d  other %d  error %d\n",
				now.Sub(start).Seconds(), phase, total, total-last, o.Accepted, o.Duplicate, o.SoldOut, o.RateLimited, o.Busy, o.OK, o.Other, o.Err)
			last = total
		}
	}
}

// lockedWriter lets several goroutines write whole lines to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (b *runner) progress(format string, args ...any) {
	if b.cfg.Progress != nil {
		fmt.Fprintf(b.cfg.Progress, format+"\n", args...)
	}
}

// send makes one request and returns its status, 0 when there was no
// answer. The body is drained so the connection is reused.
func (b *runner) send(ctx context.Context, method, url, auth string) int {
	status, _ := b.buy(ctx, method, url, auth)
	return status
}

// buy is send that also returns the ticket of a 202's body ("" when it
// has none).
func (b *runner) buy(ctx context.Context, method, url, auth string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, ""
	}
	if auth != "" {
		req.Header["Authorization"] = []string{auth}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		var q struct{ Ticket string }
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, "" // the answer was lost with its connection
		}
		_ = json.Unmarshal(raw, &q)
		return resp.StatusCode, q.Ticket
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, ""
}

// loginWait bounds how long login waits out the server's per-phone login
// budget (10 at once, then one every 6 s): runs started back to back
// all log the admin in.
const loginWait = time.Minute

// login logs the admin in, waiting out 429s for up to loginWait.
func (b *runner) login(ctx context.Context, base string, out any) error {
	deadline := time.Now().Add(loginWait)
	for {
		err := b.call(ctx, "POST", base+"/api/sessions", "", map[string]string{"phone": b.cfg.AdminPhone, "password": b.cfg.AdminPassword}, 200, out)
		var he *httpError
		if !errors.As(err, &he) || he.status != http.StatusTooManyRequests || time.Now().Add(he.retryAfter).After(deadline) {
			return err
		}
		b.progress("admin login refused for now (429); trying again in %v", he.retryAfter)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(he.retryAfter):
		}
	}
}

// httpError is an answer other than the one expected.
type httpError struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration // Retry-After of a 429 or 503, at least a second
}

func (e *httpError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message)
	}
	return fmt.Sprintf("status %d: %s", e.status, e.message)
}

// call sends a JSON request and decodes the answer into out, or returns an
// *httpError when the status is not want.
func (b *runner) call(ctx context.Context, method, url, token string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(token, "Bearer "))
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		var e struct {
			Error struct{ Code, Message string }
		}
		he := &httpError{status: resp.StatusCode, message: strings.TrimSpace(string(raw)), retryAfter: time.Second}
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 1 {
			he.retryAfter = time.Duration(n) * time.Second
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
			he.code, he.message = e.Error.Code, e.Error.Message
		}
		if len(he.message) > 200 {
			he.message = he.message[:200]
		}
		return he
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	return nil
}
