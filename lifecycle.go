package seckill

import (
	"context"
	"time"
)

// PaymentOutcome is what a recorded payment did to its order.
type PaymentOutcome string

const (
	// PaymentApplied: the payment moved its order pending_payment → paid.
	PaymentApplied PaymentOutcome = "applied"
	// PaymentRefundDue: the money arrived for an order that could no
	// longer take it (cancelled, timed out, refunded, or paid by another
	// trade); it must go back to the buyer through the provider.
	PaymentRefundDue PaymentOutcome = "refund_due"
	// PaymentRefunded: a refund_due payment the provider gave back.
	PaymentRefunded PaymentOutcome = "refunded"
)

// Payment is money the provider reports received for one of our orders: a
// verified notification (or a reconciliation query) whose trade succeeded.
// The caller fills the notification's fields; the store fills the rest.
type Payment struct {
	OrderNo     string    // our order number (out_trade_no)
	TradeNo     string    // the provider's trade number: unique per payment
	AmountCents int64     // what was paid
	TradeStatus string    // as notified: TRADE_SUCCESS or TRADE_FINISHED
	NotifyID    string    // the notification's id, "" from a query (kept for audit)
	AppID       string    // the merchant the provider paid (kept for audit)
	PaidAt      time.Time // when the provider says it was paid; becomes the order's paid_at

	// Set by the store.
	ID         int64
	OrderID    int64
	SaleID     int64
	Outcome    PaymentOutcome
	CreatedAt  time.Time
	RefundedAt *time.Time
}

// OrderRef names an order the sweeper must cancel.
type OrderRef struct {
	ID          int64
	SaleID      int64
	UserID      int64
	OrderNo     string
	PayDeadline time.Time
	// PayOpened: its buyer asked to pay, so the provider may hold a
	// trade for it (the sweeper asks before it cancels).
	PayOpened bool
}

// StockReturn is a unit a cancelled or refunded order gave back to SQL
// stock that the stock gate has not been told about yet: one 'cancel' or
// 'refund' row of the stock ledger. The gate applies it idempotently by
// OrderID.
type StockReturn struct {
	LedgerID int64
	SaleID   int64
	OrderID  int64
}

// LifecycleStats are the numbers of a sale's lifecycle that SaleStats (the
// orders by status) does not give.
type LifecycleStats struct {
	RefundsDue       int64 `json:"refunds_due"`       // payments refund_due: money to give back
	PaymentsRefunded int64 `json:"payments_refunded"` // refund_due payments given back
	ReturnsUnapplied int64 `json:"returns_unapplied"` // cancelled or refunded units in SQL stock not yet in the gate
}

// OrderLifecycle moves orders after they are written: payment, cancellation
// (by the buyer or past the pay deadline), refunds (of money that came too
// late, and of paid orders), and the outbox of units to return to the
// stock gate. Each order move is one conditional UPDATE on
// the order's status (I5), so a payment racing a cancel or the sweeper has
// exactly one winner, on every instance. Every method is safe for
// concurrent use. Times are stored at millisecond precision in UTC.
//
// Times that several instances compare (now, a deadline) must come from one
// clock: pass the shared clock's time, not an instance's wall clock.
type OrderLifecycle interface {
	// CancelOrder moves the order pending_payment → cancelled, with
	// cancelled_at = now, and in the same transaction adds its unit back to
	// the sale's stock_left and appends one stock-ledger row (+1, reason
	// "cancel", the order's id) not yet applied to the gate (see
	// UnappliedReturns). userID 0 cancels any user's order (the sweeper);
	// otherwise the order must be that user's. With onlyIfExpired the
	// order must be past its deadline (pay_deadline <= now). It returns
	// the cancelled order, with PayOpened as it was when the cancel
	// committed: a MarkPayOpened racing it either committed first (and
	// PayOpened is true) or fails.
	//
	// Errors: ENotFound if there is no such order or it is not userID's;
	// ENotCancellable if it is not pending_payment (paid, cancelled already
	// — also by a racing call —, refunded) or, with onlyIfExpired, not yet
	// expired. On any error nothing changed.
	CancelOrder(ctx context.Context, orderID, userID int64, now time.Time, onlyIfExpired bool) (*Order, error)
	// CancelExpired is the sweeper's CancelOrder(…, 0, now, true) for many
	// orders at once: of the orders ids names, it cancels those still
	// pending_payment whose pay_deadline <= now, each exactly as
	// CancelOrder would (cancelled_at = now, its unit back to the sale's
	// stock_left, one +1 'cancel' stock-ledger row of its own not yet
	// applied to the gate), in a few transactions rather than one per
	// order: one per chunk of ids, so a large input commits in parts.
	// Each cancel is still one conditional move on the order's status
	// (I5): an order paid, cancelled (also by a racing CancelExpired or
	// CancelOrder) or refunded meanwhile, not yet expired, or unknown, is
	// skipped, not an error, and never gives a unit back.
	//
	// It returns the orders it cancelled, in id order, with PayOpened as
	// it was when their cancel committed (as CancelOrder's). Duplicate ids
	// count once. Errors are the backend's; the orders returned with one
	// are those of the parts that committed before it, and nothing of the
	// part that failed changed.
	CancelExpired(ctx context.Context, ids []int64, now time.Time) ([]*Order, error)
	// MarkPayOpened records that the order's payment is being opened at
	// the provider (Order.PayOpened), so that a cancel closes it there:
	// one conditional UPDATE, taken only while the order is
	// pending_payment, which serializes with CancelOrder's on the order's
	// row. Marking a marked order again is a no-op. Call it before
	// creating the trade, so that no trade exists without its mark.
	//
	// Errors: ENotFound if there is no such order; ENotPayable if it is
	// not pending_payment (cancelled — also by a racing call —, paid,
	// refunded). On any error nothing changed.
	MarkPayOpened(ctx context.Context, orderID int64) error
	// ExpiredOrders returns up to limit orders still pending_payment whose
	// pay_deadline <= now, earliest deadline first (then by id), read
	// through an index on (status, pay_deadline): its cost grows with the
	// orders returned, not with the table. It changes nothing: cancel them
	// with CancelExpired (or each with CancelOrder(…, 0, now, true)),
	// which skips those paid or cancelled since (another sweeper got there
	// first).
	//
	// With after (an order it returned) it goes on after that order in the
	// same order, so that orders a caller leaves pending do not hide the
	// ones behind them; the zero OrderRef starts from the first.
	ExpiredOrders(ctx context.Context, now time.Time, after OrderRef, limit int) ([]OrderRef, error)
	// ApplyPayment records p, once per p.TradeNo, and applies it to the
	// order p.OrderNo in one transaction:
	//
	//   - a pending_payment order moves to paid (paid_at = p.PaidAt) and
	//     the outcome is PaymentApplied;
	//   - an order in any other state (cancelled, e.g. by the timeout that
	//     won the race; refunded; paid by another trade) does not move, and
	//     the outcome is PaymentRefundDue: the caller refunds p through the
	//     provider, then calls MarkRefunded (PaymentsToRefund lists those
	//     whose refund has not been marked, for a retry loop).
	//
	// A replay (p.TradeNo recorded already, also by a concurrent call)
	// changes nothing and returns the recorded payment's current outcome
	// (PaymentRefunded once refunded). It returns the payment as recorded
	// and the order as it is after the call.
	//
	// Errors, with nothing recorded: ENotFound if there is no order
	// p.OrderNo; EAmountMismatch if p.AmountCents differs from the order's
	// price; EInvalid if p.TradeNo is empty or recorded for another order
	// or amount.
	ApplyPayment(ctx context.Context, p Payment) (*Payment, *Order, error)
	// RefundOrder refunds a paid order (an admin's decision): it moves
	// the order paid → refunded, with refunded_at = now, one conditional
	// UPDATE, and in the same transaction adds its unit back to the sale's
	// stock_left, appends one stock-ledger row (+1, reason "refund", the
	// order's id) not yet applied to the gate — the outbox a cancel's unit
	// goes through (UnappliedReturns), so the unit is sold again — and
	// moves the payment that paid the order applied → refund_due, so that
	// the refund loop gives the money back through the provider and marks
	// it refunded (PaymentsToRefund, MarkRefunded). The buyer stays a buyer
	// of the sale (I2). It returns the refunded order.
	//
	// Errors: ENotFound if there is no such order; ENotCancellable if it
	// is not paid (pending, cancelled, refunded already — also by a racing
	// call). On any error nothing changed.
	RefundOrder(ctx context.Context, orderID int64, now time.Time) (*Order, error)
	// MarkRefunded records that the refund_due payment tradeNo was given
	// back: refund_due → refunded (refunded_at = now), one conditional
	// UPDATE. Marking a refunded payment again is a no-op. Errors:
	// ENotFound if no payment tradeNo is recorded; EInvalid if it was
	// applied to its order (a paid order is refunded with RefundOrder,
	// which moves the order and makes its payment refund_due).
	MarkRefunded(ctx context.Context, tradeNo string, now time.Time) error
	// PaymentsToRefund returns up to limit payments whose outcome is
	// refund_due and whose id is greater than afterID, in id order (oldest
	// first), read through the index on (outcome, id). A caller pages
	// through them by passing the last id of one page as the next one's
	// afterID (0 for the first); a page shorter than limit is the last.
	// It changes nothing.
	PaymentsToRefund(ctx context.Context, afterID int64, limit int) ([]Payment, error)
	// UnappliedReturns returns up to limit units cancelled and refunded
	// orders gave back to SQL stock and not yet marked applied to the gate,
	// with ledger ids above afterID, oldest first, across sales: the outbox
	// of the stock gate. Each such order appears exactly once until
	// MarkReturnsApplied. A caller pages through them by passing the last
	// ledger id of one page as the next one's afterID (0 for the first), so
	// rows it leaves unapplied (a sale the gate cannot take a unit of now)
	// do not hide the ones after them; a page shorter than limit is the
	// last. It changes nothing.
	UnappliedReturns(ctx context.Context, afterID int64, limit int) ([]StockReturn, error)
	// MarkReturnsApplied marks these ledger rows applied to the gate, so
	// UnappliedReturns lists them no more. Unknown or already marked ids
	// are ignored. Mark only after the gate has the units (a crash
	// between the two re-applies them, which the gate must make a no-op
	// by order id).
	MarkReturnsApplied(ctx context.Context, ledgerIDs []int64) error
	// ReturnedOrders returns the ids of the sale's orders whose unit went
	// back to stock — cancelled and refunded ones —, in id order; none (or
	// no such sale) is not an error.
	ReturnedOrders(ctx context.Context, saleID int64) ([]int64, error)
	// SaleSnapshotWithReturns is OrderStore.SaleSnapshot plus the ids of
	// the sale's returned orders (as ReturnedOrders), all read from one
	// snapshot: stockLeft includes exactly the units of the orders listed.
	// A gate rebuilt from it must treat those orders' returns as applied,
	// so that the outbox does not give their units back twice. ENotFound
	// if there is no such sale.
	SaleSnapshotWithReturns(ctx context.Context, saleID int64) (stockLeft int64, buyers, returned []int64, err error)
	// LifecycleStats counts the sale's refunds due and done and its
	// returned units not yet applied to the gate, from one snapshot.
	// ENotFound if there is no such sale.
	LifecycleStats(ctx context.Context, saleID int64) (*LifecycleStats, error)
}

// Clock is the one clock that instances compare times on (a database's or
// Redis's), so that two instances whose wall clocks disagree still agree
// on whether an order's pay deadline has passed.
type Clock interface {
	// Now returns the shared clock's time. Errors are the backend's (it
	// is unreachable).
	Now(ctx context.Context) (time.Time, error)
}
