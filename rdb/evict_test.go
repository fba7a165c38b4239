package rdb

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/internal/testenv"
)

// evictTemps is a client hook that deletes a Load's temporary sets just
// before the script that swaps them in runs, as a Redis under memory
// pressure evicts them (they are the gate's only keys with an expiry, so
// even a volatile-* policy picks them): on arm, once.
type evictTemps struct {
	c   *Client
	arm atomic.Bool
}

func (h *evictTemps) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *evictTemps) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *evictTemps) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		if (name == "evalsha" || name == "eval") && h.arm.Load() {
			var temps []string
			for _, a := range cmd.Args() {
				if s, ok := a.(string); ok && strings.Contains(s, ":load:") {
					temps = append(temps, s)
				}
			}
			if len(temps) > 0 && h.arm.CompareAndSwap(true, false) {
				if err := h.c.rdb.Del(ctx, temps...).Err(); err != nil {
					return err
				}
			}
		}
		return next(ctx, cmd)
	}
}

// TestLoadRefusesEvictedTemporarySets: a Load whose temporary buyers and
// returned sets (and queued requests' reservations) were evicted before its swap must not load the sale as
// having no buyers (each would be admitted again: the gate gives a unit
// to a buyer SQL then answers with their old order, a unit lost, I4) nor
// no orders returned (a relay's replay would add a unit twice). It loads
// nothing; the next Load loads the sale whole.
func TestLoadRefusesEvictedTemporarySets(t *testing.T) {
	c := openClient(t, testenv.URL(t, "SECKILL_TEST_REDIS")+"?autopipeline=false")
	h := &evictTemps{c: c}
	c.rdb.AddHook(h)
	g := NewGate(c, testPrefix(t, c))
	ctx := context.Background()
	snap := func(context.Context) (seckill.GateContents, error) {
		return seckill.GateContents{Left: 5, Buyers: []int64{1, 2, 3}, Returned: []int64{77},
			Queued: []seckill.Settled{{UserID: 4, Ticket: "t4"}}}, nil
	}
	h.arm.Store(true)
	ok, err := g.Load(ctx, 9, snap)
	if h.arm.Load() {
		t.Fatal("the hook never saw the load script")
	}
	if ok {
		r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 9, UserID: 1, Ticket: "t1"})
		t.Fatalf("loaded without its evicted temporary sets (err %v): buyer 1 reserves again: %v, %v", err, r, err)
	}
	t.Logf("load with evicted temporary sets: %v, %v", ok, err)
	if _, loaded, err := g.Left(ctx, 9); err != nil || loaded {
		t.Fatalf("after the refused load: loaded %v, %v", loaded, err)
	}
	if ok, err := g.Load(ctx, 9, snap); err != nil || !ok {
		t.Fatalf("the next load: %v, %v", ok, err)
	}
	if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 9, UserID: 1, Ticket: "t1"}); err != nil || r != seckill.Duplicate {
		t.Fatalf("buyer 1 after the load: %v, %v; want duplicate", r, err)
	}
	if n, err := g.Return(ctx, 9, []int64{77}); err != nil || n != 0 {
		t.Fatalf("return of order 77, returned before the load: %d, %v; want a no-op", n, err)
	}
	if ok, err := g.Withdraw(ctx, 9, 4, "t4"); err != nil || !ok {
		t.Fatalf("withdraw the queued request of buyer 4 after the load: %v, %v; want its reservation there", ok, err)
	}
}
