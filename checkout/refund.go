package checkout

import (
	"context"
	"fmt"
	"time"

	"seckill"
)

// refundKick bounds the provider calls an admin's refund makes before it
// answers: the refund is committed already, and the refund loop of every
// instance's sweeper retries what this kick does not get through.
const refundKick = 5 * time.Second

// Refund refunds a paid order at an admin's request (paid → refunded, see
// seckill.OrderLifecycle.RefundOrder): its unit returns to SQL stock and,
// through the relay, to the gate for other buyers; its buyer stays a buyer
// of the sale (at most one order per sale and buyer, whatever its
// status) and is told on whichever instance holds their socket; its
// payment is due back and goes back through the provider.
//
// The move is committed before the provider is asked: a provider that is
// down loses nothing, the payment stays refund_due and RetryRefunds (every
// sweeper round, on every instance) gives it back once the provider
// answers; the provider's refund is idempotent by order number, so two
// instances retrying at once move the money once. It returns the refunded
// order. Errors: ENotFound if there is no such order; ENotCancellable if
// it is not paid (pending, cancelled, refunded already, also by a racing
// refund).
func (e *Engine) Refund(ctx context.Context, orderID int64) (*seckill.Order, error) {
	lc := e.lifecycle()
	if lc == nil {
		return nil, noLifecycle(seckill.ENotCancellable)
	}
	now, err := e.sharedNow(ctx)
	if err != nil {
		return nil, fmt.Errorf("refund order %d: %w", orderID, err)
	}
	o, err := lc.RefundOrder(ctx, orderID, now)
	if err != nil {
		return nil, err
	}
	e.publishStatus(ctx, o)
	if _, err := e.RelayReturns(ctx); err != nil {
		e.log.Warn("relay stock returns", "err", err)
	}
	kctx, cancel := context.WithTimeout(ctx, refundKick)
	defer cancel()
	if _, err := e.RetryRefunds(kctx); err != nil {
		e.log.Warn("refund a refunded order's payment; will retry", "order", o.ID, "err", err)
	}
	return o, nil
}
