package sqldb_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/sqldb"
)

// killer ends every server session of the database a test opened and
// says how many it ended.
type killer func(t *testing.T) int

// testSessionsKilled: the server ends every session of the engine's pools
// (pg_terminate_backend, KILL) three times while readers and writers run.
// Each pooled connection then fails the statement it runs next. Reads run
// again on another connection and never fail; a write transaction whose
// connection broke before its commit runs again; what still fails is busy
// (503, retry), never internal (it was 500: found by a drill).
func testSessionsKilled(t *testing.T, db *sqldb.DB, kill killer) {
	ctx := context.Background()
	now := time.Now()
	sale, users, reqs := saleWithBuyers(t, db, 1000, 50, now)
	res, err := db.WriteOrders(ctx, reqs, now.Add(time.Hour))
	mustOK(t, err)

	var (
		stop             atomic.Bool
		reads, writes    atomic.Int64
		busy             atomic.Int64
		mu               sync.Mutex
		failed           []error
		wg               sync.WaitGroup
		phones           atomic.Int64
		readFns, writeFn = []func(i int) error{
			func(int) error { _, err := db.Sale(ctx, sale.ID); return err },
			func(int) error { _, err := db.SaleStats(ctx, sale.ID); return err },
			func(i int) error { _, err := db.Order(ctx, res[i%len(res)].OrderID); return err },
			func(i int) error { _, err := db.OrdersByUser(ctx, users[i%len(users)].ID); return err },
			func(int) error { _, err := db.Now(ctx); return err },
			func(int) error { _, _, err := db.SaleSnapshot(ctx, sale.ID); return err },
		}, func(i int) error {
			if i%2 == 0 {
				return db.MarkPayOpened(ctx, res[i%len(res)].OrderID)
			}
			u := makeUsers(1000+int(phones.Add(1)), 1)[0]
			return db.CreateUser(ctx, u)
		}
	)
	fail := func(err error) {
		mu.Lock()
		failed = append(failed, err)
		mu.Unlock()
	}
	for w := range 8 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				if err := readFns[i%len(readFns)](i); err != nil {
					fail(fmt.Errorf("read: %w", err))
				}
				reads.Add(1)
			}
		})
	}
	for w := range 4 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				err := writeFn(i)
				switch seckill.ErrorCode(err) {
				case "":
				case seckill.EBusy:
					busy.Add(1)
				default:
					fail(fmt.Errorf("write: %w", err))
				}
				writes.Add(1)
			}
		})
	}
	killed := 0
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		killed += kill(t)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d sessions killed; %d reads, %d writes, %d writes busy", killed, reads.Load(), writes.Load(), busy.Load())
	if killed < 3 {
		t.Fatalf("%d sessions killed; the test needs the pools' sessions ended while they work", killed)
	}
	for i, err := range failed {
		if i == 10 {
			t.Errorf("… %d failures in all", len(failed))
			break
		}
		t.Errorf("%v (code %s)", err, seckill.ErrorCode(err))
	}
	if reads.Load() == 0 || writes.Load() == 0 {
		t.Fatalf("%d reads, %d writes: the workers did not run", reads.Load(), writes.Load())
	}
}

// saleWithBuyers creates a sale of stock units starting at now, n users,
// and a purchase request of each for it.
func saleWithBuyers(t *testing.T, db *sqldb.DB, stock int64, n int, now time.Time) (*seckill.Sale, []*seckill.User, []seckill.OrderRequest) {
	t.Helper()
	ctx := context.Background()
	sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: stock, StartsAt: now, EndsAt: now.Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))
	users := makeUsers(0, n)
	mustOK(t, db.CreateUsers(ctx, users))
	reqs := make([]seckill.OrderRequest, len(users))
	for i, u := range users {
		reqs[i] = seckill.OrderRequest{SaleID: sale.ID, UserID: u.ID, Ticket: fmt.Sprintf("T%d", i), PriceCents: 1, At: now}
	}
	return sale, users, reqs
}

// testUnreachable: with the server out of reach (here a proxy in front of
// it stops, closing every connection and refusing new ones), reads and
// writes fail busy, not internal; once it is back they go through.
func testUnreachable(t *testing.T, serverURL string) {
	ctx := context.Background()
	db, p := openProxied(t, serverURL)
	now := time.Now()
	sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 10, StartsAt: now, EndsAt: now.Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))

	p.stop()
	for name, call := range map[string]func() error{
		"Sale":       func() error { _, err := db.Sale(ctx, sale.ID); return err },
		"SaleStats":  func() error { _, err := db.SaleStats(ctx, sale.ID); return err },
		"Now":        func() error { _, err := db.Now(ctx); return err },
		"CreateUser": func() error { return db.CreateUser(ctx, makeUsers(7, 1)[0]) },
		"CancelOrder": func() error {
			_, err := db.CancelOrder(ctx, 1, 0, now, false)
			return err
		},
		"MarkPayOpened": func() error { return db.MarkPayOpened(ctx, 1) },
	} {
		if err := call(); seckill.ErrorCode(err) != seckill.EBusy {
			t.Errorf("%s with the database unreachable: %v (code %q), want busy", name, err, seckill.ErrorCode(err))
		} else if msg := seckill.ErrorMessage(err); msg != "the database is unavailable; retry shortly" {
			t.Errorf("%s: message %q", name, msg)
		}
	}

	p.start(t)
	if _, err := db.Sale(ctx, sale.ID); err != nil {
		t.Errorf("Sale once the database is back: %v", err)
	}
	mustOK(t, db.CreateUser(ctx, makeUsers(7, 1)[0]))
}

// testUnresponsive: a server that accepts connections and never answers
// (frozen, or behind a proxy whose server is gone) is busy once the
// connect timeout passes, on a read and on a transaction, and neither is
// tried again for as long (found by review: pgx reports its
// connect_timeout as a context's deadline, which was taken for the
// caller's: every route answered 500 after 5 s).
// timeout is the URL's parameter that sets the connect timeout to 1 s.
func testUnresponsive(t *testing.T, serverURL string, timeout [2]string) {
	ctx := context.Background()
	db, p := openProxied(t, serverURL, timeout)
	now := time.Now()
	sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 10, StartsAt: now, EndsAt: now.Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))

	p.freeze(true)
	for _, c := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Sale", func(ctx context.Context) error { _, err := db.Sale(ctx, sale.ID); return err }},
		{"CreateUser", func(ctx context.Context) error { return db.CreateUser(ctx, makeUsers(8, 1)[0]) }},
	} {
		// A caller that would wait longer than the connect timeout: the
		// call must not wait for it (MySQL's did, a handshake being
		// bounded only by the caller).
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		err := c.call(cctx)
		cancel()
		if took := time.Since(start); seckill.ErrorCode(err) != seckill.EBusy {
			t.Errorf("%s with the database unresponsive: %v (code %q) after %v, want busy", c.name, err, seckill.ErrorCode(err), took)
		} else if took > 2500*time.Millisecond {
			t.Errorf("%s with the database unresponsive: busy after %v, want about the connect timeout (1 s)", c.name, took)
		}
	}

	p.freeze(false)
	if _, err := db.Sale(ctx, sale.ID); err != nil {
		t.Errorf("Sale once the database answers again: %v", err)
	}
}

// openProxied opens a store on the server of serverURL through a proxy
// of its own, with the URL's parameters set to those of params.
func openProxied(t *testing.T, serverURL string, params ...[2]string) (*sqldb.DB, *proxy) {
	t.Helper()
	u, err := url.Parse(serverURL)
	mustOK(t, err)
	p := startProxy(t, u.Host)
	u.Host = p.addr
	q := u.Query()
	for _, kv := range params {
		q.Set(kv[0], kv[1])
	}
	u.RawQuery = q.Encode()
	return openAt(t, u.String()), p
}

// proxy forwards TCP connections from a loopback port to a server; stop
// closes the port and every connection, start opens the same port again.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	frozen       bool // accepts connections and never answers (freeze)
	stalled      bool // holds every byte until thawed (stall)
	thaw         *sync.Cond
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	p.thaw = sync.NewCond(&p.mu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustOK(t, err)
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	mustOK(t, err)
	p.serve(ln)
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			frozen := p.frozen
			if frozen {
				p.conns[c] = true
			}
			p.mu.Unlock()
			if frozen {
				continue // held open, never answered
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[s] = true, true
			p.mu.Unlock()
			go p.pipe(s, c)
			go p.pipe(c, s)
		}
	}()
}

// freeze closes every connection and from now on accepts new ones but
// never answers them, as a frozen server (or a proxy whose server is
// gone) does; thaw forwards again.
func (p *proxy) freeze(frozen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = frozen
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// pipe copies from src to dst, holding what it read while the proxy is
// stalled, and closes dst when src ends.
func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.stalled {
				p.thaw.Wait()
			}
			p.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stall makes the proxy hold every byte, of the connections it has and of
// new ones, as a server stopped mid-statement (SIGSTOP) or a network that
// drops packets does, until called with false: then the bytes go on.
func (p *proxy) stall(stalled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = stalled
	p.thaw.Broadcast()
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = false
	p.thaw.Broadcast()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}
