package checkout

import (
	"context"
	"testing"

	"seckill"
	"seckill/payment"
)

// TestRefundRefusedForGoodBlocksNoOther: a refund the provider refuses for
// good (a trade past its refund window, TRADE_FINISHED at a real provider,
// answers ACQ.TRADE_STATUS_ERROR forever) must not stop the refund loop
// from giving other buyers their money back. The refunds due are retried
// oldest first; the refused one is the oldest.
func TestRefundRefusedForGoodBlocksNoOther(t *testing.T) {
	v := newEnv(t)
	s := v.openSale(3)
	us := v.users(3)
	v.writeOrders(s.ID, us...)
	p := newFakeProvider()
	e := v.lifecycleEngine(p, &sharedClock{})
	ctx := context.Background()
	var os []*seckill.Order
	for _, u := range us {
		o := v.orderOf(s.ID, u)
		os = append(os, o)
		// The buyer cancels; their payment gets through anyway.
		if _, err := e.Cancel(ctx, u, o.ID); err != nil {
			t.Fatal(err)
		}
	}
	// The provider is down while the late payments arrive: all three are
	// due a refund, in this order.
	p.failRef.Store(true)
	for _, o := range os {
		if err := e.HandleNotification(ctx, notification(t, o, payment.TradeSuccess, nil)); err != nil {
			t.Fatal(err)
		}
	}
	p.failRef.Store(false)
	p.mu.Lock()
	p.refuse[os[0].OrderNo] = payment.ErrNotRefundable
	p.mu.Unlock()
	for range 3 { // three sweeper rounds
		_, _ = e.RetryRefunds(ctx)
	}
	for _, o := range os[1:] {
		if n := p.refunded(o.OrderNo); n != 1 {
			t.Errorf("order %d: refunded %d times after three rounds, want 1: the refused refund of order %d blocks it", o.ID, n, os[0].ID)
		}
	}
	if st := engineStats(t, e, s.ID); st.RefundsDue != 1 || st.PaymentsRefunded != 2 {
		t.Errorf("stats: %d refunds due, %d refunded; want 1 and 2", st.RefundsDue, st.PaymentsRefunded)
	}
}
