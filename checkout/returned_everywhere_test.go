package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
)

// TestReturnedUnitsSellOnTheInstanceThatSawSoldOut: instance A admits the
// whole stock and sees the sale sold out; the gate then loses the sale
// (Redis emptied) and every order lapses, swept and relayed on instance
// B. A crowd that reaches only A buys every returned unit, within a
// bound, and the first buyers stay duplicates there (I2, I4).
func TestReturnedUnitsSellOnTheInstanceThatSawSoldOut(t *testing.T) {
	t.Run("inmem", func(t *testing.T) { testReturnedUnitsSellOnA(t, newEnv(t)) })
	t.Run("sqlite", func(t *testing.T) { testReturnedUnitsSellOnA(t, newEnv(t, withSQLite)) })
	t.Run("postgres/redis", func(t *testing.T) { testReturnedUnitsSellOnA(t, newEnv(t, withPostgres, withRedisGate)) })
}

func testReturnedUnitsSellOnA(t *testing.T, v *env) {
	ctx := context.Background()
	const stock = 4
	s := v.openSale(stock)
	first, crowd := v.users(stock), v.users(3*stock)
	clock := &sharedClock{}
	bk := v.backends()
	bk.Clock = clock
	a, b := v.twoInstances(&bk)
	runWriter(t, b)
	v.buyAll(a, s.ID, first)
	for _, u := range first {
		waitResult(t, a, u, s.ID, seckill.ResultSuccess)
	}
	_, err := a.Purchase(ctx, crowd[0], s.ID, path(t, a, crowd[0], s.ID))
	wantCode(t, err, seckill.ESoldOut)

	if v.locker != nil {
		if err := v.gate.Forget(ctx, s.ID); err != nil { // Redis emptied
			t.Fatal(err)
		}
	}
	clock.pastDeadlines()
	if n, err := b.Sweep(ctx); err != nil || n != stock {
		t.Fatalf("sweep on B: %d, %v", n, err)
	}

	won := map[int64]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for len(won) < stock && time.Now().Before(deadline) {
		for _, u := range crowd {
			if won[u] {
				continue
			}
			_, err := a.Purchase(ctx, u, s.ID, path(t, a, u, s.ID))
			switch seckill.ErrorCode(err) {
			case "":
				won[u] = true
			case seckill.ESoldOut, seckill.EBusy:
			default:
				t.Fatalf("crowd purchase on A: %v", err)
			}
		}
		for _, u := range first {
			_, err := a.Purchase(ctx, u, s.ID, path(t, a, u, s.ID))
			// Sold out too: the local flag answers anyone it does not know
			// as a buyer (a rebuild forgets them here), never admits them.
			if c := seckill.ErrorCode(err); c != seckill.EDuplicate && c != seckill.EBusy && c != seckill.ESoldOut {
				t.Fatalf("a first buyer, cancelled, pressing on A: %v", err)
			}
		}
		_, _ = b.RelayReturns(ctx)
		a.reconcileOnce(ctx, time.Minute) // the reconciler's round (rebuilds a lost gate)
		time.Sleep(100 * time.Millisecond)
	}
	if len(won) != stock {
		t.Fatalf("the crowd on A won %d of %d returned units", len(won), stock)
	}
	for u := range won {
		waitResult(t, a, u, s.ID, seckill.ResultSuccess)
	}
	st := v.checkAtRest(s.ID)
	if st.SQLStockLeft != 0 || st.Cancelled != stock {
		t.Fatalf("at rest: %+v", st)
	}
}

// twoInstances returns two engines on the backends bk, as two instances
// of one deployment: both recovered and admitting.
func (v *env) twoInstances(bk *Backends) (a, b *Engine) {
	v.t.Helper()
	cfg := Config{PublishTimeout: 300 * time.Millisecond}
	a = v.recovered(cfg, bk)
	b = v.engine(cfg, bk)
	if v.locker != nil {
		if err := b.Recover(context.Background()); err != nil {
			v.t.Fatal(err)
		}
	} else {
		b.ready.Store(true) // the in-process gate is loaded (a Recover would reload it)
	}
	return a, b
}

// buyAll has each user buy one unit of the sale on e, each answered 202.
func (v *env) buyAll(e *Engine, saleID int64, users []int64) {
	v.t.Helper()
	for _, u := range users {
		if _, err := e.Purchase(context.Background(), u, saleID, path(v.t, e, u, saleID)); err != nil {
			v.t.Fatal(err)
		}
	}
}
