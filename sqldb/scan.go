package sqldb

import (
	"database/sql"
	"iter"
	"time"

	"seckill"
)

// Column lists shared by every engine, in the order the scan helpers read.
const (
	saleColumns = `id, name, description, image_url, price_cents, original_price_cents,
		stock, stock_left, starts_at, ends_at, require_captcha, created_at`
	orderColumns = `id, order_no, sale_id, user_id, price_cents, status,
		created_at, pay_deadline, paid_at, cancelled_at`
)

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// ms converts t to the unix milliseconds stored in the database.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS converts stored unix milliseconds back to a UTC time.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// fromNullMS is fromMS for a nullable column.
func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func scanUser(s scanner) (*seckill.User, error) {
	var u seckill.User
	var created int64
	if err := s.Scan(&u.ID, &u.Phone, &u.PasswordHash, &u.Nickname, &u.Role, &created); err != nil {
		return nil, err
	}
	u.CreatedAt = fromMS(created)
	return &u, nil
}

func scanSale(s scanner) (*seckill.Sale, error) {
	var x seckill.Sale
	var starts, ends, created int64
	if err := s.Scan(&x.ID, &x.Name, &x.Description, &x.ImageURL, &x.PriceCents, &x.OriginalPriceCents,
		&x.Stock, &x.StockLeft, &starts, &ends, &x.RequireCaptcha, &created); err != nil {
		return nil, err
	}
	x.StartsAt, x.EndsAt, x.CreatedAt = fromMS(starts), fromMS(ends), fromMS(created)
	return &x, nil
}

func scanOrder(s scanner) (*seckill.Order, error) {
	var o seckill.Order
	var created, deadline int64
	var paid, cancelled sql.NullInt64
	if err := s.Scan(&o.ID, &o.OrderNo, &o.SaleID, &o.UserID, &o.PriceCents, &o.Status,
		&created, &deadline, &paid, &cancelled); err != nil {
		return nil, err
	}
	o.CreatedAt, o.PayDeadline = fromMS(created), fromMS(deadline)
	o.PaidAt, o.CancelledAt = fromNullMS(paid), fromNullMS(cancelled)
	return &o, nil
}

// scanOrders reads every order of rows and closes it.
func scanOrders(rows *sql.Rows, err error) ([]*seckill.Order, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var os []*seckill.Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, err
		}
		os = append(os, o)
	}
	return os, rows.Err()
}

// chunked yields consecutive pieces of s of the given sizes, which must add
// up to len(s).
func chunked[E any](s []E, sizes []int) iter.Seq[[]E] {
	return func(yield func([]E) bool) {
		for _, n := range sizes {
			if !yield(s[:n:n]) {
				return
			}
			s = s[n:]
		}
	}
}
