package rdb

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/internal/testenv"
)

// TestReserveRedisDiesMidCrowd: Redis killed while reservations stream in:
// every call returns, and the gate's queues empty.
func TestReserveRedisDiesMidCrowd(t *testing.T) {
	for _, q := range []string{"?autopipeline=false", ""} {
		t.Run(q, func(t *testing.T) {
			r := testenv.StartRedis(t)
			c := openClient(t, r.URL()+q)
			g := NewGate(c, "t:")
			mustLoad(t, g, 1, 1<<30, nil)
			var stop atomic.Bool
			var wg sync.WaitGroup
			for w := range 64 {
				wg.Go(func() {
					for i := 0; !stop.Load(); i++ {
						u := int64(w*1_000_000 + i)
						g.Reserve(context.Background(), seckill.Reservation{SaleID: 1, UserID: u, Ticket: "x", Limit: seckill.Bucket{PerSecond: 5, Burst: 10}})
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			r.Kill()
			time.Sleep(200 * time.Millisecond)
			stop.Store(true)
			waitReturned(t, &wg, "reservations")
			waitQueuesEmpty(t, g)
		})
	}
}

// TestReserveCtxEndsWhileServerBusy: with the server stuck in a long
// script, every caller returns when its ctx ends, the one whose call
// started the sale's script included (it used to run the script on its
// own goroutine and return only when the server answered, seconds later).
func TestReserveCtxEndsWhileServerBusy(t *testing.T) {
	for _, q := range []string{"?autopipeline=false", ""} {
		t.Run(q, func(t *testing.T) {
			r := testenv.StartRedis(t)
			c := openClient(t, r.URL()+q)
			g := NewGate(c, "t:")
			loadChecked(t, g, 1, 100)
			ctx := context.Background()
			raw := openClient(t, r.URL()+"?autopipeline=false")
			busy := make(chan struct{})
			go func() {
				defer close(busy)
				raw.base.Do(ctx, "EVAL", "local s = tonumber(redis.call('TIME')[1]) while tonumber(redis.call('TIME')[1]) < s + 3 do end return 1", 0)
			}()
			time.Sleep(100 * time.Millisecond)
			var wg sync.WaitGroup
			for i := range 3 {
				wg.Go(func() {
					cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					defer cancel()
					start := time.Now()
					_, err := g.Reserve(cctx, seckill.Reservation{SaleID: 1, UserID: int64(i), Ticket: strconv.Itoa(i)})
					if d := time.Since(start); d > time.Second || err == nil {
						t.Errorf("caller %d: %v after %v; want its ctx's error after 200ms", i, err, d)
					}
				})
			}
			wg.Wait()
			<-busy
			waitQueuesEmpty(t, g)
		})
	}
}

// TestReserveRedisRestartsMidCrowd: Redis killed and started again, empty,
// while reservations stream in: every call returns, those after the
// restart are EBusy (the sale is gone), and once loaded again the sale
// reserves.
func TestReserveRedisRestartsMidCrowd(t *testing.T) {
	r := testenv.StartRedis(t)
	c := openClient(t, r.URL())
	g := NewGate(c, "t:")
	mustLoad(t, g, 1, 1<<30, nil)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	var restarted atomic.Bool
	for w := range 32 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				after := restarted.Load()
				r, err := g.Reserve(context.Background(), seckill.Reservation{SaleID: 1, UserID: int64(w*1_000_000 + i), Ticket: "x"})
				if after && (err == nil || seckill.ErrorCode(err) != seckill.EBusy) {
					bad.Store(fmt.Sprintf("after the restart: %v, %v", r, err))
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	r.Kill()
	r.Start()
	restarted.Store(true)
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	waitReturned(t, &wg, "reservations")
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	mustLoad(t, g, 1, 1, nil)
	if r, err := g.Reserve(context.Background(), seckill.Reservation{SaleID: 1, UserID: 1, Ticket: "y"}); err != nil || r != seckill.Reserved {
		t.Fatalf("after reload: %v, %v", r, err)
	}
	waitQueuesEmpty(t, g)
}
