package seckill

import "context"

// Result statuses of a purchase as GET /api/sales/{id}/result shows them.
const (
	ResultNone    = "none"
	ResultQueued  = "queued"
	ResultSuccess = "success"
	ResultFailed  = "failed"
)

// Result is where a user's purchase in a sale stands, as the engine answers
// it, the result bus carries it and the WebSocket pushes it:
// {"status":…,"order_id":…,"reason":…,"ticket":…}. Status is one of the
// Result* statuses; OrderID is set on success, Reason (an error code) on
// failure. Ticket names the purchase the status is of (its 202's ticket):
// a buyer's old request, landing late and refused, fails under its own
// ticket while their newer purchase is queued or succeeds under its own,
// and a client waiting for one purchase tells the two apart by it. A
// success answered from SQL carries the order's ticket (its order number);
// "none" carries none.
type Result struct {
	Status  string `json:"status"`
	OrderID int64  `json:"order_id,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Ticket  string `json:"ticket,omitempty"`
}

// OrderResult is the terminal outcome of one OrderRequest: its Result
// (ResultSuccess or ResultFailed, under the request's ticket) for the
// request's sale and user.
//
// The same message, with OrderStatus set, tells that an order moved
// (paid, cancelled, refunded): then OrderID names the order, OrderStatus
// is its new status, and Ticket and Status are empty. It is no purchase
// outcome: IsOrderStatus tells the two apart, and listeners of outcomes
// skip it.
type OrderResult struct {
	SaleID      int64       `json:"sale_id"`
	UserID      int64       `json:"user_id"`
	OrderStatus OrderStatus `json:"order_status,omitempty"`
	Result
}

// IsOrderStatus reports whether r tells an order's move rather than a
// purchase's outcome.
func (r OrderResult) IsOrderStatus() bool { return r.OrderStatus != "" }

// OrderStatusMessage is the bus message telling that o moved to its
// current status.
func OrderStatusMessage(o *Order) OrderResult {
	return OrderResult{SaleID: o.SaleID, UserID: o.UserID, OrderStatus: o.Status, Result: Result{OrderID: o.ID}}
}

// ResultBus carries order results to every instance, so whichever holds the
// buyer's connection can answer them.
type ResultBus interface {
	// PublishResults sends results to all subscribers.
	PublishResults(ctx context.Context, rs []OrderResult) error
	// SubscribeResults calls fn for every result published from now on until
	// the returned cancel is called.
	SubscribeResults(fn func(OrderResult)) (cancel func(), err error)
}
