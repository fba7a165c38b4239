package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"seckill"
)

// The push channel of api.md, GET /api/ws.
//
// What a socket costs is the constraint (the target: 10,000 idle sockets in
// under 300 MB for the whole process), so an idle socket holds exactly one
// goroutine: the reader coder/websocket's CloseRead starts, which answers
// pings, reads pongs and notices the close. The handler returns once the
// socket is registered (ending the HTTP connection's goroutine). A writer
// goroutine runs only while messages wait for a socket; pings run on a
// per-socket timer, whose goroutine lives only while a ping waits for its
// pong; and context.AfterFunc on the reader's context unregisters a socket
// when it closes, however it closes.
//
// A socket lives no longer than the session that opened it (wssession.go):
// a second per-socket timer, which holds no goroutine while it waits,
// looks the session up again at its expiry, and a revocation (a logout or
// DeleteUserSessions on any instance) closes the session's sockets through
// an index by token hash.
//
// The bus callback never blocks on a client: it hands the encoded message
// to each of the user's sockets (a mutex held for an append) and returns. A
// client that lets SendBuffer messages pile up, or takes longer than
// WriteTimeout to take one, is dropped.

// PushOrderResult is the type of the push of a purchase's outcome.
const PushOrderResult = "order_result"

// ResultMessage is the push of a purchase's outcome:
// {"type":"order_result","sale_id":…,"status":…,"order_id":…,"reason":…,
// "ticket":…}. Its status, order_id, reason and ticket are those GET
// /api/sales/{id}/result answers, field for field, but for a late request's
// failure: /result answers the buyer's order instead when SQL holds one.
// The ticket names the purchase (seckill.Result).
type ResultMessage struct {
	Type   string `json:"type"` // PushOrderResult
	SaleID int64  `json:"sale_id"`
	seckill.Result
}

// PushOrderStatus is the type of the push of an order's move.
const PushOrderStatus = "order_status"

// StatusMessage is the push of an order's move (paid, cancelled,
// refunded): {"type":"order_status","order_id":…,"status":…}. It reaches
// the buyer on whichever instance holds the socket: the move is published
// on the result bus (seckill.OrderStatusMessage).
type StatusMessage struct {
	Type    string              `json:"type"` // PushOrderStatus
	OrderID int64               `json:"order_id"`
	Status  seckill.OrderStatus `json:"status"`
}

// WSConfig tunes GET /api/ws; zero values take the defaults.
type WSConfig struct {
	// PingInterval is how often a socket is pinged (default 20 s). A socket
	// whose pong has not come back two intervals after the ping, that is
	// one that missed two pongs, is dropped.
	PingInterval time.Duration
	// SendBuffer is how many messages may wait for one socket (default 16).
	// A client that lets more pile up is dropped rather than waited for.
	SendBuffer int
	// WriteTimeout bounds the writing of one message (default 10 s); a
	// client slower than that is dropped.
	WriteTimeout time.Duration
	// MaxPerUser is how many sockets one user may hold on this instance
	// (default 16); the handshake of one more is answered 429 rate_limited.
	MaxPerUser int
	// MaxPerAddress is how many sockets one client address (the per-IP
	// limits' key: an IPv4 address, an IPv6 /64) may hold on this
	// instance, whatever accounts they belong to (default 1024); the
	// handshake of one more is answered 429 rate_limited. MaxPerUser
	// alone let one address hold 16 sockets for every account it had
	// (registered over days or from elsewhere), each a connection, a
	// goroutine and buffers, for as long as it answered pings. Negative:
	// no limit.
	MaxPerAddress int
	// MaxTotal is how many sockets this instance holds at most (0: no
	// limit); the handshake of one more is answered 429 rate_limited and
	// the page polls instead. A socket keeps its connection for good, so
	// serve sets half of --max-conns: without it, a few addresses with
	// enough accounts held every connection of the listener with sockets,
	// which a full listener never closes for a newcomer (found by review).
	MaxTotal int
	// CloseGrace is how long Close waits for clients to answer its close
	// frame before cutting the connections that did not (default 2 s).
	CloseGrace time.Duration
	// SaleInterval is how often, while sockets are open, the sales are
	// compared with the gate for the sale push (salepush.go; default
	// 250 ms): a sale is pushed at most once per interval.
	SaleInterval time.Duration
	// SaleTicks, when set, replaces SaleInterval's ticker: each value
	// received is one comparison (tests drive the push with it); a zero
	// time is none, only a sign that the comparison before it is over.
	SaleTicks <-chan time.Time
	// DashInterval is how often, while an admin's dashboard socket
	// (GET /api/admin/ws) is open, the dashboard is streamed to it
	// (dashboard.go; default 1 s).
	DashInterval time.Duration
	// DashTicks, when set, replaces DashInterval's ticker (tests; a zero
	// time streams nothing, as SaleTicks').
	DashTicks <-chan time.Time
}

func (c *WSConfig) defaults() {
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.SendBuffer <= 0 {
		c.SendBuffer = 16
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxPerUser <= 0 {
		c.MaxPerUser = 16
	}
	if c.MaxPerAddress == 0 {
		c.MaxPerAddress = 1024
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = 2 * time.Second
	}
	if c.SaleInterval <= 0 {
		c.SaleInterval = 250 * time.Millisecond
	}
	if c.DashInterval <= 0 {
		c.DashInterval = time.Second
	}
}

// hubShards spreads the users over locks, so that results for different
// users and sockets opening and closing rarely contend.
const hubShards = 32

// hub holds the open sockets by user and delivers pushes to them.
type hub struct {
	cfg   WSConfig
	bus   seckill.ResultBus
	log   *slog.Logger
	gauge func(delta int)

	// ctx is the parent of every socket's reader: cancelling it (Close does,
	// last) cuts every connection.
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex // guards unsubscribe
	unsubscribe func()
	closed      atomic.Bool

	open    sync.WaitGroup // one per registered socket, done once unregistered
	sockets atomic.Int64   // registered sockets
	shards  [hubShards]hubShard
	// bySession indexes the sockets by the token hash of their session, so
	// that a revocation finds them without a walk. A socket enters it
	// under its user shard's lock, which is always taken first.
	bySession [hubShards]sessionShard

	// sessionOf looks a socket's session up again (account.Service's
	// SessionOf); nil: sockets are not checked against their sessions.
	sessionOf func(ctx context.Context, tokenHash []byte) (*seckill.Session, error)
	// resets counts the times revocations may have been missed
	// (recheckAll); a socket whose count is older looks its session up
	// at its next ping.
	resets atomic.Uint64

	dashMu sync.Mutex
	dash   map[*wsConn]struct{} // the admins' dashboard sockets

	// addrs counts the registered sockets per client address
	// (MaxPerAddress). addrMu is taken under a user shard's lock, never
	// the other way round.
	addrMu sync.Mutex
	addrs  map[string]int
	total  int // sockets in addrs (MaxTotal)
}

type hubShard struct {
	mu    sync.RWMutex
	users map[int64][]*wsConn
}

type sessionShard struct {
	mu    sync.Mutex
	conns map[string][]*wsConn // by string(token hash)
}

func newHub(bus seckill.ResultBus, cfg WSConfig, log *slog.Logger, gauge func(int)) *hub {
	cfg.defaults()
	if gauge == nil {
		gauge = func(int) {}
	}
	h := &hub{cfg: cfg, bus: bus, log: log, gauge: gauge, dash: map[*wsConn]struct{}{}, addrs: map[string]int{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	for i := range h.shards {
		h.shards[i].users = map[int64][]*wsConn{}
		h.bySession[i].conns = map[string][]*wsConn{}
	}
	return h
}

// start subscribes to the result bus unless it did already. It runs at
// the first handshake rather than at New, so that a bus that fails now is
// tried again at the next one. EBusy after Close or while the bus fails.
func (h *hub) start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return seckill.Errorf(seckill.EBusy, "the server is shutting down")
	}
	if h.unsubscribe != nil {
		return nil
	}
	cancel, err := h.bus.SubscribeResults(h.deliver)
	if err != nil {
		// The bus's error names servers and says what the library
		// thinks: the log's business, not the client's.
		h.log.Warn("websocket push: cannot subscribe to the result bus", "err", err)
		return seckill.Errorf(seckill.EBusy, "push is unavailable; poll the result, or try again later")
	}
	h.unsubscribe = cancel
	return nil
}

// deliver is the result bus callback: every result of every instance
// passes here, and goes to the buyer's sockets on this one.
func (h *hub) deliver(r seckill.OrderResult) {
	if r.IsOrderStatus() {
		h.send(r.UserID, func() any {
			return StatusMessage{Type: PushOrderStatus, OrderID: r.OrderID, Status: r.OrderStatus}
		})
		return
	}
	h.send(r.UserID, func() any {
		return ResultMessage{Type: PushOrderResult, SaleID: r.SaleID, Result: r.Result}
	})
}

func (h *hub) shard(user int64) *hubShard {
	return &h.shards[uint64(user)%hubShards]
}

// conns appends the user's sockets to buf.
func (h *hub) conns(user int64, buf []*wsConn) []*wsConn {
	sh := h.shard(user)
	sh.mu.RLock()
	buf = append(buf, sh.users[user]...)
	sh.mu.RUnlock()
	return buf
}

// send queues the message msg returns, encoded once, on every socket of
// the user, and returns on how many. msg is called only when the user has
// a socket here. It never waits for a client.
func (h *hub) send(user int64, msg func() any) int {
	var buf [4]*wsConn
	conns := h.conns(user, buf[:0])
	if len(conns) == 0 {
		return 0
	}
	b, err := json.Marshal(msg())
	if err != nil {
		h.log.Warn("websocket push not encodable", "user", user, "err", err)
		return 0
	}
	n := 0
	for _, wc := range conns {
		if wc.enqueue(b) {
			n++
		}
	}
	return n
}

// broadcast queues b, encoded once by the caller, on every socket here,
// best-effort (offer), and returns on how many. It never waits for a
// client; the shards are walked one at a time so that results and
// handshakes wait at most for one shard's copy.
func (h *hub) broadcast(b []byte) int {
	var conns []*wsConn
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		conns = conns[:0]
		sh.mu.RLock()
		for _, cs := range sh.users {
			conns = append(conns, cs...)
		}
		sh.mu.RUnlock()
		for _, wc := range conns {
			if wc.offer(b) {
				n++
			}
		}
		clear(conns) // let closed sockets go
	}
	return n
}

// broadcastDash offers b, encoded once, to every dashboard socket here
// that keep allows (keep drops the others it must).
func (h *hub) broadcastDash(b []byte, keep func(*wsConn) bool) int {
	h.dashMu.Lock()
	conns := make([]*wsConn, 0, len(h.dash))
	for wc := range h.dash {
		conns = append(conns, wc)
	}
	h.dashMu.Unlock()
	n := 0
	for _, wc := range conns {
		if keep(wc) && wc.offer(b) {
			n++
		}
	}
	return n
}

// dashSockets counts the dashboard sockets here.
func (h *hub) dashSockets() int {
	h.dashMu.Lock()
	defer h.dashMu.Unlock()
	return len(h.dash)
}

// register reserves a place for a socket of the user before the
// handshake, so that results published while it completes wait in the
// socket's queue: once a client has its socket, every result published
// after its handshake was authenticated reaches it. A dash socket also
// gets the dashboard stream. expires is when the session ends unless it
// is extended; addr is the client's address (clientIP). ERateLimited when
// the user holds MaxPerUser sockets here already, the address
// MaxPerAddress, or the instance MaxTotal; EBusy after Close.
func (h *hub) register(user int64, addr string, session []byte, expires time.Time, dash bool) (*wsConn, error) {
	wc := &wsConn{h: h, user: user, addr: addr, session: session, expires: expires, dash: dash, resets: h.resets.Load()}
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if h.closed.Load() {
		return nil, seckill.Errorf(seckill.EBusy, "the server is shutting down")
	}
	if n := len(sh.users[user]); n >= h.cfg.MaxPerUser {
		return nil, seckill.Errorf(seckill.ERateLimited, "too many open sockets; at most %d", h.cfg.MaxPerUser)
	}
	h.addrMu.Lock()
	if h.cfg.MaxPerAddress > 0 && h.addrs[addr] >= h.cfg.MaxPerAddress {
		h.addrMu.Unlock()
		return nil, seckill.Errorf(seckill.ERateLimited, "too many open sockets from your address; at most %d", h.cfg.MaxPerAddress)
	}
	if h.cfg.MaxTotal > 0 && h.total >= h.cfg.MaxTotal {
		h.addrMu.Unlock()
		return nil, seckill.Errorf(seckill.ERateLimited, "too many open sockets on this server; at most %d", h.cfg.MaxTotal)
	}
	h.addrs[addr]++
	h.total++
	h.addrMu.Unlock()
	sh.users[user] = append(sh.users[user], wc)
	ss := h.sessionShard(session)
	ss.mu.Lock()
	ss.conns[string(session)] = append(ss.conns[string(session)], wc)
	ss.mu.Unlock()
	h.open.Add(1)
	h.sockets.Add(1)
	if dash {
		h.dashMu.Lock()
		h.dash[wc] = struct{}{}
		h.dashMu.Unlock()
	}
	return wc, nil
}

// sessionShard is the shard of bySession holding the token hash's
// sockets. A token hash is a SHA-256: its first byte spreads them.
func (h *hub) sessionShard(tokenHash []byte) *sessionShard {
	var b byte
	if len(tokenHash) > 0 {
		b = tokenHash[0]
	}
	return &h.bySession[b%hubShards]
}

// closeSession ends the sockets opened with the session whose token hash
// is session, with CloseSessionEnded: a logged-out or revoked session must
// stop receiving pushes. It does not wait for them to close.
func (h *hub) closeSession(session []byte) {
	ss := h.sessionShard(session)
	ss.mu.Lock()
	conns := append([]*wsConn(nil), ss.conns[string(session)]...)
	ss.mu.Unlock()
	for _, wc := range conns {
		wc.end("session ended")
	}
}

// recheckAll makes every socket look its session up again at its next
// ping: revocations may have been missed (the feed that brings them was
// cut). The pings spread the lookups over a PingInterval rather than
// asking the store for every socket at once.
func (h *hub) recheckAll() { h.resets.Add(1) }

// unregister gives up a place whose handshake failed.
func (h *hub) unregister(wc *wsConn) {
	h.remove(wc)
	h.open.Done()
}

// attach gives a registered place its accepted socket, starts reading and
// pinging it and writes what waited meanwhile. After Close it closes the
// socket instead.
func (h *hub) attach(wc *wsConn, c *websocket.Conn) {
	h.gauge(1)
	// Data messages from the client are not part of the contract:
	// CloseRead closes the socket on one. gone runs when the reader ends,
	// whatever ended it.
	read := c.CloseRead(h.ctx)
	context.AfterFunc(read, wc.gone)
	wc.mu.Lock()
	wc.c = c
	closing, dead := h.closed.Load(), wc.dead
	start := !closing && !dead && len(wc.queue) > 0
	if start {
		wc.writing = true
	}
	if !closing && !dead {
		wc.ping = time.AfterFunc(h.cfg.PingInterval, wc.pingOnce)
		if h.sessionOf != nil {
			wc.expiry = time.AfterFunc(time.Until(wc.expires), wc.checkSession)
		}
	}
	ended := wc.ended
	wc.mu.Unlock()
	switch {
	case closing: // Close may have looked before c was set
		go func() { _ = c.Close(websocket.StatusGoingAway, "server shutting down") }()
	case dead && ended: // its session ended while the handshake completed
		go func() { _ = c.Close(CloseSessionEnded, "session ended") }()
	case dead: // dropped while the handshake completed
		go func() { _ = c.CloseNow() }()
	case start:
		go wc.write()
	}
}

// remove unregisters wc.
func (h *hub) remove(wc *wsConn) {
	if wc.dash {
		h.dashMu.Lock()
		delete(h.dash, wc)
		h.dashMu.Unlock()
	}
	sh := h.shard(wc.user)
	sh.mu.Lock()
	if removeConn(sh.users, wc.user, wc) {
		h.sockets.Add(-1)
		h.addrMu.Lock()
		if h.addrs[wc.addr]--; h.addrs[wc.addr] <= 0 {
			delete(h.addrs, wc.addr)
		}
		h.total--
		h.addrMu.Unlock()
	}
	ss := h.sessionShard(wc.session)
	ss.mu.Lock()
	removeConn(ss.conns, string(wc.session), wc)
	ss.mu.Unlock()
	sh.mu.Unlock()
}

// removeConn takes wc out of m[key] (order not kept), deleting the key
// once it holds none, and reports whether wc was there.
func removeConn[K comparable](m map[K][]*wsConn, key K, wc *wsConn) bool {
	conns := m[key]
	i := slices.Index(conns, wc)
	if i < 0 {
		return false
	}
	conns[i] = conns[len(conns)-1]
	conns[len(conns)-1] = nil
	if conns = conns[:len(conns)-1]; len(conns) == 0 {
		delete(m, key)
	} else {
		m[key] = conns
	}
	return true
}

// close stops pushing: it leaves the bus, sends every socket a going-away
// close frame, waits up to CloseGrace for the handshakes, cuts the rest,
// and returns once every socket is unregistered.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed.Swap(true) {
		h.mu.Unlock()
		return
	}
	unsubscribe := h.unsubscribe
	h.unsubscribe = nil
	h.mu.Unlock()
	if unsubscribe != nil {
		unsubscribe()
	}
	// No socket registers after closed is set: register checks it under
	// its shard's lock, and this walk takes every shard's lock after
	// setting it.
	var all []*wsConn
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, conns := range sh.users {
			all = append(all, conns...)
		}
		sh.mu.RUnlock()
	}
	for _, wc := range all {
		wc.mu.Lock()
		c := wc.c
		wc.mu.Unlock()
		if c != nil { // else attach closes it
			go func() { _ = c.Close(websocket.StatusGoingAway, "server shutting down") }()
		}
	}
	done := make(chan struct{})
	go func() {
		h.open.Wait()
		close(done)
	}()
	t := time.NewTimer(h.cfg.CloseGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	h.cancel()
	<-done
}

// wsConn is one open socket.
type wsConn struct {
	h       *hub
	user    int64
	addr    string // the client's address, as MaxPerAddress counts it
	session []byte // token hash of the session that opened it
	dash    bool   // an admin's dashboard socket (GET /api/admin/ws)
	// resets is hub.resets when the session was last known to last
	// (only the ping timer's goroutine touches it after register).
	resets uint64

	mu      sync.Mutex
	c       *websocket.Conn // nil until the handshake completed
	ping    *time.Timer
	expires time.Time   // the session's expiry as last looked up
	expiry  *time.Timer // looks the session up at expires (wssession.go)
	ended   bool        // dead because its session ended: closed with CloseSessionEnded
	queue   [][]byte    // messages not yet taken by the writer
	pending int         // messages queued or being written
	writing bool        // a writer goroutine runs
	dead    bool
}

// enqueue hands b to the socket's writer, starting one if none runs (and
// the handshake completed). A socket with SendBuffer messages pending is
// dropped instead. It reports whether b was queued.
func (wc *wsConn) enqueue(b []byte) bool { return wc.put(b, false) }

// offer is enqueue for a best-effort message (a sale push): a socket with
// half its SendBuffer pending skips b rather than being dropped, keeping
// the other half for what must not be skipped (its user's results). It
// reports whether b was queued.
func (wc *wsConn) offer(b []byte) bool { return wc.put(b, true) }

func (wc *wsConn) put(b []byte, bestEffort bool) bool {
	wc.mu.Lock()
	if wc.dead {
		wc.mu.Unlock()
		return false
	}
	if bestEffort && wc.pending >= max(wc.h.cfg.SendBuffer/2, 1) {
		wc.mu.Unlock()
		return false
	}
	if wc.pending >= wc.h.cfg.SendBuffer {
		wc.mu.Unlock()
		wc.drop(fmt.Sprintf("%d messages waiting", wc.pending))
		return false
	}
	wc.pending++
	wc.queue = append(wc.queue, b)
	start := !wc.writing && wc.c != nil
	if start {
		wc.writing = true
	}
	wc.mu.Unlock()
	if start {
		go wc.write()
	}
	return true
}

// write sends what is queued, in order, until nothing is; then its
// goroutine ends.
func (wc *wsConn) write() {
	c := wc.conn()
	for {
		wc.mu.Lock()
		batch := wc.queue
		wc.queue = nil
		if len(batch) == 0 || wc.dead {
			wc.writing = false
			wc.mu.Unlock()
			return
		}
		wc.mu.Unlock()
		for _, b := range batch {
			ctx, cancel := context.WithTimeout(wc.h.ctx, wc.h.cfg.WriteTimeout)
			err := c.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				wc.drop("write: " + err.Error())
				wc.mu.Lock()
				wc.writing = false
				wc.mu.Unlock()
				return
			}
			wc.mu.Lock()
			wc.pending--
			wc.mu.Unlock()
		}
	}
}

// pingOnce pings and waits up to two intervals for the pong; it runs on
// the ping timer's goroutine and re-arms the timer after a pong.
func (wc *wsConn) pingOnce() {
	interval := wc.h.cfg.PingInterval
	ctx, cancel := context.WithTimeout(wc.h.ctx, 2*interval)
	err := wc.conn().Ping(ctx)
	cancel()
	if err != nil {
		wc.drop("no pong: " + err.Error())
		return
	}
	if r := wc.h.resets.Load(); r != wc.resets && wc.h.sessionOf != nil {
		// Revocations may have been missed since the session was last
		// looked up: look again (recheckAll).
		wc.resets = r
		wc.checkSession()
	}
	wc.mu.Lock()
	if !wc.dead {
		wc.ping.Reset(interval)
	}
	wc.mu.Unlock()
}

// conn is the socket (nil before the handshake completed).
func (wc *wsConn) conn() *websocket.Conn {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.c
}

// drop cuts the connection without a close handshake: the client is too
// slow or gone, and a close frame would wait on it too. Its reader then
// ends and gone unregisters it.
func (wc *wsConn) drop(why string) {
	wc.mu.Lock()
	dead, c := wc.dead, wc.c
	wc.dead = true
	wc.mu.Unlock()
	if !dead {
		wc.h.log.Info("websocket dropped", "user", wc.user, "why", why)
	}
	if c != nil { // else attach sees dead and closes it
		// CloseNow waits for the reader goroutine to end: not on the
		// caller, which may be the bus callback.
		go func() { _ = c.CloseNow() }()
	}
}

// gone runs once the socket's reader ended, whatever closed it.
func (wc *wsConn) gone() {
	wc.mu.Lock()
	wc.dead = true
	if wc.ping != nil {
		wc.ping.Stop()
	}
	if wc.expiry != nil {
		wc.expiry.Stop()
	}
	wc.queue = nil
	wc.mu.Unlock()
	wc.h.remove(wc)
	wc.h.gauge(-1)
	wc.h.open.Done()
}

// Close closes every WebSocket (http.Server.Shutdown leaves hijacked
// connections alone) and stops pushing; later handshakes get 503. Call it
// on shutdown, once the HTTP server no longer accepts requests.
func (s *Server) Close() error {
	if s.hub != nil {
		s.sales.stop()
		s.dashPush.stop()
		s.hub.close()
	}
	s.dash.close()
	return nil
}
