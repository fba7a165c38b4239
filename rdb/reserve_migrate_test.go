package rdb

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

// TestReserveDuringSlotMigration moves the sale's slot key by key to
// another master while reservations stream in (SECKILL_TEST_OWN_CLUSTER:
// three masters of the test's own).
func TestReserveDuringSlotMigration(t *testing.T) {
	addrs := os.Getenv("SECKILL_TEST_OWN_CLUSTER")
	if addrs == "" {
		t.Skip("SECKILL_TEST_OWN_CLUSTER unset")
	}
	for _, q := range []string{"?autopipeline=false", ""} {
		t.Run(q, func(t *testing.T) {
			ctx := context.Background()
			c := openClient(t, "redis://"+addrs+q)
			prefix := "m" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
			g := NewGate(c, prefix)
			const stock = 1 << 30
			mustLoad(t, g, 1, stock, nil)
			k := g.keys(1)
			cc := c.base.(*redis.ClusterClient)
			slot, err := cc.ClusterKeySlot(ctx, k.stock).Result()
			if err != nil {
				t.Fatal(err)
			}
			node := func(a string) *redis.Client {
				r := redis.NewClient(&redis.Options{Addr: a})
				t.Cleanup(func() { r.Close() })
				return r
			}
			var nodes []*redis.Client
			ids := map[*redis.Client]string{}
			var src, dst *redis.Client
			for _, a := range strings.Split(addrs, ",") {
				r := node(a)
				id, err := r.Do(ctx, "CLUSTER", "MYID").Text()
				if err != nil {
					t.Fatal(err)
				}
				ids[r] = id
				nodes = append(nodes, r)
				n, _ := r.ClusterCountKeysInSlot(ctx, int(slot)).Result()
				if n > 0 {
					src = r
				}
			}
			for _, r := range nodes {
				if r != src {
					dst = r
					break
				}
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			var mu sync.Mutex
			reserved := map[int64]string{}
			var calls, errs atomic.Int64
			var lastErr atomic.Value
			for w := range 32 {
				wg.Go(func() {
					for i := 0; !stop.Load(); i++ {
						u := int64(w*1_000 + i%1000)
						tk := strconv.Itoa(w) + "-" + strconv.Itoa(i)
						r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: u, Ticket: tk, Limit: seckill.Bucket{PerSecond: 1000, Burst: 1000}})
						calls.Add(1)
						if err != nil {
							errs.Add(1)
							lastErr.Store(err.Error())
							continue
						}
						if r == seckill.Reserved {
							mu.Lock()
							if _, dup := reserved[u]; dup {
								t.Errorf("user %d reserved twice", u)
							}
							reserved[u] = tk
							mu.Unlock()
						}
					}
				})
			}
			time.Sleep(200 * time.Millisecond)
			must := func(r *redis.Client, args ...any) {
				t.Helper()
				if err := r.Do(ctx, args...).Err(); err != nil {
					t.Fatalf("%v: %v", args, err)
				}
			}
			must(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
			must(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
			dstAddr := dst.Options().Addr
			host, port, _ := strings.Cut(dstAddr, ":")
			for {
				keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 5).Result()
				if err != nil {
					t.Fatal(err)
				}
				if len(keys) == 0 {
					break
				}
				for _, key := range keys {
					must(src, "MIGRATE", host, port, key, 0, 5000)
					time.Sleep(2 * time.Millisecond)
				}
			}
			for _, r := range nodes {
				must(r, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
			}
			time.Sleep(300 * time.Millisecond)
			stop.Store(true)
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("reservations never returned")
			}
			t.Logf("%d calls, %d errors (last %v), %d reserved", calls.Load(), errs.Load(), lastErr.Load(), len(reserved))
			// The slot's new master is another server: the sale is dropped
			// (promotedLua) and would be rebuilt; only what was answered
			// before is checked, above.
			g.resvMu.Lock()
			defer g.resvMu.Unlock()
			if len(g.resv) != 0 {
				t.Errorf("%d queues left", len(g.resv))
			}
		})
	}
}
