package checkout

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// downSales is a SaleStore whose Sale and Sales fail while down is set.
type downSales struct {
	seckill.SaleStore
	down atomic.Bool
}

func (d *downSales) Sale(ctx context.Context, id int64) (*seckill.Sale, error) {
	if d.down.Load() {
		return nil, errors.New("connection refused (test)")
	}
	return d.SaleStore.Sale(ctx, id)
}

func (d *downSales) Sales(ctx context.Context) ([]*seckill.Sale, error) {
	if d.down.Load() {
		return nil, errors.New("connection refused (test)")
	}
	return d.SaleStore.Sales(ctx)
}

// TestAdmissionWhileSQLDown: with SQL unreachable, purchases of a sale the
// engine has seen are still admitted and queued; a sale never seen is an
// internal error, not "not found".
func TestAdmissionWhileSQLDown(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(5)
	u := v.users(2)
	sales := &downSales{SaleStore: v.db}
	b := v.backends()
	b.Sales = sales
	clock := newFakeClock(time.Now())
	e := v.recovered(Config{SaleCacheTTL: time.Second, Now: clock.Now}, &b)
	p := path(t, e, u[0], s.ID) // caches the sale
	sales.down.Store(true)
	clock.set(clock.Now().Add(2 * time.Second)) // the cache entry is stale now
	if _, err := e.Purchase(ctx, u[0], s.ID, p); err != nil {
		t.Fatalf("purchase while SQL is down: %v", err)
	}
	if got := v.pending(s.ID); got != 1 {
		t.Fatalf("%d queued, want 1", got)
	}
	// 999 might be a sale created elsewhere, and SQL cannot say.
	if _, err := e.Sale(ctx, 999); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("unknown sale while SQL is down: %v, want busy (503, retry)", err)
	}
	sales.down.Store(false)
	drain(t, e)
	v.checkAtRest(s.ID)
}
