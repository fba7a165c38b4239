// Package payment is the shop's side of a payment provider, shaped after
// Alipay's open API so that a real provider adapter is configuration (its
// gateway URL, our app id and key, its public key) plus the HTTP Client
// here, not a redesign. The sandbox provider in payment/sandbox speaks the
// same wire format.
//
// # Flow
//
// The shop asks the provider to create a payment for an order number and an
// amount (CreatePayment) and sends the buyer to the provider's pay page
// (Payment.PayURL). When the buyer pays, or the payment fails or is closed,
// the provider POSTs a signed asynchronous notification to the shop's
// notify URL and resends it on a backoff schedule until the shop answers the
// plain text "success". The shop checks it with VerifyNotification
// (signature, merchant, form) and compares the amount with the order's
// (CheckAmount). A notification that never came is asked for with
// QueryPayment; money that arrives for an order that can no longer take it
// goes back with Refund.
//
// # Wire format
//
// Notification: form-encoded (application/x-www-form-urlencoded) fields
// out_trade_no (our order number), trade_no (the provider's), total_amount
// (yuan with exactly two decimals, "12.34"), trade_status (TRADE_SUCCESS or
// TRADE_CLOSED), notify_time ("2006-01-02 15:04:05", China time),
// notify_id, app_id, sign_type ("RSA2") and sign.
//
// Signature (Sign, Verify): RSA-SHA256, PKCS #1 v1.5, base64 (standard
// alphabet, padded), over the content string: every field with a non-empty
// value except sign and sign_type, sorted by name (bytewise), written
// name=value (raw, not URL-escaped) and joined with "&". A field given
// twice is refused: which value was signed would be ambiguous.
//
// Requests to the provider (Client → gateway): one POST of form fields
// app_id, method, format=JSON, charset=utf-8, sign_type=RSA2, timestamp,
// version=1.0, biz_content (JSON), notify_url and return_url where they
// apply, and sign — signed like a notification except that sign_type is
// part of the content (Alipay's rule for requests; SignRequest). Methods:
// alipay.trade.precreate (create), alipay.trade.query, alipay.trade.refund,
// alipay.trade.close. A create's biz_content may carry time_expire, the
// absolute time the trade closes unpaid, in TimeLayout, China time. The
// answer is JSON {"<method with _>_response":
// {...}, "sign": "..."}, the sign being the provider's RSA2 signature over
// the exact bytes of the response object; code "10000" is success, others
// carry a sub_code such as ACQ.TRADE_NOT_EXIST (see gateway.go).
//
// Keys are RSA, 2048 bits, kept as PEM (keys.go): the shop's private key in
// <data>/payment/merchant.pem (MerchantKeyPath), its public half next to
// it in merchant.pub.pem for the provider.
package payment

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"seckill"
)

// Provider is a payment provider as the shop sees it. Every method is safe
// for concurrent use.
type Provider interface {
	// CreatePayment registers a payment of req.AmountCents for order
	// req.OrderNo and returns where the buyer pays. With req.ExpiresAt
	// the provider closes the payment at that time, to the second,
	// rounded down (it can never be paid later), and notifies
	// TRADE_CLOSED. Asking again for the same order and amount returns
	// the same payment while it is unpaid and unexpired; it keeps the
	// expiry it was created with. The expiry is the caller's to check
	// on its clock: the provider compares it with its own. Errors:
	// ErrTradePaid if the order's payment already succeeded;
	// ErrTradeClosed if it failed, was closed or expired, or its expiry
	// has passed on the provider's clock; a *ProviderError for other
	// refusals (another amount for the same order, bad input), and
	// transport errors.
	CreatePayment(ctx context.Context, req PaymentRequest) (Payment, error)
	// VerifyNotification checks an asynchronous notification (the parsed
	// form of POST notify_url): the provider's signature, our app id, and
	// that every field is present and well formed. Any failure is an
	// ErrBadSignature (the HTTP layer answers 400 bad_signature). It does
	// not know the order: comparing the amount is CheckAmount's job, and
	// replays verify again (they are the caller's to make no-ops).
	VerifyNotification(form url.Values) (Notification, error)
	// QueryPayment asks for the state of the order's payment, for a
	// notification that never came. Errors: ErrNotFound when the provider
	// has no payment for the order.
	QueryPayment(ctx context.Context, orderNo string) (Trade, error)
	// Refund gives amountCents of the order's payment back. It is
	// idempotent by order number: a second refund of the same order and
	// amount succeeds and moves no money. tradeNo, if not empty, must be
	// the order's trade number. Errors: ErrNotFound, ErrNotRefundable (the
	// payment did not succeed), a *ProviderError (another amount than the
	// first refund's, more than was paid).
	Refund(ctx context.Context, orderNo, tradeNo string, amountCents int64, reason string) error
	// ClosePayment closes the order's unpaid payment so that the buyer can
	// no longer pay it (the order timed out or was cancelled); the provider
	// then notifies TRADE_CLOSED. Closing a closed payment succeeds.
	// Errors: ErrNotFound, ErrTradePaid (too late: refund instead).
	ClosePayment(ctx context.Context, orderNo string) error
}

// PaymentRequest asks for a payment of one order.
type PaymentRequest struct {
	OrderNo     string // our order number (out_trade_no): 1–64 of [0-9A-Za-z_-]
	AmountCents int64  // > 0, at most MaxAmountCents
	Subject     string // what the buyer sees on the pay page; 1–256 bytes
	NotifyURL   string // where the provider POSTs the notification (absolute http(s))
	ReturnURL   string // where the pay page sends the buyer back ("" for none)
	// ExpiresAt is when the payment stops taking money (time_expire):
	// the provider closes it then. Zero: the provider's default.
	ExpiresAt time.Time
}

// Payment is a payment created at the provider.
type Payment struct {
	ID     string // the provider's trade number
	PayURL string // the pay page to send the buyer to
}

// TradeStatus is a payment's state at the provider (Alipay's names).
type TradeStatus string

const (
	// TradeWaiting: created, not paid yet (query only; never notified by
	// the sandbox).
	TradeWaiting TradeStatus = "WAIT_BUYER_PAY"
	// TradeSuccess: paid; refundable.
	TradeSuccess TradeStatus = "TRADE_SUCCESS"
	// TradeClosed: failed, closed unpaid, or refunded in full.
	TradeClosed TradeStatus = "TRADE_CLOSED"
	// TradeFinished: paid and no longer refundable. Real providers send it;
	// the sandbox never does. Treat it like TradeSuccess.
	TradeFinished TradeStatus = "TRADE_FINISHED"
)

// valid reports whether s is one of the statuses above.
func (s TradeStatus) valid() bool {
	switch s {
	case TradeWaiting, TradeSuccess, TradeClosed, TradeFinished:
		return true
	}
	return false
}

// Notification is a verified asynchronous notification.
type Notification struct {
	OutTradeNo       string // our order number
	TradeNo          string // the provider's trade number
	TotalAmountCents int64
	TradeStatus      TradeStatus
	NotifyID         string    // the same across resends of one notification
	NotifyTime       time.Time // when the provider made it
	AppID            string
}

// Trade is a payment's state as QueryPayment finds it.
type Trade struct {
	OutTradeNo  string
	TradeNo     string
	Status      TradeStatus
	AmountCents int64
	// PaidAt is when a paid trade was paid (send_pay_date); zero when the
	// provider did not say.
	PaidAt time.Time
}

// MaxAmountCents is the largest amount of one payment (Alipay's limit,
// 100,000,000.00 yuan).
const MaxAmountCents = 100_000_000_00

// Errors. ErrBadSignature and ErrAmountMismatch are application errors
// (seckill.Error) whose codes the HTTP layer maps to 400 bad_signature and
// 400 amount_mismatch; the others are for the caller to decide on.
var (
	ErrBadSignature   = &seckill.Error{Code: seckill.EBadSignature, Message: "payment notification is not signed by the provider"}
	ErrAmountMismatch = &seckill.Error{Code: seckill.EAmountMismatch, Message: "payment amount differs from the order's"}

	ErrNotFound      = errors.New("payment: no payment for this order at the provider")
	ErrTradePaid     = errors.New("payment: the order's payment already succeeded")
	ErrTradeClosed   = errors.New("payment: the order's payment is closed")
	ErrNotRefundable = errors.New("payment: the order's payment did not succeed; nothing to refund")
)

// ProviderError is a refusal by the provider that has no error of its own
// above: its code, sub-code and messages as it sent them.
type ProviderError struct {
	Method  string
	Code    string
	Msg     string
	SubCode string
	SubMsg  string
}

func (e *ProviderError) Error() string {
	return "payment: " + e.Method + ": " + e.Code + " " + e.Msg + ": " + e.SubCode + " " + e.SubMsg
}

// CheckAmount returns nil if the notification is for exactly orderCents,
// and an ErrAmountMismatch otherwise (answer 400 amount_mismatch; never mark
// such an order paid).
func CheckAmount(n Notification, orderCents int64) error {
	if n.TotalAmountCents != orderCents {
		return fmt.Errorf("%w: %s paid for an order of %s", ErrAmountMismatch, FormatYuan(n.TotalAmountCents), FormatYuan(orderCents))
	}
	return nil
}
