package seckill

import (
	"context"
	"time"
)

// Order statuses (I5: pending_payment → paid | cancelled, paid → refunded).
type OrderStatus string

const (
	OrderPending   OrderStatus = "pending_payment"
	OrderPaid      OrderStatus = "paid"
	OrderCancelled OrderStatus = "cancelled"
	OrderRefunded  OrderStatus = "refunded"
)

// Order is one unit sold to one user. There is at most one per (sale, user).
// A refunded order was paid (PaidAt stays) and then refunded by the shop.
type Order struct {
	ID          int64       `json:"id"`
	OrderNo     string      `json:"order_no"`
	SaleID      int64       `json:"sale_id"`
	UserID      int64       `json:"user_id"`
	PriceCents  int64       `json:"price_cents"`
	Status      OrderStatus `json:"status"`
	CreatedAt   time.Time   `json:"created_at"`
	PayDeadline time.Time   `json:"pay_deadline"`
	PaidAt      *time.Time  `json:"paid_at"`
	CancelledAt *time.Time  `json:"cancelled_at"`
	RefundedAt  *time.Time  `json:"refunded_at"`
	// PayOpened: the buyer opened the order's payment at the provider
	// (OrderLifecycle.MarkPayOpened, before the trade is created), so a
	// cancel must close it there; an order never opened has no trade to
	// close. Internal: the API does not show it.
	PayOpened bool `json:"-"`
}

// OrderRequest is an accepted purchase on its way to SQL: the message on the
// order queue. Its ticket becomes the order number.
type OrderRequest struct {
	SaleID     int64     `json:"sale_id"`
	UserID     int64     `json:"user_id"`
	Ticket     string    `json:"ticket"`
	PriceCents int64     `json:"price_cents"`
	At         time.Time `json:"at"`
}

// OrderStore keeps orders and the stock ledger.
type OrderStore interface {
	// WriteOrders stores a batch in one transaction: it inserts one
	// pending_payment order per request (a request whose (sale, user) already
	// has an order is not inserted again and reports that order), decrements
	// each sale's stock_left by the number inserted only where enough is left,
	// and appends one ledger row per inserted order. It returns one result per
	// request, in order. A request that finds its sale without stock, or no
	// such sale, fails with reason ESoldOut or ENotFound and changes nothing.
	// A request whose ticket FenceTicket recorded fails with reason
	// EExpired and changes nothing, whatever its (sale, user) holds; it is
	// left out of that pair's outcome, so a later request of the pair in the
	// batch, with a ticket not fenced, is written as if it came first. The
	// records are read once the batch holds its sales against FenceTicket,
	// so a fence committed before the batch wrote is always seen.
	// An error means nothing was written.
	WriteOrders(ctx context.Context, reqs []OrderRequest, payBy time.Time) ([]OrderResult, error)
	// Order returns the order or ENotFound.
	Order(ctx context.Context, id int64) (*Order, error)
	// OrderBySaleUser returns the user's order in the sale or ENotFound.
	OrderBySaleUser(ctx context.Context, saleID, userID int64) (*Order, error)
	// OrdersByUser returns the user's orders, newest first.
	OrdersByUser(ctx context.Context, userID int64) ([]*Order, error)
	// SaleBuyers returns the users holding an order of any status in the sale.
	SaleBuyers(ctx context.Context, saleID int64) ([]int64, error)
	// SaleSnapshot returns the sale's stock_left and the users holding an
	// order of any status in it, both read from one consistent snapshot:
	// an order batch committed meanwhile is in both or in neither. The
	// gate is rebuilt from it. ENotFound if there is no such sale.
	SaleSnapshot(ctx context.Context, saleID int64) (stockLeft int64, buyers []int64, err error)
	// FenceTicket decides, durably, that ticket (the user's request in the
	// sale) never becomes an order, unless the (sale, user) holds an order
	// already: the reconciler asks it before it releases the ticket's
	// reservation at the gate, since the request may still land in the
	// queue late. It holds the sale against WriteOrders in one transaction,
	// so exactly one of the two wins for a ticket:
	//
	//   - the ticket was fenced before: true, nothing changes (the verdict
	//     stands, whatever the pair holds since);
	//   - the (sale, user) holds an order of any status (written first, by
	//     this ticket or another): false, nothing is recorded; the pair's
	//     reservation belongs to that order and must not be released;
	//   - otherwise the record is written: true. Once it committed,
	//     WriteOrders refuses the ticket (EExpired) forever.
	//
	// A sale that does not exist has no order to write: true, and nothing
	// is recorded. The gate remembers a release only while it holds the
	// sale; a gate rebuilt from SQL and the queue learns it from
	// FencedTickets. After an error the verdict is unknown (it may have
	// committed): asking again gives it.
	FenceTicket(ctx context.Context, saleID, userID int64, ticket string) (fenced bool, err error)
	// FencedTickets returns the tickets of the sale that FenceTicket
	// recorded.
	FencedTickets(ctx context.Context, saleID int64) (map[string]bool, error)
}
