package rdb

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/internal/testenv"
)

// newSnapshotRedis starts a redis-server of the test's own, restarted from
// its last SAVE after a Kill (see testenv.OwnRedis).
func newSnapshotRedis(t *testing.T) *testenv.OwnRedis { return testenv.StartRedis(t) }

// TestRedisBackWithOlderData: Redis restarts from a snapshot taken before
// the last reservations. The gate it brings back looks loaded but has a
// unit too many and misses two buyers; neither a client that was connected
// before (it knows the sale) nor one that connects afterwards (a new
// instance) may use it: the sale reads as not loaded, so the engine
// rebuilds it from SQL and the queue.
func TestRedisBackWithOlderData(t *testing.T) {
	srv := newSnapshotRedis(t)
	ctx := context.Background()
	open := func() *Gate {
		t.Helper()
		c := openClient(t, srv.URL())
		return NewGate(c, "t:")
	}
	reserve := func(g *Gate, user int64) (seckill.GateResult, error) {
		return g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: user, Ticket: "T" + strconv.FormatInt(user, 10)})
	}
	// left asks until Redis answers (the first calls after a restart may
	// meet a connection still being re-established).
	left := func(g *Gate) (int64, bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, loaded, err := g.Left(ctx, 1)
			if err == nil {
				return n, loaded
			}
			if time.Now().After(deadline) {
				t.Fatalf("Left: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// restartFromSnapshot kills the server and starts it from dump.rdb,
	// checking that it brought back the old gate.
	restartFromSnapshot := func() {
		t.Helper()
		srv.Kill()
		srv.Start()
		if n, err := srv.Raw().Get(ctx, "t:{sale:1}:stock").Int64(); err != nil || n != 9 {
			t.Fatalf("after the restart the stock key reads %d, %v; want the snapshot's 9", n, err)
		}
	}

	g := open()
	mustLoad(t, g, 1, 10, nil)
	if r, err := reserve(g, 1); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 1: %v %v", r, err)
	}
	if err := srv.Raw().Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []int64{2, 3} {
		if r, err := reserve(g, u); err != nil || r != seckill.Reserved {
			t.Fatalf("reserve %d: %v %v", u, r, err)
		}
	}

	// A new instance, connecting after the restart, checks the sale at
	// its first touch.
	restartFromSnapshot()
	if n, loaded := left(open()); loaded {
		t.Fatalf("a new client trusts the old gate: %d left", n)
	}

	// The instance connected before learns it from its new connections.
	restartFromSnapshot()
	if n, loaded := left(g); loaded {
		t.Fatalf("the connected client trusts the old gate: %d left", n)
	}
	if _, err := reserve(g, 2); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("buyer 2 again after the restart: %v, want busy (not loaded)", err)
	}

	// Rebuilt (from SQL + queue: 3 units gone), the sale is trusted again,
	// and stays so.
	mustLoad(t, g, 1, 7, []int64{1, 2, 3})
	if r, err := reserve(g, 2); err != nil || r != seckill.Duplicate {
		t.Fatalf("buyer 2 after the rebuild: %v %v, want duplicate", r, err)
	}
	if r, err := reserve(g, 4); err != nil || r != seckill.Reserved {
		t.Fatalf("buyer 4 after the rebuild: %v %v, want reserved", r, err)
	}
	if n, loaded := left(open()); !loaded || n != 6 {
		t.Fatalf("a new client after the rebuild: %d, %v; want 6, loaded", n, loaded)
	}
}

// TestCheckConn: the check a new server's first connection runs drops only
// the sales of that server loaded on another; on a Cluster the sales of
// the other masters answer MOVED and are not a failure.
func TestCheckConn(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		const sales = 30
		for id := int64(1); id <= sales; id++ {
			mustLoad(t, g, id, 5, nil)
		}
		// Sale 7 looks loaded on a server that is gone.
		k := g.keys(7)
		if err := c.rdb.Set(ctx, k.epoch, "0123456789abcdef", 0).Err(); err != nil {
			t.Fatal(err)
		}
		var node *redis.Client
		if cc, ok := c.base.(*redis.ClusterClient); ok {
			var err error
			if node, err = cc.MasterForKey(ctx, k.stock); err != nil {
				t.Fatal(err)
			}
		} else {
			node = c.base.(*redis.Client)
		}
		cn := node.Conn()
		defer cn.Close()
		if err := g.checkConn(ctx, cn); err != nil {
			t.Fatalf("checkConn: %v", err)
		}
		for id := int64(1); id <= sales; id++ {
			_, loaded, err := g.Left(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if loaded != (id != 7) {
				t.Errorf("sale %d: loaded %v after the check, want %v", id, loaded, id != 7)
			}
		}
	})
}
