package rdb

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"seckill"
)

// switchProxy forwards TCP connections to one of several servers, like a
// virtual IP or DNS name that a failover moves: switching drops every
// connection it carries, so clients reconnect to the new target.
type switchProxy struct {
	t  *testing.T
	l  net.Listener
	mu sync.Mutex
	to string
	cs []net.Conn
}

func newSwitchProxy(t *testing.T, to string) *switchProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{t: t, l: l, to: to}
	t.Cleanup(func() { l.Close(); p.point("") })
	go p.serve()
	return p
}

func (p *switchProxy) url() string { return "redis://" + p.l.Addr().String() }

func (p *switchProxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		to := p.to
		p.mu.Unlock()
		out, err := net.Dial("tcp", to)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.cs = append(p.cs, in, out)
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

// point sends new connections to addr and cuts the ones open.
func (p *switchProxy) point(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.to = addr
	for _, c := range p.cs {
		c.Close()
	}
	p.cs = nil
}

// TestFailBackToServerSeenBefore: a failover that comes back to a server
// the client has talked to before. X (run_id Rx) is master; the client sees
// it. X fails over to Y; the client checks Y, the sale is rebuilt on Y and
// sells there. X then follows Y as a replica and is promoted again while
// it lags (Y unreachable, an automatic failover) — it keeps its run_id, and
// its copy of the gate (epoch Ry, replicated) lacks Y's last reservation.
// The check would drop that sale (its epoch is not X's run_id), but the
// client never runs it: onConnect remembers run_ids, and X's is known.
// Buyer 3, who holds a unit on Y (answered 202), is admitted a second time.
func TestFailBackToServerSeenBefore(t *testing.T) {
	x, y := newSnapshotRedis(t), newSnapshotRedis(t)
	ctx := context.Background()
	proxy := newSwitchProxy(t, "127.0.0.1:"+x.Port)
	c := openClient(t, proxy.url())
	g := NewGate(c, "t:")
	reserve := func(user int64) (seckill.GateResult, error) {
		t.Helper()
		var r seckill.GateResult
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			// Connections cut by the switch fail once; busy because not
			// loaded is an answer.
			if r, err = g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: user, Ticket: "T"}); err == nil || strings.Contains(err.Error(), "not loaded") {
				break
			}
		}
		return r, err
	}

	mustLoad(t, g, 1, 10, nil)
	if r, err := reserve(1); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 1 on X: %v %v", r, err)
	}

	// Failover to Y (here: Y empty, as a new master would be after losing
	// the sale; the engine rebuilds it there).
	proxy.point("127.0.0.1:" + y.Port)
	if _, err := reserve(2); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("reserve on Y before the rebuild: %v, want busy", err)
	}
	// X follows Y before the rebuild: Y's first replica renews Y's
	// replication ID (a new backlog) when it syncs, which would drop a
	// sale loaded before (or fail a Load under way).
	xr, yr := x.Raw(), y.Raw()
	if err := yr.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	replicaOf(t, xr, y.Port)
	mustLoad(t, g, 1, 9, []int64{1})
	if r, err := reserve(2); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 2 on Y: %v %v", r, err)
	}

	// X catches up, then loses the link before buyer 3.
	waitFor(t, "X in sync with Y", func() bool {
		n, err := xr.Get(ctx, "t:{sale:1}:stock").Int64()
		return err == nil && n == 8
	})
	if err := xr.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := reserve(3); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 3 on Y: %v %v", r, err)
	}
	if n, _ := yr.Get(ctx, "t:{sale:1}:stock").Int64(); n != 7 {
		t.Fatalf("Y's stock %d, want 7", n)
	}

	// Fail back to X.
	proxy.point("127.0.0.1:" + x.Port)
	r, err := reserve(3)
	if err == nil && r == seckill.Reserved {
		t.Fatalf("buyer 3, who holds a unit on Y, reserved again on X (which lacks it): the gate of a lagging server was trusted")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
