package checkout

import (
	"context"
	"sync/atomic"
	"testing"

	"seckill"
	"seckill/payment"
)

// busyApplyStore is the env's store whose ApplyPayment fails as busy
// (a lost database connection, sqldb's EBusy) while failApply is above 0.
type busyApplyStore struct {
	envStore
	seckill.OrderLifecycle
	failApply atomic.Int32
}

func (s *busyApplyStore) ApplyPayment(ctx context.Context, p seckill.Payment) (*seckill.Payment, *seckill.Order, error) {
	if s.failApply.Add(-1) >= 0 {
		return nil, nil, seckill.Errorf(seckill.EBusy, "the database is unavailable; retry shortly")
	}
	return s.OrderLifecycle.ApplyPayment(ctx, p)
}

// TestSweepKeepsAPaidOrderWhenTheDatabaseIsBusy: the sweeper finds at the
// provider that an expired order was paid in time, and applying it fails
// because the database dropped the connection (busy since 58e1102, where
// it was internal before). The order must wait for a later sweep, not be
// cancelled as "a trade that cannot be this order's" and its money
// refunded.
func TestSweepKeepsAPaidOrderWhenTheDatabaseIsBusy(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(1)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	ctx := context.Background()
	paid := v.orderOf(s.ID, us[0])
	openPayment(t, e, paid)
	p.setTrade(payment.Trade{OutTradeNo: paid.OrderNo, TradeNo: "TR-busy", Status: payment.TradeSuccess, AmountCents: paid.PriceCents})
	clock.pastDeadlines()

	st := &busyApplyStore{envStore: v.db, OrderLifecycle: v.db.(seckill.OrderLifecycle)}
	st.failApply.Store(1)
	e.b.Orders = st
	if _, err := e.Sweep(ctx); err != nil {
		t.Logf("sweep with the database busy: %v", err)
	}
	if got := v.order(paid.ID); got.Status != seckill.OrderPending {
		t.Fatalf("after a sweep whose ApplyPayment was busy, the order paid in time is %s; want pending (asked again later)", got.Status)
	}
	if _, err := e.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.order(paid.ID); got.Status != seckill.OrderPaid || p.refunded(paid.OrderNo) != 0 {
		t.Fatalf("after the next sweep: %s, refunded %d; want paid, not refunded", got.Status, p.refunded(paid.OrderNo))
	}
}
