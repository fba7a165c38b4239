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
)

// store keeps the sandbox's payments and the notifications it owes in
// SQLite (sandbox.db in its data directory). Every change is one
// transaction with synchronous=FULL: a payment the buyer saw succeed has
// its notification on disk before the page answers, so a crash (even of
// the machine) cannot lose a notification the sandbox owes.
type store struct {
	db *sql.DB
}

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

func openStore(ctx context.Context, dir string) (*store, error) {
	q := url.Values{
		"_txlock": {"immediate"},
		"_pragma": {"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)"},
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "sandbox.db")+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// One writer: SQLite has one anyway, and transitions stay serial.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("sandbox: schema: %w", err)
	}
	return &store{db: db}, nil
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
}

const paymentCols = `trade_no, out_trade_no, amount_cents, subject, notify_url, return_url, status, created_at, refund_cents, refund_reason`

func scanPayment(row *sql.Row) (*trade, error) {
	var p trade
	var created int64
	err := row.Scan(&p.TradeNo, &p.OutTradeNo, &p.AmountCents, &p.Subject, &p.NotifyURL, &p.ReturnURL,
		&p.Status, &created, &p.RefundCents, &p.RefundReason)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoPayment
	}
	if err != nil {
		return nil, err
	}
	p.CreatedAt = time.Unix(0, created)
	return &p, nil
}

var errNoPayment = errors.New("sandbox: no such payment")

func (s *store) byTradeNo(ctx context.Context, q querier, tradeNo string) (*trade, error) {
	return scanPayment(q.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM payments WHERE trade_no = ?`, tradeNo))
}

func (s *store) byOrderNo(ctx context.Context, q querier, orderNo string) (*trade, error) {
	return scanPayment(q.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM payments WHERE out_trade_no = ?`, orderNo))
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
	_, err := tx.ExecContext(ctx, `INSERT INTO payments (`+paymentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '')`,
		p.TradeNo, p.OutTradeNo, p.AmountCents, p.Subject, p.NotifyURL, p.ReturnURL, p.Status, p.CreatedAt.UnixNano())
	return err
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

// nextDue returns when the earliest pending notification is due; ok is
// false when none is pending.
func (s *store) nextDue(ctx context.Context) (at time.Time, ok bool, err error) {
	var n sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT MIN(next_at) FROM notifications WHERE state = 'pending'`).Scan(&n)
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
