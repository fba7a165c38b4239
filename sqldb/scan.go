package sqldb

import (
	"database/sql"
	"fmt"
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
	var created, deadline, paid, cancelled dbTime
	if err := s.Scan(&o.ID, &o.OrderNo, &o.SaleID, &o.UserID, &o.PriceCents, &o.Status,
		&created, &deadline, &paid, &cancelled); err != nil {
		return nil, err
	}
	o.CreatedAt, o.PayDeadline = created.t, deadline.t
	o.PaidAt, o.CancelledAt = paid.ptr(), cancelled.ptr()
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

// column is one column of the rows a bulk statement carries.
type column interface {
	at(i int) any // row i's value, for engines that bind rows of parameters
	all() any     // every row's value, for engines that bind arrays
}

// col is a column with a value per row.
type col[T any] []T

func (c col[T]) at(i int) any { return c[i] }
func (c col[T]) all() any     { return []T(c) }

// same is a column with one value for every row: one parameter per row, or
// a single scalar where the engine binds arrays.
type same struct{ v any }

func (c same) at(int) any { return c.v }
func (c same) all() any   { return c.v }

// bulkArgs returns the parameters of a bulk statement of n rows with these
// columns: row after row, or one array per column (dialect.arrays).
func (db *DB) bulkArgs(n int, cols ...column) []any {
	if db.d.arrays {
		args := make([]any, len(cols))
		for i, c := range cols {
			args[i] = c.all()
		}
		return args
	}
	args := make([]any, 0, n*len(cols))
	for i := range n {
		for _, c := range cols {
			args = append(args, c.at(i))
		}
	}
	return args
}

// times is a time column, as the engine stores times.
func (db *DB) times(ts []time.Time) column {
	if db.d.timeMS {
		c := make(col[int64], len(ts))
		for i, t := range ts {
			c[i] = ms(t)
		}
		return c
	}
	c := make(col[time.Time], len(ts))
	for i, t := range ts {
		c[i] = stamp(t)
	}
	return c
}

// inArgs returns the parameters of an IN list: one per value, or one array.
func (db *DB) inArgs(head []any, vals []int64) []any {
	if db.d.arrays {
		return append(head, vals)
	}
	args := make([]any, 0, len(head)+len(vals))
	args = append(args, head...)
	for _, v := range vals {
		args = append(args, v)
	}
	return args
}
