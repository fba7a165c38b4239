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
		waitResult(t, a, u, s.ID, seckill.ResultSuccess)
		// B hears the result on the bus (its /result may read SQL first).
		waitFor(t, "B to hear of the order", func() bool { return b.knownBuyer(s.ID, u, b.uptime()) })
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

// TestOrderedBuyersPastTheSetsBound: a sale's set of known buyers keeps
// every buyer with an order, past its bound: a set made before the sale
// was cached here (1,024) or filled by orders after cancels and resales
// turned later ones away, and they were told 410 (found by review: 476 of
// 1,500 winners).
func TestOrderedBuyersPastTheSetsBound(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	const stock = 1500
	s := v.openSale(stock)
	winners, loser := v.users(stock), v.users(1)[0]
	bk := v.backends()
	_, b := v.twoInstances(&bk)
	for _, u := range winners { // the units go; B hears of their orders before it has the sale
		v.reserve(s.ID, u)
	}
	for _, u := range winners {
		b.resultArrived(seckill.OrderResult{SaleID: s.ID, UserID: u, Result: seckill.Result{Status: seckill.ResultSuccess}})
	}
	_, err := b.Purchase(ctx, loser, s.ID, path(t, b, loser, s.ID))
	wantCode(t, err, seckill.ESoldOut)
	told := map[string]int{}
	for _, u := range winners {
		_, err := b.Purchase(ctx, u, s.ID, path(t, b, u, s.ID))
		told[seckill.ErrorCode(err)]++
	}
	if told[seckill.EDuplicate] != stock {
		t.Fatalf("winners pressing on B: %v, want all %d duplicate", told, stock)
	}
}
