package checkout

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"seckill"
)

// leftCountingGate counts the gate's Left calls.
type leftCountingGate struct {
	seckill.StockGate
	lefts atomic.Int64
}

func (g *leftCountingGate) Left(ctx context.Context, saleID int64) (int64, bool, error) {
	g.lefts.Add(1)
	return g.StockGate.Left(ctx, saleID)
}

// TestSaleViewsShareGateReads: the public views of a sale (the catalogue,
// which anyone may list as often as they like) cost the gate at most one
// read per viewLeftFor; a stale reading is read again by one view while
// the others answer from it, and the view then shows the gate's units.
func TestSaleViewsShareGateReads(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(5)
	clock := &offsetClock{}
	g := &leftCountingGate{StockGate: v.gate}
	bk := v.backends()
	bk.Gate = g
	e := v.recovered(Config{Now: clock.Now}, &bk)
	reads := func() int64 { return g.lefts.Load() }

	before := reads()
	for range 100 {
		if view, status := e.PublicSaleView(ctx, s); view.StockLeft != 5 || status != "active" {
			t.Fatalf("view: %d left, %s; want 5, active", view.StockLeft, status)
		}
	}
	if n := reads() - before; n != 1 {
		t.Fatalf("100 views read the gate %d times, want once", n)
	}

	u := v.users(1)
	if _, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID)); err != nil {
		t.Fatal(err)
	}
	clock.advance(viewLeftFor)
	before = reads()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if view, _ := e.PublicSaleView(ctx, s); view.StockLeft != 4 && view.StockLeft != 5 {
				t.Errorf("view: %d left, want 4 (or 5 while one view reads the gate)", view.StockLeft)
			}
		})
	}
	wg.Wait()
	if n := reads() - before; n != 1 {
		t.Fatalf("50 views of a stale reading read the gate %d times, want once", n)
	}
	if view, _ := e.PublicSaleView(ctx, s); view.StockLeft != 4 {
		t.Fatalf("view after the read: %d left, want 4", view.StockLeft)
	}
}
