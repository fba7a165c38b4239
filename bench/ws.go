package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ModeWSIdle is the WebSocket mode: idle sockets and the server's memory.
const ModeWSIdle = "ws-idle"

// WSIdle is what the WebSocket mode measured: the server's memory before
// the sockets opened and while they were held idle.
type WSIdle struct {
	Sockets     int     `json:"sockets"` // asked for
	Opened      int     `json:"opened"`
	Users       int     `json:"users"`
	OpenSeconds float64 `json:"open_seconds"`
	HoldSeconds float64 `json:"hold_seconds"`
	// ClosedEarly counts sockets that closed during the hold.
	ClosedEarly int          `json:"closed_early"`
	Before      ServerMemory `json:"before"`
	After       ServerMemory `json:"after"`
	// RSSPerSocket is (After.RSS − Before.RSS) ÷ Opened.
	RSSPerSocket   float64 `json:"rss_per_socket_bytes"`
	HeapPerSocket  float64 `json:"heap_per_socket_bytes"`
	StackPerSocket float64 `json:"stack_per_socket_bytes"`
}

// ServerMemory is what the server's /metrics says of its memory.
type ServerMemory struct {
	RSS        int64 `json:"rss_bytes"`         // process_resident_memory_bytes
	HeapInuse  int64 `json:"heap_inuse_bytes"`  // go_memstats_heap_inuse_bytes
	StackInuse int64 `json:"stack_inuse_bytes"` // go_memstats_stack_inuse_bytes
	Goroutines int64 `json:"goroutines"`        // go_goroutines
	WebSockets int64 `json:"websockets"`        // seckill_websocket_connections
}

// wsIdle provisions buyers, reads the server's memory, opens WSIdle sockets
// to GET /api/ws (WSPerUser per buyer, Conns handshakes at a time), holds
// them for WSHold answering pings, reads the memory again, and closes them.
func (b *runner) wsIdle(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	base := strings.TrimRight(cfg.Target, "/")
	n := cfg.WSIdle
	ws := &WSIdle{Sockets: n, Users: (n + cfg.WSPerUser - 1) / cfg.WSPerUser}
	res := &Result{Mode: ModeWSIdle, Target: base, Conns: cfg.Conns, WS: ws}

	var login struct{ Token string }
	if err := b.call(ctx, "POST", base+"/api/sessions", "", map[string]string{"phone": cfg.AdminPhone, "password": cfg.AdminPassword}, 200, &login); err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	b.admin = login.Token
	users, err := b.provision(ctx, base, ws.Users)
	if err != nil {
		return nil, err
	}
	ops := strings.TrimRight(cfg.Ops, "/")
	if ws.Before, err = b.memory(ctx, ops); err != nil {
		return nil, err
	}

	url := "ws" + strings.TrimPrefix(base, "http") + "/api/ws"
	// One transport for every handshake; no proxy from the environment.
	client := &http.Client{Transport: &http.Transport{
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	conns := make([]*websocket.Conn, n)
	var (
		opened, closed atomic.Int64
		holding        atomic.Bool
		firstErr       atomic.Pointer[error]
		next           atomic.Int64
		wg             sync.WaitGroup
	)
	b.progress("opening %d sockets for %d buyers, %d handshakes at a time", n, len(users), cfg.Conns)
	t0 := time.Now()
	for range min(cfg.Conns, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{
					HTTPClient: client,
					HTTPHeader: http.Header{"Authorization": {users[i/cfg.WSPerUser].auth}},
				})
				cancel()
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				conns[i] = c
				opened.Add(1)
				// The reader answers the server's pings and tells when the
				// socket closes.
				context.AfterFunc(c.CloseRead(context.Background()), func() {
					if holding.Load() {
						closed.Add(1)
					}
				})
			}
		})
	}
	wg.Wait()
	ws.OpenSeconds = time.Since(t0).Seconds()
	ws.Opened = int(opened.Load())
	defer closeAll(conns, cfg.Conns)
	if e := firstErr.Load(); e != nil {
		b.progress("%d of %d handshakes failed; the first: %v", n-ws.Opened, n, *e)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	holding.Store(true)
	b.progress("%d sockets open after %.2fs; holding them idle for %v", ws.Opened, ws.OpenSeconds, cfg.WSHold)
	t0 = time.Now()
	select {
	case <-time.After(cfg.WSHold):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ws.HoldSeconds = time.Since(t0).Seconds()
	if ws.After, err = b.memory(ctx, ops); err != nil {
		return nil, err
	}
	holding.Store(false)
	ws.ClosedEarly = int(closed.Load())
	if ws.Opened > 0 {
		per := func(after, before int64) float64 { return float64(after-before) / float64(ws.Opened) }
		ws.RSSPerSocket = per(ws.After.RSS, ws.Before.RSS)
		ws.HeapPerSocket = per(ws.After.HeapInuse, ws.Before.HeapInuse)
		ws.StackPerSocket = per(ws.After.StackInuse, ws.Before.StackInuse)
	}
	res.OK = len(res.Failed()) == 0
	return res, nil
}

// closeAll closes the sockets, par at a time, with the close handshake.
func closeAll(conns []*websocket.Conn, par int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(par, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if c := conns[i]; c != nil {
					_ = c.Close(websocket.StatusNormalClosure, "")
				}
			}
		})
	}
	wg.Wait()
}

// memory reads the server's memory figures from the /metrics of its
// operations listener at ops.
func (b *runner) memory(ctx context.Context, ops string) (ServerMemory, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", ops+"/metrics", nil)
	if err != nil {
		return ServerMemory{}, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return ServerMemory{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return ServerMemory{}, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	vals := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			vals[name] = int64(f)
		}
	}
	if err := sc.Err(); err != nil {
		return ServerMemory{}, fmt.Errorf("metrics: %w", err)
	}
	m := ServerMemory{
		RSS: vals["process_resident_memory_bytes"], HeapInuse: vals["go_memstats_heap_inuse_bytes"],
		StackInuse: vals["go_memstats_stack_inuse_bytes"], Goroutines: vals["go_goroutines"],
		WebSockets: vals["seckill_websocket_connections"],
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("metrics: the server reports no process_resident_memory_bytes")
	}
	return m, nil
}

// wsFailed lists what went wrong in a ws-idle run.
func (w *WSIdle) failed() []string {
	var out []string
	if w.Opened < w.Sockets {
		out = append(out, fmt.Sprintf("ws: %d of %d sockets opened", w.Opened, w.Sockets))
	}
	if w.ClosedEarly > 0 {
		out = append(out, fmt.Sprintf("ws: %d sockets closed while idle", w.ClosedEarly))
	}
	if w.After.WebSockets < int64(w.Opened-w.ClosedEarly) {
		out = append(out, fmt.Sprintf("ws: the server counts %d open sockets, fewer than the %d held", w.After.WebSockets, w.Opened-w.ClosedEarly))
	}
	return out
}

// writeText writes the ws-idle figures for people.
func (w *WSIdle) writeText(b *strings.Builder) {
	mb := func(v int64) float64 { return float64(v) / (1 << 20) }
	fmt.Fprintf(b, "sockets     %d of %d open (%d buyers), opened in %.2fs, held idle %.1fs, %d closed meanwhile\n",
		w.Opened, w.Sockets, w.Users, w.OpenSeconds, w.HoldSeconds, w.ClosedEarly)
	for _, m := range []struct {
		name string
		m    ServerMemory
	}{{"before", w.Before}, {"after", w.After}} {
		fmt.Fprintf(b, "%-11s RSS %.1f MiB  heap in use %.1f MiB  stacks %.1f MiB  goroutines %d  websockets %d\n",
			m.name, mb(m.m.RSS), mb(m.m.HeapInuse), mb(m.m.StackInuse), m.m.Goroutines, m.m.WebSockets)
	}
	fmt.Fprintf(b, "per socket  RSS %.1f KiB  heap %.1f KiB  stack %.1f KiB\n",
		w.RSSPerSocket/1024, w.HeapPerSocket/1024, w.StackPerSocket/1024)
}
