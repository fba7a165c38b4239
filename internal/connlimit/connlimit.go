// Package connlimit bounds the connections a listener holds: in all, so
// that a flood of idle keep-alive connections cannot take every file
// descriptor of the process (the embedded queue's store and SQLite need
// theirs: a store that cannot open a file fails its writes until a
// restart), and per peer address, so that one client cannot take the
// whole allowance from everyone else.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Listener is a net.Listener that holds at most Total connections at a
// time (Accept waits for one to close, leaving the others in the kernel's
// backlog) and at most PerPeer from one peer address (the next is closed
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
	refused atomic.Int64
}

// New wraps ln. total ≤ 0 sets no total bound, perPeer ≤ 0 none per peer;
// exempt (may be nil) names peers without one (a proxy in front carries
// many clients' connections).
func New(ln net.Listener, total, perPeer int, exempt func(netip.Addr) bool) *Listener {
	l := &Listener{Listener: ln, perPeer: max(0, perPeer), exempt: exempt, done: make(chan struct{}), peers: map[netip.Addr]int{}}
	if total > 0 {
		l.slots = make(chan struct{}, total)
	}
	return l
}

// Accept waits for a free slot, then for a connection from a peer under
// its bound.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		if l.slots != nil {
			select {
			case l.slots <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.freeSlot()
			return nil, err
		}
		addr := peerOf(c)
		if !l.take(addr) {
			l.refused.Add(1)
			c.Close()
			l.freeSlot()
			continue
		}
		return &conn{Conn: c, l: l, addr: addr}, nil
	}
}

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

// take counts a connection of addr, unless addr is at its bound.
func (l *Listener) take(addr netip.Addr) bool {
	bounded := l.perPeer > 0 && addr.IsValid() && (l.exempt == nil || !l.exempt(addr))
	l.mu.Lock()
	defer l.mu.Unlock()
	if bounded && l.peers[addr] >= l.perPeer {
		return false
	}
	l.peers[addr]++
	return true
}

func (l *Listener) release(addr netip.Addr) {
	l.mu.Lock()
	if l.peers[addr] <= 1 {
		delete(l.peers, addr)
	} else {
		l.peers[addr]--
	}
	l.mu.Unlock()
	l.freeSlot()
}

// peerOf is the connection's remote IP address (IPv4 in IPv6 unmapped),
// or the zero Addr for a peer without one.
func peerOf(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

type conn struct {
	net.Conn
	l      *Listener
	addr   netip.Addr
	closed sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() { c.l.release(c.addr) })
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
