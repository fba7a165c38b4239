package sqldb

import (
	"fmt"
	"time"

	"seckill"
)

// Column lists shared by every engine, in the order the scan helpers read.
const (
	saleColumns = `id, name, description, image_url, price_cents, original_price_cents,
		stock, stock_left, starts_at, ends_at, require_captcha, created_at`
	orderColumns = `id, order_no, sale_id, user_id, price_cents, status,
		created_at, pay_deadline, paid_at, cancelled_at, refunded_at, pay_opened`
)

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// ms converts t to unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS converts unix milliseconds back to a UTC time.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// stamp is t as the database gives it back: UTC, whole milliseconds.
func stamp(t time.Time) time.Time { return fromMS(ms(t)) }

// tv converts t to the value the engine's time columns store.
func (db *DB) tv(t time.Time) any {
	if db.d.timeMS {
		return ms(t)
	}
	return stamp(t)
}

// dbTime scans any engine's time column: unix milliseconds (SQLite), a
// time.Time (PostgreSQL) or the text of a DATETIME (MySQL without
// parseTime), always giving a UTC time.
type dbTime struct {
	t     time.Time
	valid bool
}

// mysqlDatetime is how MySQL prints a DATETIME(3); the fraction is optional
// on parsing.
const mysqlDatetime = "2006-01-02 15:04:05.999999"

func (d *dbTime) Scan(v any) error {
	d.valid = v != nil
	switch v := v.(type) {
	case nil:
		d.t = time.Time{}
	case int64:
		d.t = fromMS(v)
	case time.Time:
		d.t = v.UTC()
	case []byte:
		return d.parse(string(v))
	case string:
		return d.parse(v)
	default:
		return fmt.Errorf("time column holds %T", v)
	}
	return nil
}

func (d *dbTime) parse(s string) error {
	t, err := time.ParseInLocation(mysqlDatetime, s, time.UTC)
	if err != nil {
		return fmt.Errorf("time column: %w", err)
	}
	d.t = t
	return nil
}

// ptr returns the time, or nil for NULL.
func (d *dbTime) ptr() *time.Time {
	if !d.valid {
		return nil
	}
	t := d.t
	return &t
}

func scanUser(s scanner) (*seckill.User, error) {
	var u seckill.User
	var created dbTime
	if err := s.Scan(&u.ID, &u.Phone, &u.PasswordHash, &u.Nickname, &u.Role, &created); err != nil {
		return nil, err
	}
	u.CreatedAt = created.t
	return &u, nil
}

func scanSale(s scanner) (*seckill.Sale, error) {
	var x seckill.Sale
	var starts, ends, created dbTime
	if err := s.Scan(&x.ID, &x.Name, &x.Description, &x.ImageURL, &x.PriceCents, &x.OriginalPriceCents,
		&x.Stock, &x.StockLeft, &starts, &ends, &x.RequireCaptcha, &created); err != nil {
		return nil, err
	}
	x.StartsAt, x.EndsAt, x.CreatedAt = starts.t, ends.t, created.t
	return &x, nil
}

func scanOrder(s scanner) (*seckill.Order, error) {
	var o seckill.Order
	var created, deadline, paid, cancelled, refunded dbTime
	if err := s.Scan(&o.ID, &o.OrderNo, &o.SaleID, &o.UserID, &o.PriceCents, &o.Status,
		&created, &deadline, &paid, &cancelled, &refunded, &o.PayOpened); err != nil {
		return nil, err
	}
	o.CreatedAt, o.PayDeadline = created.t, deadline.t
	o.PaidAt, o.CancelledAt, o.RefundedAt = paid.ptr(), cancelled.ptr(), refunded.ptr()
	return &o, nil
}

func scanSession(s scanner) (*seckill.Session, error) {
	var x seckill.Session
	var expires dbTime
	if err := s.Scan(&x.TokenHash, &x.UserID, &x.Role, &expires); err != nil {
		return nil, err
	}
	x.ExpiresAt = expires.t
	return &x, nil
}

func scanSaleStats(s scanner) (*seckill.SaleStats, error) {
	var st seckill.SaleStats
	if err := s.Scan(&st.Stock, &st.SQLStockLeft, &st.LedgerSum,
		&st.Orders, &st.Pending, &st.Paid, &st.Cancelled, &st.Refunded); err != nil {
		return nil, err
	}
	return &st, nil
}

// scanInt64 reads a row of one integer column (an id, a count).
func scanInt64(s scanner) (int64, error) {
	var v int64
	err := s.Scan(&v)
	return v, err
}
