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
)

// Listener is a net.Listener that holds at most Total connections at a
// time (Accept closes an idle one, or waits for one to close, leaving the
// others in the kernel's backlog) and at most PerPeer from one peer address (the next is closed
// as soon as it is accepted). A connection counts until it is closed, also
// after an HTTP server hands it over (a WebSocket).
type Listener struct {
	net.Listener
	slots   chan struct{} // nil: no total bound
	perPeer int           // 0: no bound per peer
	exempt  func(netip.Addr) bool
	done    chan struct{}
	close   sync.Once

	mu      sync.Mutex
	peers   map[netip.Addr]int
	idle    map[*conn]time.Time // connections between requests, since when
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
	l := &Listener{Listener: ln, perPeer: max(0, perPeer), exempt: exempt, done: make(chan struct{}), peers: map[netip.Addr]int{}, idle: map[*conn]time.Time{}}
	if total > 0 {
		l.slots = make(chan struct{}, total)
		if l.perPeer > 0 {
			l.perPeer = max(1, min(l.perPeer, total/4))
		}
	}
	return l
}

// Accept takes the next connection, then a slot for it: while every slot
// is taken, it closes an idle keep-alive connection to make one (see
// evictIdle), and waits only while none is idle, leaving the connections
// after this one in the kernel's backlog. A connection from a peer at its
// bound is refused.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.slots != nil && !l.waitSlot() {
			_ = c.Close()
			return nil, net.ErrClosed
		}
		ip := remoteIP(c)
		addr := peerKey(ip)
		if !l.take(addr, l.perPeer > 0 && ip.IsValid() && (l.exempt == nil || !l.exempt(ip))) {
			l.refused.Add(1)
			go l.refuse(c) // it keeps its slot until closed
			continue
		}
		return &conn{Conn: c, l: l, addr: addr}, nil
	}
}

// evictEvery is how often an Accept that waits for a slot looks again for
// an idle connection to close: one that went idle since the last look.
// (Accept takes the connection before its slot so that it closes an idle
// one only for a client that came: taking the slot first, it waited for
// the next client holding one, and closed one every time the listener
// was full.)
const evictEvery = 50 * time.Millisecond

// waitSlot takes a slot, closing idle connections for one while every
// slot is taken; false once the listener is closed.
func (l *Listener) waitSlot() bool {
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
			l.evictIdle()
			t.Reset(evictEvery)
		}
	}
}

// ConnState is for http.Server.ConnState of the server that serves l: it
// tells the listener which connections wait between requests. Those are
// what a full listener closes to take a new connection, as nginx reuses
// its idle keep-alive connections when it runs out: otherwise a few
// addresses holding idle keep-alive connections (one cheap request each
// per --idle-timeout) up to the total left every other client waiting
// unaccepted (found by review: 4 addresses filled a listener of 64).
// A connection reading a request, being answered, or handed over (a
// WebSocket) is not idle; an HTTP client opens another when its idle one
// is closed, as it must when a server's idle timeout closes it.
func (l *Listener) ConnState(c net.Conn, s http.ConnState) {
	lc, ok := c.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s == http.StateIdle && !lc.gone {
		l.idle[lc] = time.Now()
	} else {
		delete(l.idle, lc)
	}
}

// evictIdle closes an idle connection of the peer that holds the most
// connections (the flood's, when there is one), the longest idle of its
// own; nothing if none is idle.
func (l *Listener) evictIdle() {
	l.mu.Lock()
	var victim *conn
	var since time.Time
	most := 0
	for c, at := range l.idle {
		n := l.peers[c.addr]
		if n > most || n == most && at.Before(since) {
			victim, since, most = c, at, n
		}
	}
	if victim != nil {
		delete(l.idle, victim)
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
	c.gone = true
	delete(l.idle, c)
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
// it and frees its slot.
func (l *Listener) refuse(c net.Conn) {
	defer l.freeSlot()
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
	if ip.Is6() {
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
	gone   bool // released; under l.mu
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
