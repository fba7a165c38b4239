package checkout

import (
	"context"
	"testing"

	"seckill"
)

// TestWinnersAreDuplicatesOnEveryInstance: a buyer with an order is told
// 409 duplicate on every instance, not only on the one that admitted
// them, even once the sale sold out and the other instance's local flag
// answers the rest 410; so is a buyer whose order was cancelled (one
// order per user per sale, ever: api.md).
func TestWinnersAreDuplicatesOnEveryInstance(t *testing.T) {
	t.Run("inmem", func(t *testing.T) { testWinnersDuplicatesEverywhere(t, newEnv(t)) })
	t.Run("postgres/redis", func(t *testing.T) {
		testWinnersDuplicatesEverywhere(t, newEnv(t, withPostgres, withRedisGate))
	})
}

func testWinnersDuplicatesEverywhere(t *testing.T, v *env) {
	ctx := context.Background()
	const stock = 3
	s := v.openSale(stock)
	winners, losers := v.users(stock), v.users(2)
	bk := v.backends()
	a, b := v.twoInstances(&bk)
	runWriter(t, a)
	v.buyAll(a, s.ID, winners)
	for _, u := range winners {
		waitResult(t, b, u, s.ID, seckill.ResultSuccess) // B heard the results
	}
	// B learns from the gate that the sale sold out: its flag is up.
	_, err := b.Purchase(ctx, losers[0], s.ID, path(t, b, losers[0], s.ID))
	wantCode(t, err, seckill.ESoldOut)
	if !b.isSoldOut(s.ID, b.uptime()) {
		t.Fatal("B's sold-out flag is not up")
	}
	for _, u := range winners {
		_, err := b.Purchase(ctx, u, s.ID, path(t, b, u, s.ID))
		wantCode(t, err, seckill.EDuplicate)
	}
	// A stray refusal of an older request of a winner (one the reconciler
	// released, that landed late) does not make B forget them.
	b.resultArrived(seckill.OrderResult{SaleID: s.ID, UserID: winners[1], Result: seckill.Result{Status: seckill.ResultFailed, Reason: "expired"}})
	_, err = b.Purchase(ctx, winners[1], s.ID, path(t, b, winners[1], s.ID))
	wantCode(t, err, seckill.EDuplicate)

	// A winner cancels on A; on B they stay a duplicate, the unit goes to
	// someone else.
	o := v.orderOf(s.ID, winners[0])
	if _, err := a.Cancel(ctx, winners[0], o.ID); err != nil {
		t.Fatal(err)
	}
	_, err = b.Purchase(ctx, winners[0], s.ID, path(t, b, winners[0], s.ID))
	wantCode(t, err, seckill.EDuplicate)
	waitFor(t, "the returned unit sold on B", func() bool {
		_, err := b.Purchase(ctx, losers[1], s.ID, path(t, b, losers[1], s.ID))
		return err == nil || seckill.ErrorCode(err) == seckill.EDuplicate
	})
	waitResult(t, a, losers[1], s.ID, seckill.ResultSuccess)
	_, err = b.Purchase(ctx, winners[0], s.ID, path(t, b, winners[0], s.ID))
	wantCode(t, err, seckill.EDuplicate)
	v.checkAtRest(s.ID)
}
