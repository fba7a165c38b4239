package rdb

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"seckill"
)

// crowd runs n reservations of sale 1 at once, some with contexts ending
// at random, and checks every call returns, the invariants hold and the
// gate's queues are gone.
func crowd(t *testing.T, c *Client, limit seckill.Bucket) {
	ctx := context.Background()
	g := NewGate(c, testPrefix(t, c))
	const stock, users, n = 50, 150, 600
	mustLoad(t, g, 1, stock, nil)
	type ans struct {
		user   int64
		ticket string
		r      seckill.GateResult
		err    error
	}
	out := make(chan ans, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			u := int64(i % users)
			cctx := ctx
			if i%3 == 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(3000))*time.Microsecond)
				defer cancel()
			}
			tk := "t" + strconv.Itoa(i)
			r, err := g.Reserve(cctx, seckill.Reservation{SaleID: 1, UserID: u, Ticket: tk, Limit: limit})
			out <- ans{u, tk, r, err}
		})
	}
	waitReturned(t, &wg, "reservations")
	close(out)
	reserved := map[int64]string{}
	for a := range out {
		if a.err != nil {
			continue
		}
		if a.r == seckill.Reserved {
			if _, dup := reserved[a.user]; dup {
				t.Errorf("user %d reserved twice", a.user)
			}
			reserved[a.user] = a.ticket
		}
	}
	left, _, err := g.Left(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	k := g.keys(1)
	nb, err := c.base.SCard(ctx, k.buyers).Result()
	if err != nil {
		t.Fatal(err)
	}
	resv, err := c.base.HGetAll(ctx, k.resv).Result()
	if err != nil {
		t.Fatal(err)
	}
	if left < 0 || left+nb != stock || int64(len(resv)) != nb || len(reserved) > int(nb) {
		t.Errorf("left %d, buyers %d, pending %d, reserved answers %d", left, nb, len(resv), len(reserved))
	}
	for u, tk := range reserved {
		v := resv[strconv.FormatInt(u, 10)]
		if len(v) < len(tk) || v[len(v)-len(tk)-1:] != " "+tk {
			t.Errorf("user %d answered reserved with %s, pending %q", u, tk, v)
		}
	}
	waitQueuesEmpty(t, g)
}

func TestReserveCrowdInvariants(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		t.Run("NoLimit", func(t *testing.T) { crowd(t, c, seckill.Bucket{}) })
		t.Run("Limit", func(t *testing.T) { crowd(t, c, seckill.Bucket{PerSecond: 1, Burst: 2}) })
	})
}

// TestReserveFullBatch: one script of maxReserveBatch reservations with
// buckets (maxReserveBatch+4 keys, 2*maxReserveBatch+3 args, unpack of
// 2*maxReserveBatch values) answers each.
func TestReserveFullBatch(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		g := NewGate(c, testPrefix(t, c))
		loadChecked(t, g, 1, maxReserveBatch-1)
		users := make([]int64, maxReserveBatch)
		for i := range users {
			users[i] = int64(i)
		}
		calls := runBatch(g, reserveKey{sale: 1, rate: 1, burst: 1}, users...)
		for i, cl := range calls {
			want := int64(seckill.Reserved)
			if i == maxReserveBatch-1 {
				want = int64(seckill.SoldOut)
			}
			if cl.err != nil || cl.res != want {
				t.Fatalf("call %d: %d, %v; want %d", i, cl.res, cl.err, want)
			}
		}
	})
}

// TestReserveScriptErrorReachesAll: a script failing mid-way (a bucket key
// of the wrong type) answers every reservation of it with an error, takes
// no unit, and leaves no queue.
func TestReserveScriptErrorReachesAll(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		loadChecked(t, g, 1, 10)
		if err := c.base.Set(ctx, g.keys(1).bucket("3"), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		calls := runBatch(g, reserveKey{sale: 1, rate: 1, burst: 1}, 1, 2, 3, 4, 5)
		for i, cl := range calls {
			if cl.err == nil || !isDone(cl.done) {
				t.Fatalf("call %d: %d, %v; want an error", i, cl.res, cl.err)
			}
		}
		if left, _, err := g.Left(ctx, 1); err != nil || left != 10 {
			t.Fatalf("left %d, %v", left, err)
		}
	})
}

// TestReservePromotedBatch: a script finding the epoch of another
// replication history answers every reservation of it EBusy, takes no
// token nor unit, and drops the sale.
func TestReservePromotedBatch(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		loadChecked(t, g, 1, 10)
		k := g.keys(1)
		ep, err := c.base.Get(ctx, k.epoch).Result()
		if err != nil {
			t.Fatal(err)
		}
		runID, _, _ := strings.Cut(ep, " ")
		if err := c.base.Set(ctx, k.epoch, runID+" 0123456789abcdef", 0).Err(); err != nil {
			t.Fatal(err)
		}
		calls := runBatch(g, reserveKey{sale: 1, rate: 1, burst: 1}, 1, 2, 3, 4)
		for i, cl := range calls {
			if seckill.ErrorCode(cl.err) != seckill.EBusy {
				t.Fatalf("call %d: %d, %v; want EBusy", i, cl.res, cl.err)
			}
		}
		if n, err := c.base.Exists(ctx, k.stock, k.bucket("1")).Result(); err != nil || n != 0 {
			t.Fatalf("%d of stock and a bucket left, %v; want the sale dropped, no token taken", n, err)
		}
	})
}
