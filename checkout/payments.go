package checkout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

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

// minPayLead is the least time before its expiry at the provider, rounded
// down to the second, an order's payment is created with (Pay).
const minPayLead = time.Second

// payMargin is how much sooner than the order's pay deadline its payment
// expires at the provider: PayWindow/10, at most maxPayMargin. Money the
// provider takes in its last moment must reach the shop (its notification:
// milliseconds, up to half a second under a crowd) before the sweeper
// cancels the order at the deadline; with the two expiring together, a
// review saw 144 of 176 payments made in a 4 s window's last half second
// lose to the sweeper and go back as refunds (I5 held, the buyers lost
// orders they had paid for in time).
func (e *Engine) payMargin() time.Duration { return min(e.cfg.PayWindow/10, maxPayMargin) }

const maxPayMargin = 2 * time.Second

// Pay creates (or finds again) the provider's payment for the user's
// pending order and returns where the buyer pays. notifyURL is where the
// provider posts its notification; returnURL where its page sends the
// buyer back ("" for none). The payment expires at the provider a little
// before the order's pay deadline (payMargin, then rounded down to the
// second): the provider closes it then on its own, so a lapsed order
// cannot be paid even if our close is lost or overtaken, and a payment
// taken in the last moment is heard of before the sweeper cancels.
// Errors: ENotFound if there is no such order or it is someone else's;
// ENotPayable if it is not pending payment (also when a cancel or the
// sweeper moved it while Pay ran), its deadline has passed on the shared
// clock or its expiry is too close for a payment (within the second it
// would be rounded down to, on the provider client's clock), it costs
// nothing, no provider is configured, or the provider has the payment
// done or closed (expired) already.
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
	// The provider takes the deadline to the second, rounded down, and
	// compares it with its clock a moment after ours: a trade with less
	// than minPayLead to live would be born expired (and no buyer pays
	// that fast). On the shared clock, as every deadline: an instance's
	// own may be minutes off.
	expires := o.PayDeadline.Add(-e.payMargin())
	if expires.Truncate(time.Second).Sub(now) < minPayLead {
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d is too close to its pay deadline to pay", o.ID)
	}
	if o.PriceCents <= 0 {
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d costs nothing", o.ID)
	}
	// Not by return URL: without --public-url it is the Host the buyer
	// sent, so each Host made a write and two signed calls (found by
	// review), and a provider keeps a trade's first return URL anyway.
	key := openedKey{order: o.ID, notify: notifyURL}
	if p, ok := e.opened.get(key, time.Now()); ok && o.PayOpened {
		// Opened here a moment ago, and pending still: the same payment,
		// without a write and two signed calls to the provider each time
		// the buyer asks again (a flood of asks was a write each, found by
		// review). A cancel since the read closes it at the provider, as
		// it would one created now.
		return p, nil
	}
	subject := "Order " + o.OrderNo
	if s, err := e.Sale(ctx, o.SaleID); err == nil && s.Name != "" {
		subject = s.Name
	}
	// The mark first: a cancel closes the payment only of a marked order,
	// so a crash between the two leaves at worst a close of a trade that
	// was never created, never a trade no cancel closes. A cancel that
	// won the race since the order was read refuses the mark: no trade.
	if err := e.lifecycle().MarkPayOpened(ctx, o.ID); err != nil {
		if seckill.ErrorCode(err) == seckill.ENotPayable {
			return payment.Payment{}, err
		}
		return payment.Payment{}, fmt.Errorf("pay order %d: %w", o.ID, err)
	}
	p, err := e.b.Payments.CreatePayment(ctx, payment.PaymentRequest{
		OrderNo: o.OrderNo, AmountCents: o.PriceCents, Subject: subject,
		NotifyURL: notifyURL, ReturnURL: returnURL, ExpiresAt: expires,
	})
	switch {
	case errors.Is(err, payment.ErrTradePaid):
		// Applied now, not left to a notification that may not come.
		e.applyPaidTrade(ctx, o)
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d is paid already", o.ID)
	case errors.Is(err, payment.ErrTradeClosed):
		// Also an expiry already past on the provider's clock (ahead of
		// the shared one by more than minPayLead): the marked order has
		// no trade, and the sweeper's close is answered "no such trade".
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "the payment of order %d is closed", o.ID)
	case err != nil && ctx.Err() == nil && providerAway(err):
		e.log.Warn("pay: the payment provider did not answer", "order", o.ID, "err", err)
		return payment.Payment{}, errors.Join(seckill.Errorf(seckill.EBusy, "the payment provider is not answering; retry shortly"), err)
	case err != nil:
		return payment.Payment{}, fmt.Errorf("pay order %d: %w", o.ID, err)
	}
	// A cancel that committed after the mark closes the payment, but its
	// close may have reached the provider before the trade did and found
	// nothing to close. The cancel committed before that close, so the
	// order read now shows it: close the trade just created. The read and
	// the close outlive the request: a buyer who closed the tab must not
	// leave the trade open. A read that keeps failing hands out no pay URL
	// (the order may be cancelled); the trade is not closed either, for a
	// closed trade is never opened again and the order may be pending:
	// Pay again gets the same trade, or finds the order cancelled, and
	// then its trade lapses unpaid at the deadline.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	cur, err := e.b.Orders.Order(dctx, o.ID)
	for try := 1; err != nil && try < rereadTries && dctx.Err() == nil; try++ {
		time.Sleep(time.Duration(try) * 20 * time.Millisecond)
		cur, err = e.b.Orders.Order(dctx, o.ID)
	}
	switch {
	case err != nil:
		e.log.Warn("pay: read the order again after opening its payment", "order", o.ID, "err", err)
		return payment.Payment{}, seckill.Errorf(seckill.EBusy, "order %d: the payment could not be checked; retry shortly", o.ID)
	case cur.Status == seckill.OrderCancelled:
		e.closePayment(dctx, cur)
		return payment.Payment{}, seckill.Errorf(seckill.ENotPayable, "order %d was cancelled while its payment was opened", o.ID)
	}
	e.opened.put(key, p, time.Now())
	return p, nil
}

// openedPayments remembers the payments Pay opened in the last
// openedFor, by order and notify URL, at most maxOpened of them.
type openedPayments struct {
	mu sync.Mutex
	m  map[openedKey]openedPayment
}

type openedKey struct {
	order  int64
	notify string
}

type openedPayment struct {
	p  payment.Payment
	at time.Time
}

const (
	openedFor = 30 * time.Second
	maxOpened = 100_000
)

func (o *openedPayments) get(k openedKey, now time.Time) (payment.Payment, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.m[k]
	if !ok || now.Sub(v.at) > openedFor || now.Before(v.at) {
		return payment.Payment{}, false
	}
	return v.p, true
}

func (o *openedPayments) put(k openedKey, p payment.Payment, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil || len(o.m) >= maxOpened {
		for k, v := range o.m {
			if now.Sub(v.at) > openedFor || now.Before(v.at) {
				delete(o.m, k)
			}
		}
		if o.m == nil || len(o.m) >= maxOpened {
			o.m = make(map[openedKey]openedPayment)
		}
	}
	o.m[k] = openedPayment{p: p, at: now}
}

// rereadTries is how many times Pay reads the order after opening its
// payment before it gives up.
const rereadTries = 3

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
		// a success (out of order) must not undo it. The order stays as
		// it is: a trade that expired at the provider (a moment before our
		// deadline, rounded down to the second) is cancelled by the
		// sweeper at the deadline, like an order never opened.
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
// round, and however many there are, later ones are reached; each waits
// refusedFirst before it is asked again, then twice as long after each
// refusal up to refusedMost (a provider answering "busy" is away, not
// refusing: that is a failure) (found by review: one refused for good was
// asked, and logged as an error, every sweep, for ever). Any other
// failure stops the round (the provider or SQL is likely down) and is
// returned (the next round starts again at the payment that failed); so
// is the first refusal, after the others were tried. A payment whose
// refund stopped refundPassOver rounds in a row is passed over in the
// next as a refused one is: a call that hangs or fails for that trade
// alone (found by review: one hung refund held every later one for good,
// each round starting again at it) keeps no other buyer's money. When the
// provider is down for everyone this costs one failed call a round, as
// before.
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
	now := e.now()
	for _, p := range due {
		if !e.refused.due(p.ID, now) {
			last = p.ID
			continue
		}
		err := e.refund(ctx, p)
		switch {
		case err == nil:
			n++
			e.refused.forget(p.ID)
		case refusedByProvider(err):
			wait := e.refused.refusedAt(p.ID, now)
			e.log.Error("the provider refuses a refund; it stays due", "order", p.OrderNo, "trade", p.TradeNo, "asked_again_in", wait, "err", err)
			if refused == nil {
				refused = err
			}
		case e.refundStuck.failed(p.ID) >= refundPassOver:
			e.log.Error("a refund failed several rounds in a row; passed over until the pages come round", "order", p.OrderNo, "trade", p.TradeNo, "err", err)
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

// refundPassOver is how many rounds in a row a payment's refund may stop
// RetryRefunds before a round passes over it.
const refundPassOver = 3

// refundStuck is the payment whose refund last stopped a RetryRefunds
// round, and how many rounds in a row it did.
type refundStuck struct {
	mu     sync.Mutex
	id     int64
	rounds int
}

// failed records that the refund of payment id failed (not refused) and
// returns how many rounds in a row it has, this one included; it starts
// counting again from the one that reaches refundPassOver.
func (s *refundStuck) failed(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id != id {
		s.id, s.rounds = id, 0
	}
	s.rounds++
	n := s.rounds
	if n >= refundPassOver {
		s.id, s.rounds = 0, 0
	}
	return n
}

// A refund the provider refused waits refusedFirst before it is asked
// again, then twice as long after each refusal, up to refusedMost. At
// most refusedKept are remembered; beyond, a refused one is asked every
// round as before (only a signed notification makes a payment due a
// refund, so an attacker cannot fill the set).
const (
	refusedFirst = 10 * time.Second
	refusedMost  = time.Hour
	refusedKept  = 1 << 14
)

// refusedRefunds is when each refund the provider refused may be asked
// again, by payment id, on this instance (a restart asks every one again
// once).
type refusedRefunds struct {
	mu sync.Mutex
	m  map[int64]refusedRefund
}

type refusedRefund struct {
	next time.Time     // not asked again before
	wait time.Duration // how long it waited last
}

// due reports whether the refund of payment id may be asked at now.
func (r *refusedRefunds) due(id int64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.m[id]
	return !ok || !now.Before(f.next)
}

// refusedAt records a refusal of payment id's refund at now and returns
// how long it waits before it is asked again.
func (r *refusedRefunds) refusedAt(id int64, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.m[id]
	if !ok && len(r.m) >= refusedKept {
		return 0
	}
	if ok && now.Before(f.next) {
		// Another round asked at the same moment (an admin's refund
		// kicks one beside the sweeper's): one refusal, one wait.
		return f.next.Sub(now)
	}
	f.wait = min(max(refusedFirst, 2*f.wait), refusedMost)
	f.next = now.Add(f.wait)
	if r.m == nil {
		r.m = map[int64]refusedRefund{}
	}
	r.m[id] = f
	return f.wait
}

// forget drops payment id once its refund went through.
func (r *refusedRefunds) forget(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// providerAway reports whether err is a provider that could not be
// reached, did not answer in time, or answered "busy, try again": a buyer
// is told busy, not an internal error (found by review: a hung provider
// was a 500 for every payment).
func providerAway(err error) bool {
	var pe *payment.ProviderError
	if errors.As(err, &pe) {
		return pe.Code == payment.CodeUnavailable
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// refusedByProvider reports whether err is the provider's answer refusing
// a call, rather than a failure to reach it (or SQL).
func refusedByProvider(err error) bool {
	var pe *payment.ProviderError
	if errors.As(err, &pe) && pe.Code == payment.CodeUnavailable {
		// "Busy, try again" (Alipay's 20000, the sandbox's own when its
		// store is held): the provider is away, not refusing (found by
		// review: treated as a refusal, a refund waited out the back-off
		// long after the provider was back).
		return false
	}
	return pe != nil || errors.Is(err, payment.ErrNotFound) || errors.Is(err, payment.ErrNotRefundable) ||
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
		PaidAt: t.PaidAt,
	})
}
