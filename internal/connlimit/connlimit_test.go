package connlimit

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// server accepts on l and keeps what it accepted until the test ends.
func server(t *testing.T, l *Listener) (accepted <-chan net.Conn) {
	t.Helper()
	ch := make(chan net.Conn, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for c := range ch {
			c.Close()
		}
	})
	return ch
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer tells whether the server closed c (a read ends in EOF
// or a reset) within a second, rather than holding it open; what c read
// before must be the refusal's 429, if anything.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if len(got) > 0 && string(got) != refusal {
		t.Fatalf("a refused connection read %q", got)
	}
	return true
}

func TestPerPeerBound(t *testing.T) {
	l := New(listen(t), 0, 3, nil)
	accepted := server(t, l)
	held := dialN(t, l, accepted, 3)
	over := dial(t, l.Addr().String())
	if !closedByServer(t, over) {
		t.Fatal("the peer's 4th connection was kept open")
	}
	if l.Refused() != 1 || l.Open() != 3 {
		t.Fatalf("refused %d, open %d; want 1 and 3", l.Refused(), l.Open())
	}
	// A closed connection frees its place for the next.
	held[0].Close()
	waitOpen(t, l, 2)
	next := dial(t, l.Addr().String())
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection within the bound again was not accepted")
	}
	if closedByServer(t, next) {
		t.Fatal("a connection within the bound again was closed")
	}
}

// dialN makes n connections to l and returns the server's sides.
func dialN(t *testing.T, l *Listener, accepted <-chan net.Conn, n int) []net.Conn {
	t.Helper()
	var held []net.Conn
	for range n {
		dial(t, l.Addr().String())
		held = append(held, <-accepted)
	}
	return held
}

func waitOpen(t *testing.T, l *Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("open %d, want %d", l.Open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExemptPeer(t *testing.T) {
	l := New(listen(t), 0, 1, func(a netip.Addr) bool { return a.IsLoopback() })
	accepted := server(t, l)
	for range 3 {
		dial(t, l.Addr().String())
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatal("an exempt peer's connection was not accepted")
		}
	}
	if l.Refused() != 0 {
		t.Fatalf("refused %d of an exempt peer", l.Refused())
	}
}

func TestTotalBound(t *testing.T) {
	l := New(listen(t), 2, 0, nil)
	accepted := server(t, l)
	held := dialN(t, l, accepted, 2)
	dial(t, l.Addr().String()) // waits in the backlog
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two are held")
	case <-time.After(200 * time.Millisecond):
	}
	held[0].Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not accepted once a slot was free")
	}
	if l.Open() != 1 {
		t.Fatalf("open %d, want 1", l.Open())
	}
	// Closing twice frees one slot only.
	held[1].Close()
	held[1].Close()
	// The server's Accept, waiting for the next connection, may hold one.
	if l.Open() != 0 || len(l.slots) > 1 {
		t.Fatalf("after every connection closed: open %d, %d slots taken, want 0 and at most 1", l.Open(), len(l.slots))
	}
}

func TestCloseWakesAccept(t *testing.T) {
	l := New(listen(t), 1, 0, nil)
	dial(t, l.Addr().String())
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake an Accept waiting for a slot")
	}
}

// TestRefusalIsHTTP: a refused client reads a 429 it can wait out.
func TestRefusalIsHTTP(t *testing.T) {
	l := New(listen(t), 0, 1, nil)
	accepted := server(t, l)
	dialN(t, l, accepted, 1)
	resp, err := http.Get("http://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"rate_limited"`) {
		t.Fatalf("refused: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestPeerIsIPv6Slash64: the addresses of one IPv6 /64 are one peer; an
// exempt address is judged by itself, not by its /64.
func TestPeerIsIPv6Slash64(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if peerKey(a) != peerKey(b) || peerKey(a) == peerKey(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatalf("keys %v %v", peerKey(a), peerKey(b))
	}
	if v4 := netip.MustParseAddr("192.0.2.7"); peerKey(v4) != v4 {
		t.Fatalf("IPv4 key %v", peerKey(v4))
	}
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	l := New(ln, 0, 1, func(a netip.Addr) bool { return a == netip.IPv6Loopback() })
	accepted := server(t, l)
	dialN(t, l, accepted, 3) // ::1 exempt, though its /64 is ::
	if l.Refused() != 0 {
		t.Fatalf("refused %d of an exempt IPv6 peer", l.Refused())
	}
}

// TestPerPeerAtMostAQuarter: a small total leaves a peer a quarter of it.
func TestPerPeerAtMostAQuarter(t *testing.T) {
	for _, c := range []struct{ total, want int }{{8, 2}, {20000, 2048}} {
		l := New(listen(t), c.total, 2048, nil)
		l.Close()
		if l.perPeer != c.want {
			t.Fatalf("per peer %d with a total of %d, want %d", l.perPeer, c.total, c.want)
		}
	}
}

func TestTotalFor(t *testing.T) {
	for _, c := range []struct{ limit, want int }{
		{0, 0}, {20000, 17500}, {1024, 768}, {1200, 944}, {100, 25},
	} {
		if got := totalFor(c.limit); got != c.want {
			t.Errorf("totalFor(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}
