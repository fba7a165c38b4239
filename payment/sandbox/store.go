package sandbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers driver "sqlite"

	"seckill/internal/private"
	"seckill/payment"
)

// store keeps the sandbox's payments and the notifications it owes in
// SQLite (sandbox.db in its data directory). Every change is one
// transaction with synchronous=FULL: a payment the buyer saw succeed has
// its notification on disk before the page answers, so a crash (even of
// the machine) cannot lose a notification the sandbox owes.
type store struct {
	db *sql.DB
}

// schema is the store as it was first made (version 0). Change it only
// through migrations: a sandbox.db made by an earlier version is opened
// by this one.
const schema = `
CREATE TABLE IF NOT EXISTS payments (
	trade_no      TEXT PRIMARY KEY,
	out_trade_no  TEXT NOT NULL UNIQUE,
	amount_cents  INTEGER NOT NULL,
	subject       TEXT NOT NULL,
	notify_url    TEXT NOT NULL,
	return_url    TEXT NOT NULL,
	status        TEXT NOT NULL,            -- WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_CLOSED
	created_at    INTEGER NOT NULL,         -- unix nanoseconds
	done_at       INTEGER,                  -- paid or closed
	refund_cents  INTEGER NOT NULL DEFAULT 0,
	refund_reason TEXT NOT NULL DEFAULT '',
	refunded_at   INTEGER
);
CREATE TABLE IF NOT EXISTS notifications (
	notify_id  TEXT PRIMARY KEY,
	trade_no   TEXT NOT NULL,
	url        TEXT NOT NULL,
	body       TEXT NOT NULL,               -- the signed form, URL-encoded, sent as is every time
	state      TEXT NOT NULL,               -- pending, delivered, abandoned
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_at    INTEGER NOT NULL,            -- unix nanoseconds of the next attempt (pending)
	last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_at);
`

// migrations take the store from version i (SQLite's user_version) to
// i+1, each in the transaction that opens the store.
var migrations = []string{
	// 1: a trade's expiry (the create's time_expire), unix nanoseconds,
	// NULL for none; the index finds the waiting trades that expire next.
	`ALTER TABLE payments ADD COLUMN expires_at INTEGER;
	CREATE INDEX payments_expiring ON payments (expires_at) WHERE status = 'WAIT_BUYER_PAY' AND expires_at IS NOT NULL;`,
}

func openStore(ctx context.Context, dir string) (*store, error) {
	q := url.Values{
		"_txlock": {"immediate"},
		"_pragma": {"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)"},
	}
	path := filepath.Join(dir, "sandbox.db")
	if err := private.SQLite(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// One writer: SQLite has one anyway, and transitions stay serial.
	db.SetMaxOpenConns(1)
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sandbox: schema: %w", err)
	}
	return &store{db: db}, nil
}

// migrate creates the schema if the store is new and applies the
// migrations it has not had, in one (immediate) transaction, so that two
// sandboxes opening one store do not both migrate it.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("sandbox.db is at version %d, newer than this sandbox (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *store) close() error { return s.db.Close() }

// trade is one row of payments.
type trade struct {
	TradeNo, OutTradeNo  string
	AmountCents          int64
	Subject              string
	NotifyURL, ReturnURL string
	Status               string
	CreatedAt            time.Time
	RefundCents          int64
	RefundReason         string
	ExpiresAt            time.Time // zero: none
	DoneAt               time.Time // paid or closed; zero: neither yet
}

// expired reports whether p waits for a payment it can no longer take:
// its expiry has come by now. Such a trade is closed to everyone (query,
// create, the pay page) even before the notifier records the close.
func (p *trade) expired(now time.Time) bool {
	return p.Status == string(payment.TradeWaiting) && p.pastExpiry(now)
}

// pastExpiry reports whether p has an expiry and now is not before it,
// whatever p's status.
func (p *trade) pastExpiry(now time.Time) bool {
	return !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt)
}

const paymentCols = `trade_no, out_trade_no, amount_cents, subject, notify_url, return_url, status, created_at, refund_cents, refund_reason, expires_at`

// readCols are the columns scanPayment reads: paymentCols and when the
// trade was paid or closed.
const readCols = paymentCols + `, done_at`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanPayment(row scanner) (*trade, error) {
	var p trade
	var created int64
	var expires, done sql.NullInt64
	err := row.Scan(&p.TradeNo, &p.OutTradeNo, &p.AmountCents, &p.Subject, &p.NotifyURL, &p.ReturnURL,
		&p.Status, &created, &p.RefundCents, &p.RefundReason, &expires, &done)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoPayment
	}
	if err != nil {
		return nil, err
	}
	p.CreatedAt = time.Unix(0, created)
	if expires.Valid {
		p.ExpiresAt = time.Unix(0, expires.Int64)
	}
	if done.Valid {
		p.DoneAt = time.Unix(0, done.Int64)
	}
	return &p, nil
}

var errNoPayment = errors.New("sandbox: no such payment")

func (s *store) byTradeNo(ctx context.Context, q querier, tradeNo string) (*trade, error) {
	return scanPayment(q.QueryRowContext(ctx, `SELECT `+readCols+` FROM payments WHERE trade_no = ?`, tradeNo))
}

func (s *store) byOrderNo(ctx context.Context, q querier, orderNo string) (*trade, error) {
	return scanPayment(q.QueryRowContext(ctx, `SELECT `+readCols+` FROM payments WHERE out_trade_no = ?`, orderNo))
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in one write transaction.
func (s *store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func insertPayment(ctx context.Context, tx *sql.Tx, p *trade) error {
	var expires sql.NullInt64
	if !p.ExpiresAt.IsZero() {
		expires = sql.NullInt64{Int64: p.ExpiresAt.UnixNano(), Valid: true}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO payments (`+paymentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '', ?)`,
		p.TradeNo, p.OutTradeNo, p.AmountCents, p.Subject, p.NotifyURL, p.ReturnURL, p.Status, p.CreatedAt.UnixNano(), expires)
	return err
}

// expiring returns up to limit waiting trades whose expiry has come by
// now, the earliest first (through payments_expiring).
func (s *store) expiring(ctx context.Context, now time.Time, limit int) ([]*trade, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+readCols+` FROM payments
		WHERE status = 'WAIT_BUYER_PAY' AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?`,
		now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*trade
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// finish moves a waiting payment to status; false if it was not waiting
// any more (a double click, a close racing the buyer).
func finish(ctx context.Context, tx *sql.Tx, tradeNo, status string, at time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE payments SET status = ?, done_at = ? WHERE trade_no = ? AND status = 'WAIT_BUYER_PAY'`,
		status, at.UnixNano(), tradeNo)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func recordRefund(ctx context.Context, tx *sql.Tx, tradeNo string, cents int64, reason string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE payments SET refund_cents = ?, refund_reason = ?, refunded_at = ? WHERE trade_no = ? AND refund_cents = 0`,
		cents, reason, at.UnixNano(), tradeNo)
	return err
}

// notification is one row of notifications.
type notification struct {
	NotifyID, TradeNo, URL, Body string
	Attempts                     int
}

func insertNotification(ctx context.Context, tx *sql.Tx, n notification, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO notifications (notify_id, trade_no, url, body, state, next_at) VALUES (?, ?, ?, ?, 'pending', ?)`,
		n.NotifyID, n.TradeNo, n.URL, n.Body, at.UnixNano())
	return err
}

// due returns up to limit pending notifications whose time has come,
// oldest first.
func (s *store) due(ctx context.Context, now time.Time, limit int) ([]notification, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT notify_id, trade_no, url, body, attempts FROM notifications
		WHERE state = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?`, now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []notification
	for rows.Next() {
		var n notification
		if err := rows.Scan(&n.NotifyID, &n.TradeNo, &n.URL, &n.Body, &n.Attempts); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// nextWork returns when the notifier has something to do next: the
// earliest pending notification is due, or the earliest waiting trade
// with an expiry expires (both read off an index). ok is false when
// neither is pending.
func (s *store) nextWork(ctx context.Context) (at time.Time, ok bool, err error) {
	var n sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT MIN(t) FROM (
		SELECT MIN(next_at) AS t FROM notifications WHERE state = 'pending'
		UNION ALL
		SELECT MIN(expires_at) FROM payments WHERE status = 'WAIT_BUYER_PAY' AND expires_at IS NOT NULL)`).Scan(&n)
	if err != nil || !n.Valid {
		return time.Time{}, false, err
	}
	return time.Unix(0, n.Int64), true, nil
}

// attempted records one attempt at a pending notification: delivered,
// retry at next, or abandoned (state).
func (s *store) attempted(ctx context.Context, id, state string, next time.Time, lastErr string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE notifications SET attempts = attempts + 1, state = ?, next_at = ?, last_error = ?
		WHERE notify_id = ? AND state = 'pending'`, state, next.UnixNano(), lastErr, id)
	return err
}

// NotificationState is what the sandbox knows of one notification it
// owes or owed.
type NotificationState struct {
	NotifyID  string
	TradeNo   string
	State     string // pending, delivered or abandoned
	Attempts  int
	NextAt    time.Time // of a pending one
	LastError string
}

// notifications lists those of a trade, oldest first.
func (s *store) notifications(ctx context.Context, tradeNo string) ([]NotificationState, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT notify_id, trade_no, state, attempts, next_at, last_error
		FROM notifications WHERE trade_no = ? ORDER BY rowid`, tradeNo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []NotificationState
	for rows.Next() {
		var n NotificationState
		var next int64
		if err := rows.Scan(&n.NotifyID, &n.TradeNo, &n.State, &n.Attempts, &next, &n.LastError); err != nil {
			return nil, err
		}
		n.NextAt = time.Unix(0, next)
		out = append(out, n)
	}
	return out, rows.Err()
}
