package checkout

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"seckill"
	"seckill/payment"
)

// Paying orders through the provider (Backends.Payments). The provider's
// signed notification is the only thing that marks an order paid
// (HandleNotification, or ReconcilePayment asking the provider for one
// that never came); both go through applyPayment, which records the
// payment once per trade number and moves the order in one conditional
// UPDATE, so a payment racing the sweeper or a cancel has one winner. Money
// that arrives for an order that can no longer take it is refunded.

// refundBatch bounds the refunds one RetryRefunds round retries: one page
// of the payments due.
const refundBatch = 100

// Pay creates (or finds again) the provider's payment for the user's
// pending order and returns where the buyer pays. notifyURL is where the
// provider posts its notification; returnURL where its page sends the
// buyer back ("" for none). Errors: ENotFound if there is no such order or
// it is someone else's; ENotPayable if it is not pending payment, its
// deadline has passed on the shared clock, it costs nothing, no provider
// is configured, or the provider has the payment done or closed already.
func (e *Engine) Pay(ctx context.Context, userID, orderID int64, notifyURL, returnURL string) (payment.Payment, error) {
	o, err := e.b.Orders.Order(ctx, orderID)
	if err != nil {
		return payment.Payment{}, err
	}
	if o.UserID != userID {
		return payment.Payment{}, seckill.Errorf(seckill.ENotFound, "no order %d", orderID)
	}
	if e.b.Payments == nil || e.lifecycle() == nil {
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "payments are not configured")
	}
	if o.Status != seckill.OrderPending {
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d is %s", o.ID, o.Status)
	}
	now, err := e.sharedNow(ctx)
	if err != nil {
		return payment.Payment{}, fmt.Errorf("pay order %d: %w", o.ID, err)
	}
	if !now.Before(o.PayDeadline) {
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d is past its pay deadline", o.ID)
	}
	if o.PriceCents <= 0 {
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d costs nothing", o.ID)
	}
	subject := "Order " + o.OrderNo
	if s, err := e.Sale(ctx, o.SaleID); err == nil && s.Name != "" {
		subject = s.Name
	}
	p, err := e.b.Payments.CreatePayment(ctx, payment.PaymentRequest{
		OrderNo: o.OrderNo, AmountCents: o.PriceCents, Subject: subject,
		NotifyURL: notifyURL, ReturnURL: returnURL,
	})
	switch {
	case errors.Is(err, payment.ErrTradePaid):
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d is paid already; its notification is on its way", o.ID)
	case errors.Is(err, payment.ErrTradeClosed):
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "the payment of order %d is closed", o.ID)
	case err != nil:
		return payment.Payment{}, fmt.Errorf("pay order %d: %w", o.ID, err)
	}
	return p, nil
}

// HandleNotification handles the provider's asynchronous notification
// (the parsed form of POST /api/payments/notify). A nil error means it is
// handled — also a replay, a closed trade, a trade of an order that can no
// longer take it (recorded and refunded) — and the provider must be
// answered "success". Errors: EBadSignature if the signature, the merchant
// or the form is wrong; EAmountMismatch if the amount is not the order's;
// ENotFound if no order has that number (nothing is recorded; the provider
// keeps resending, and ReconcilePayment can apply it later); EInvalid if
// the trade number is recorded for another order; others are transient
// (the provider resends).
func (e *Engine) HandleNotification(ctx context.Context, form url.Values) error {
	if e.b.Payments == nil || e.lifecycle() == nil {
		return seckill.Errorf(seckill.EBadSignature, "payments are not configured")
	}
	n, err := e.b.Payments.VerifyNotification(form)
	if err != nil {
		return err
	}
	switch n.TradeStatus {
	case payment.TradeSuccess, payment.TradeFinished:
	default:
		// Closed or waiting: nothing was paid, and a close arriving after
		// a success (out of order) must not undo it.
		return nil
	}
	_, err = e.applyPayment(ctx, seckill.Payment{
		OrderNo: n.OutTradeNo, TradeNo: n.TradeNo, AmountCents: n.TotalAmountCents,
		TradeStatus: string(n.TradeStatus), NotifyID: n.NotifyID, AppID: n.AppID, PaidAt: n.NotifyTime,
	})
	return err
}

// applyPayment records a successful trade and applies it (see
// seckill.OrderLifecycle.ApplyPayment): the order is paid and its buyer
// told, or the money goes back through the provider. A refund that fails
// here is retried by RetryRefunds. It returns the order as it is after.
func (e *Engine) applyPayment(ctx context.Context, p seckill.Payment) (*seckill.Order, error) {
	if p.PaidAt.IsZero() {
		now, err := e.sharedNow(ctx)
		if err != nil {
			return nil, err
		}
		p.PaidAt = now
	}
	rec, o, err := e.lifecycle().ApplyPayment(ctx, p)
	if err != nil {
		return nil, err
	}
	switch rec.Outcome {
	case seckill.PaymentApplied:
		// A replay publishes again: harmless, the status is the same.
		e.publishStatus(ctx, o)
	case seckill.PaymentRefundDue:
		if err := e.refund(ctx, *rec); err != nil {
			e.log.Warn("refund a payment for an order that could not take it; will retry", "order", o.ID, "trade", rec.TradeNo, "err", err)
		}
	}
	return o, nil
}

// refund gives a refund_due payment back through the provider and marks it
// refunded. The provider's refund is idempotent by order number, so a
// retry after a crash between the two moves no money twice.
func (e *Engine) refund(ctx context.Context, p seckill.Payment) error {
	if err := e.b.Payments.Refund(ctx, p.OrderNo, p.TradeNo, p.AmountCents, "order no longer payable"); err != nil {
		return fmt.Errorf("refund trade %s: %w", p.TradeNo, err)
	}
	now, err := e.sharedNow(ctx)
	if err != nil {
		return fmt.Errorf("refund trade %s: %w", p.TradeNo, err)
	}
	if err := e.lifecycle().MarkRefunded(ctx, p.TradeNo, now); err != nil {
		return fmt.Errorf("mark trade %s refunded: %w", p.TradeNo, err)
	}
	return nil
}

// RetryRefunds refunds the payments still due a refund (their refund
// failed, or the process died before it), one page of refundBatch a
// round, in id order: each round on this instance goes on after the last
// payment the previous one tried, and back to the oldest once a page
// comes back short (the end). It returns how many it refunded. A refund
// the provider refuses (its answer names why: the trade is past its
// refund window, unknown, …) is logged and passed over, so that one
// refused for good does not keep every later buyer's money; it stays due
// (an operator's matter) and is asked again each time the pages come
// round, and however many there are, later ones are reached. Any other
// failure stops the round (the provider or SQL is likely down) and is
// returned (the next round starts again at the payment that failed); so
// is the first refusal, after the others were tried.
func (e *Engine) RetryRefunds(ctx context.Context) (int, error) {
	lc := e.lifecycle()
	if lc == nil || e.b.Payments == nil {
		return 0, nil
	}
	last := e.refundAfter.Load()
	due, err := lc.PaymentsToRefund(ctx, last, refundBatch)
	if err != nil {
		return 0, fmt.Errorf("retry refunds: %w", err)
	}
	n := 0
	var refused error
	for _, p := range due {
		err := e.refund(ctx, p)
		switch {
		case err == nil:
			n++
		case refusedByProvider(err):
			e.log.Error("the provider refuses a refund; it stays due", "order", p.OrderNo, "trade", p.TradeNo, "err", err)
			if refused == nil {
				refused = err
			}
		default:
			e.refundAfter.Store(last)
			return n, err
		}
		last = p.ID
	}
	if len(due) < refundBatch {
		last = 0
	}
	e.refundAfter.Store(last)
	return n, refused
}

// refusedByProvider reports whether err is the provider's answer refusing
// a call, rather than a failure to reach it (or SQL).
func refusedByProvider(err error) bool {
	var pe *payment.ProviderError
	return errors.As(err, &pe) || errors.Is(err, payment.ErrNotFound) || errors.Is(err, payment.ErrNotRefundable) ||
		errors.Is(err, payment.ErrTradePaid) || errors.Is(err, payment.ErrTradeClosed)
}

// ReconcilePayment asks the provider for the payment of an order whose
// notification never came and applies a success as the notification
// would have. It returns the order as it is after. Errors: ENotFound if
// there is no such order or the provider has no payment for it;
// ENotPayable if payments are not configured.
func (e *Engine) ReconcilePayment(ctx context.Context, orderID int64) (*seckill.Order, error) {
	o, err := e.b.Orders.Order(ctx, orderID)
	if err != nil {
		return nil, err
	}
	if e.b.Payments == nil || e.lifecycle() == nil {
		return nil, seckill.Errorf(seckill.ENotPayable, "payments are not configured")
	}
	t, err := e.b.Payments.QueryPayment(ctx, o.OrderNo)
	if errors.Is(err, payment.ErrNotFound) {
		return nil, seckill.Errorf(seckill.ENotFound, "the provider has no payment for order %d", orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("reconcile order %d: %w", orderID, err)
	}
	if t.Status != payment.TradeSuccess && t.Status != payment.TradeFinished {
		return o, nil
	}
	return e.applyPayment(ctx, seckill.Payment{
		OrderNo: t.OutTradeNo, TradeNo: t.TradeNo, AmountCents: t.AmountCents, TradeStatus: string(t.Status),
	})
}
