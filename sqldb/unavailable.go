package sqldb

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"seckill"
)

// A database that is away — restarting, failing over, killing its
// sessions (pg_terminate_backend, KILL), or unreachable — breaks the
// statements under way on its connections. Such a failure is not the
// request's fault: a read, or a transaction that never reached its
// commit, is run again on another connection (the pool drops the broken
// one), and what still fails is the busy error (503, retry), not an
// internal one (500).

// errDatabaseAway is the application error behind every failure to reach
// the database.
var errDatabaseAway = &seckill.Error{Code: seckill.EBusy, Message: "the database is unavailable; retry shortly"}

// awayError keeps the cause of a failure to reach the database while
// carrying the EBusy application error for seckill.ErrorCode.
type awayError struct{ err error }

func (e *awayError) Error() string   { return "database unavailable: " + e.err.Error() }
func (e *awayError) Unwrap() []error { return []error{errDatabaseAway, e.err} }

// readAttempts is how often a read runs while the connections under it
// break: when the server drops every session at once, each pooled
// connection fails one statement before the pool learns it is dead.
const readAttempts = 3

// lost tells whether err says the connection under a statement broke or
// could not be made, or the server refused it for now (shutting down,
// out of connections). A context's own end is not: the caller gave up.
func (db *DB) lost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne *net.OpError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return true
	}
	return db.d.lost != nil && db.d.lost(err)
}

// away returns err as the busy error when it is a lost connection (see
// lost), else err as it is.
func (db *DB) away(err error) error {
	if db.lost(err) {
		return &awayError{err: err}
	}
	return err
}

// reread runs f, a read, again while the connection under it breaks, up to
// readAttempts times in all; a read still failing so is errDatabaseAway.
// A read is safe to repeat; a write is not (see inTx, writeExec).
func reread[T any](ctx context.Context, db *DB, f func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := f()
		if err == nil || !db.lost(err) {
			return v, err
		}
		if attempt == readAttempts || ctx.Err() != nil {
			return v, &awayError{err: err}
		}
	}
}
