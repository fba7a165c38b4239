package seckill

import "context"

// Result statuses of a purchase as GET /api/sales/{id}/result shows them.
const (
	ResultNone    = "none"
	ResultQueued  = "queued"
	ResultSuccess = "success"
	ResultFailed  = "failed"
)

// OrderResult is the terminal outcome of one OrderRequest.
type OrderResult struct {
	SaleID  int64  `json:"sale_id"`
	UserID  int64  `json:"user_id"`
	Ticket  string `json:"ticket"`
	Status  string `json:"status"` // ResultSuccess or ResultFailed
	OrderID int64  `json:"order_id,omitempty"`
	Reason  string `json:"reason,omitempty"`
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
