// Package connlimit bounds the connections a listener holds: in all, so
// that a flood of idle keep-alive connections cannot take every file
// descriptor of the process (the embedded queue's store and SQLite need
// theirs: a store that cannot open a file fails its writes until a
// restart), and per peer address, so that one client cannot take the
// whole allowance from everyone else. When the total is reached, an idle
// keep-alive connection makes room for a new one (see ConnState).
package connlimit

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"seckill/internal/addrkey"
)

// Listener is a net.Listener that holds at most Total connections at a
// time (Accept closes an idle one, or waits for one to close, leaving the
// others in the kernel's backlog) and at most PerPeer from one peer address (the next is closed
// as soon as it is accepted). A connection counts until it is closed, also
// after an HTTP server hands it over (a WebSocket).
type Listener struct {
	net.Listener
	slots    chan struct{} // nil: no total bound
	perPeer  int           // 0: no bound per peer
	exempt   func(netip.Addr) bool
	done     chan struct{}
	close    sync.Once
	refusing chan struct{} // refusals under way without a slot (maxRefusing)

	mu      sync.Mutex
	peers   map[netip.Addr]int
	conns   map[*conn]struct{} // accepted and not closed (what evictWaiting looks through)
	refused atomic.Int64
	evicted atomic.Int64
}

// New wraps ln. total ≤ 0 sets no total bound, perPeer ≤ 0 none per peer;
// exempt (may be nil) names peers without one (a proxy in front carries
// many clients' connections). A peer is an IPv4 address or an IPv6 /64
// (one client holds a whole /64, as the rate limits count it). With both
// bounds, a peer holds at most a quarter of the total, so that one client
// cannot take every place of a small total.
func New(ln net.Listener, total, perPeer int, exempt func(netip.Addr) bool) *Listener {
	l := &Listener{Listener: ln, perPeer: max(0, perPeer), exempt: exempt, done: make(chan struct{}), refusing: make(chan struct{}, maxRefusing), peers: map[netip.Addr]int{}, conns: map[*conn]struct{}{}}
	if total > 0 {
		l.slots = make(chan struct{}, total)
		if l.perPeer > 0 {
			l.perPeer = max(1, min(l.perPeer, total/4))
		}
	}
	return l
}

// Accept takes the next connection, then a slot for it: while every slot
// is taken, it closes a waiting connection of an address that holds more
// than the newcomer's (see evictWaiting), and waits only while there is
// none, leaving the connections after this one in the kernel's backlog.
// A connection from a peer at its bound is refused before it takes a
// slot, so that it closes nobody's (found by review: a peer at its bound
// flooding new connections closed every other client's idle one).
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		addr := peerKey(ip)
		bounded := l.perPeer > 0 && ip.IsValid() && (l.exempt == nil || !l.exempt(ip))
		if bounded && l.atBound(addr) {
			l.refused.Add(1)
			l.refuseAside(c)
			continue
		}
		if l.slots != nil && !l.waitSlot(addr) {
			_ = c.Close()
			return nil, net.ErrClosed
		}
		if !l.take(addr, bounded) { // reached its bound meanwhile (another Accept)
			l.refused.Add(1)
			go l.refuse(c, true)
			continue
		}
		lc := &conn{Conn: c, l: l, addr: addr}
		lc.fresh.Store(true) // until its first request (ConnState)
		lc.waitAt.Store(time.Now().UnixNano())
		l.mu.Lock()
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		return lc, nil
	}
}

// evictEvery is how often an Accept that waits for a slot looks again for
// a waiting connection to close: one that went idle since the last look.
// (Accept takes the connection before its slot so that it closes one only
// for a client that came: taking the slot first, it waited for the next
// client holding one, and closed one every time the listener was full.)
const evictEvery = 50 * time.Millisecond

// freshGrace is how long a new connection may stay silent before a full
// listener may close it for another: a client sends its request at once,
// and one that connects and sends nothing holds a place only this long
// when places are short (found by review: silent connections, redialled,
// were never closed for others).
const freshGrace = time.Second

// waitSlot takes a slot for a connection of addr, closing waiting
// connections for one while every slot is taken; false once the listener
// is closed.
func (l *Listener) waitSlot(addr netip.Addr) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case l.slots <- struct{}{}:
			return true
		case <-l.done:
			return false
		case <-t.C:
			l.evictWaiting(addr)
			t.Reset(evictEvery)
		}
	}
}

// ConnState is for http.Server.ConnState of the server that serves l: it
// tells the listener which connections wait for a request, between
// requests or before the first. Those are what a full listener closes to
// take a new connection, as nginx reuses its idle keep-alive connections
// when it runs out: otherwise a few addresses holding idle keep-alive
// connections (one cheap request each per --idle-timeout) up to the total
// left every other client waiting unaccepted (found by review: 4
// addresses filled a listener of 64). A connection reading a request,
// being answered, or handed over (a WebSocket) is not waiting; an HTTP
// client opens another when its idle one is closed, as it must when a
// server's idle timeout closes it.
//
// It runs twice a request, so it touches only the connection's own
// atomics, never the listener's lock.
func (l *Listener) ConnState(c net.Conn, s http.ConnState) {
	lc, ok := c.(*conn)
	if !ok {
		return
	}
	switch s {
	case http.StateNew: // Accept marked it
	case http.StateIdle:
		lc.fresh.Store(false)
		lc.waitReads.Store(lc.reads.Load())
		lc.waitAt.Store(time.Now().UnixNano())
	default:
		lc.waitAt.Store(0)
	}
}

// evictWaiting closes a waiting connection for a newcomer from addr: one
// of the address that holds the most connections, among addr itself and
// those holding more than addr, the longest waiting of its own. A connection that has read
// bytes since it began to wait (a request under way) is not taken, nor a
// new one silent for less than freshGrace. So an address can close only
// its own connections and those of addresses holding more than it does:
// a flood closes its own first, a client with one connection anyone's.
func (l *Listener) evictWaiting(addr netip.Addr) {
	now := time.Now().UnixNano()
	l.mu.Lock()
	var victim *conn
	var since int64
	most, own := 0, l.peers[addr]
	for c := range l.conns {
		at := c.waitAt.Load()
		if at == 0 || c.reads.Load() != c.waitReads.Load() || c.fresh.Load() && now-at < int64(freshGrace) {
			continue // in a request, or read since it went idle, or new and within its grace
		}
		n := l.peers[c.addr]
		if n <= own && c.addr != addr {
			continue // an address may close only its own, or those of one holding more
		}
		if victim == nil || n > most || n == most && at < since {
			victim, since, most = c, at, n
		}
	}
	if victim != nil {
		victim.waitAt.Store(0)
	}
	l.mu.Unlock()
	if victim != nil {
		l.evicted.Add(1)
		_ = victim.Close()
	}
}

// Evicted is how many idle connections were closed to make room for new
// ones.
func (l *Listener) Evicted() int64 { return l.evicted.Load() }

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *Listener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Refused is how many connections were closed for their peer's bound.
func (l *Listener) Refused() int64 { return l.refused.Load() }

// Open is how many accepted connections are not closed yet.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.peers {
		n += c
	}
	return n
}

func (l *Listener) freeSlot() {
	if l.slots != nil {
		<-l.slots
	}
}

// atBound reports whether addr holds its bound of connections.
func (l *Listener) atBound(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peers[addr] >= l.perPeer
}

// maxRefusing bounds the refusals under way that hold no slot: a peer
// at its bound that keeps connecting gets its 429s this many at a time,
// and beyond them a plain close.
const maxRefusing = 64

// refuseAside refuses c without a slot, within maxRefusing.
func (l *Listener) refuseAside(c net.Conn) {
	select {
	case l.refusing <- struct{}{}:
		go func() {
			defer func() { <-l.refusing }()
			l.refuse(c, false)
		}()
	default:
		_ = c.Close()
	}
}

// take counts a connection of addr, unless it is bounded and at its bound.
func (l *Listener) take(addr netip.Addr, bounded bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if bounded && l.peers[addr] >= l.perPeer {
		return false
	}
	l.peers[addr]++
	return true
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	if l.peers[c.addr] <= 1 {
		delete(l.peers, c.addr)
	} else {
		l.peers[c.addr]--
	}
	l.mu.Unlock()
	l.freeSlot()
}

// refusal is what a connection past its peer's bound reads before it is
// closed: an HTTP client (a page) sees a 429 it can wait out, not a
// connection lost.
const refusal = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\n" +
	"Retry-After: 5\r\nConnection: close\r\nContent-Length: 85\r\n\r\n" +
	`{"error":{"code":"rate_limited","message":"too many connections from your address"}}` + "\n"

// refuseWait is how long a refused connection may take to send its
// request before the refusal is written anyway. Written before the
// request, a response can reach a client on loopback before it wrote its
// request, and an HTTP client drops it as unsolicited (seen in CI).
const refuseWait = 20 * time.Millisecond

// refuse reads what c sent within refuseWait, answers it refusal, closes
// it and frees its slot if it holds one.
func (l *Listener) refuse(c net.Conn, slot bool) {
	if slot {
		defer l.freeSlot()
	}
	_ = c.SetDeadline(time.Now().Add(refuseWait))
	var buf [4 << 10]byte
	_, _ = c.Read(buf[:])
	_ = c.SetWriteDeadline(time.Now().Add(refuseWait))
	_, _ = io.WriteString(c, refusal)
	_ = c.Close()
}

// remoteIP is the connection's remote IP address (IPv4 unmapped from
// IPv6), or the zero Addr for a peer without one.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// peerKey is what ip's connections are counted under: itself for IPv4,
// its /64 for IPv6.
func peerKey(ip netip.Addr) netip.Addr {
	if ip = addrkey.Unwrap(ip); ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

type conn struct {
	net.Conn
	l      *Listener
	addr   netip.Addr
	closed sync.Once
	reads  atomic.Uint64 // Reads that returned bytes
	// Whether it waits for a request, for evictWaiting: since when (unix
	// ns; 0: not waiting), how many reads it had made then (one that read
	// since is in the middle of a request: net/http says a keep-alive
	// connection is active only once a request's headers are in), and
	// whether it is new, before its first request.
	waitAt    atomic.Int64
	waitReads atomic.Uint64
	fresh     atomic.Bool
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() { c.l.release(c) })
	return err
}

// DefaultTotal is a total bound that leaves the process a reserve of file
// descriptors for everything else it opens (stores, queue, peers of its
// own): its open-file limit less an eighth of it, and at least 256 less;
// 0 (no bound) where the limit cannot be read.
func DefaultTotal() int { return totalFor(openFileLimit()) }

func totalFor(limit int) int {
	if limit <= 0 {
		return 0
	}
	return max(limit/4, limit-max(256, limit/8))
}
