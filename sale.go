package seckill

import (
	"context"
	"time"
)

// Sale statuses as the API shows them.
const (
	SaleUpcoming = "upcoming"
	SaleActive   = "active"
	SaleSoldOut  = "sold_out"
	SaleEnded    = "ended"
)

// MaxStock is the largest stock one sale may have.
const MaxStock = 10_000_000

// Sale is one item on sale for a time window. It is kept apart from any
// product table: the hot path reads only this.
type Sale struct {
	ID                 int64     `json:"id"`
	Name               string    `json:"name"`
	Description        string    `json:"description"`
	ImageURL           string    `json:"image_url"`
	PriceCents         int64     `json:"price_cents"`
	OriginalPriceCents int64     `json:"original_price_cents"`
	Stock              int64     `json:"stock"`
	StockLeft          int64     `json:"stock_left"`
	StartsAt           time.Time `json:"starts_at"`
	EndsAt             time.Time `json:"ends_at"`
	RequireCaptcha     bool      `json:"require_captcha"`
	CreatedAt          time.Time `json:"created_at"`
}

// Status tells where the sale stands at now with left units remaining.
func (s *Sale) Status(now time.Time, left int64) string {
	switch {
	case now.Before(s.StartsAt):
		return SaleUpcoming
	case !now.Before(s.EndsAt):
		return SaleEnded
	case left <= 0:
		return SaleSoldOut
	default:
		return SaleActive
	}
}

// Window returns nil if the sale admits purchases at now, else ENotStarted or
// EEnded.
func (s *Sale) Window(now time.Time) error {
	if now.Before(s.StartsAt) {
		return Errorf(ENotStarted, "sale %d starts at %s", s.ID, s.StartsAt.UTC().Format(time.RFC3339))
	}
	if !now.Before(s.EndsAt) {
		return Errorf(EEnded, "sale %d ended at %s", s.ID, s.EndsAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// SaleStats is what SQL knows of a sale: the ground truth the invariants are
// checked against.
type SaleStats struct {
	Stock        int64 `json:"stock"`
	SQLStockLeft int64 `json:"sql_stock_left"`
	Orders       int64 `json:"orders"` // all orders, any status
	Pending      int64 `json:"pending_payment"`
	Paid         int64 `json:"paid"`
	Cancelled    int64 `json:"cancelled"`
	Refunded     int64 `json:"refunded"`
	LedgerSum    int64 `json:"ledger_sum"` // sum of stock-ledger deltas; equals SQLStockLeft
}

// SaleStore keeps the catalogue.
type SaleStore interface {
	// CreateSale inserts s, sets ID, CreatedAt and StockLeft = Stock, and
	// records the initial stock in the stock ledger.
	CreateSale(ctx context.Context, s *Sale) error
	// Sale returns the sale or ENotFound.
	Sale(ctx context.Context, id int64) (*Sale, error)
	// Sales returns every sale, by start time then id.
	Sales(ctx context.Context) ([]*Sale, error)
	// SaleStats counts the sale's orders by status. ENotFound if no sale.
	SaleStats(ctx context.Context, id int64) (*SaleStats, error)
	// EndSale stops a sale early: a sale still on sale or upcoming at at
	// ends at at (EndsAt = at), and one that had not started by then never
	// opens (StartsAt = at as well). A sale already ended by at is left as
	// it is. It returns the sale as stored afterwards; ENotFound if there
	// is no such sale.
	EndSale(ctx context.Context, id int64, at time.Time) (*Sale, error)
}
