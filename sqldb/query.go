package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"seckill"
)

// The helpers every store method shares: write transactions with retries,
// the hot prepared statements, inserts that return their id, and reading
// one row or all rows of a query.

// maxAttempts is how often inTx runs a transaction that keeps failing
// with a retryable error (a deadlock, a serialization failure, a
// connection lost before the commit) before it gives up.
const maxAttempts = 5

// inTx runs fn in a write transaction and commits it if fn returns nil.
// When the engine aborts the transaction as a deadlock victim or a
// serialization failure, or its connection breaks before the commit (the
// server then rolls it back), inTx rolls back and runs fn again, a few
// times, with a short random pause: fn must not keep state across calls.
// A connection that breaks during the commit leaves the outcome unknown:
// that is not retried. Either way a lost connection is answered as the
// busy error (see lost). All the attempts, commit included, run on ctx
// bounded by db's timeout (see bound), which fn must run its statements
// on: past it the transaction is busy too, its outcome unknown if the
// commit had begun.
func (db *DB) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := db.tryTx(bctx, fn)
		lost := db.lost(ctx, err) && !connectTimedOut(ctx, err) // a connect timeout, or the bound, is busy, not retried (see connectTimedOut)
		if lost {
			db.dropIdle() // see dropIdle: the pool's other connections are likely dead too
		}
		var ce *commitError
		again := err != nil && (db.d.retryable != nil && db.d.retryable(err) || lost && !errors.As(err, &ce))
		if !again || attempt == maxAttempts {
			return db.away(ctx, err)
		}
		// Writers that collided should not collide again in step.
		pause := time.Duration(rand.Int64N(int64(attempt) * int64(5*time.Millisecond)))
		select {
		case <-bctx.Done():
			if ctx.Err() == nil {
				return &awayError{err: errors.Join(err, bctx.Err())} // the bound ended
			}
			return errors.Join(db.away(ctx, err), ctx.Err())
		case <-time.After(pause):
		}
	}
}

// commitError is a failed commit: whether the transaction committed is
// not known.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

func (db *DB) tryTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, db.d.txOptions)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
			// database/sql rolled the transaction back when ctx (the
			// bound) ended, before COMMIT was sent: not committed, and
			// the bound's end, busy (seen in CI: answered 500 as an
			// unknown commit).
			return fmt.Errorf("commit: %w", ctx.Err())
		}
		return &commitError{err: err}
	}
	return nil
}

// prepareHot prepares the statements of the order writer's hot path on
// the write pool, once: every row count chunkSizes can produce. (Preparing
// later, inside a transaction, would wait for the write pool's only
// connection, which that transaction holds.)
func (db *DB) prepareHot(ctx context.Context) error {
	if !db.d.prepare {
		return nil
	}
	q, lq := db.d.q, db.lq()
	hot := []string{q.takeStock, q.ledgerRow, q.fencedTickets}
	for size := 1; size <= maxChunk; size *= 2 {
		hot = append(hot, q.stockLeft(size), q.insertOrder(size))
	}
	// The lifecycle's writes: a payment, a cancel, a refund each parse
	// several statements, and under a crowd of them parsing was a third
	// of SQLite's CPU.
	hot = append(hot, q.order, lq.cancel, lq.returnUnit, lq.cancelLedger, lq.orderByNo, lq.pay,
		lq.payment, lq.insertPayment, lq.markRefunded, lq.markApplied(1),
		lq.refund, lq.refundLedger, lq.refundPayment, lq.returnUnits)
	// The sweeper's: its cancels come in the power-of-two chunks of
	// hotChunks.
	for size := 1; size <= maxChunk; size *= 2 {
		if lq.cancelExpired != nil {
			hot = append(hot, lq.cancelExpired(size))
		}
		hot = append(hot, lq.cancelLedgers(size))
	}
	for _, query := range hot {
		st, err := db.write.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("sqldb: prepare: %w", err)
		}
		db.stmts[query] = st
	}
	return nil
}

// txQuery runs query in tx, as a prepared statement if it is a hot one.
func (db *DB) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := db.stmts[query]; st != nil {
		// On the write pool's one connection this reuses the statement.
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// txRow runs query in tx for one row, as a prepared statement if it is a
// hot one.
func (db *DB) txRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := db.stmts[query]; st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// writeExec runs query on the write pool outside a transaction, as a
// prepared statement if it is a hot one. The query must be idempotent:
// it runs again when the connection under it breaks, as a read does.
func (db *DB) writeExec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return reread(ctx, db, func(ctx context.Context) (sql.Result, error) {
		if st := db.stmts[query]; st != nil {
			return st.ExecContext(ctx, args...)
		}
		return db.write.ExecContext(ctx, query, args...)
	})
}

// txExec runs query in tx, as a prepared statement if it is a hot one.
func (db *DB) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := db.stmts[query]; st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// errConflict is what insertID returns when the row was not inserted
// because it conflicts with a unique key.
var errConflict = errors.New("unique key conflict")

// insertID runs an INSERT of one row and returns the new row's id, from
// RETURNING id or from LastInsertId. When the row conflicts with a unique
// key (the statement has ON CONFLICT DO NOTHING, or fails so) it returns
// errConflict.
func (db *DB) insertID(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	if db.d.returning {
		var id int64
		err := db.txRow(ctx, tx, query, args...).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, errConflict
		}
		return id, err
	}
	res, err := db.txExec(ctx, tx, query, args...)
	if err != nil {
		if db.d.duplicate(err) {
			return 0, fmt.Errorf("%w: %w", errConflict, err)
		}
		return 0, err
	}
	return res.LastInsertId()
}

// queryOne scans the row of a query that selects at most one, with scan.
// No row is ENotFound, "no " and what (format and args, formatted only on
// an error); any other error is wrapped with what.
func queryOne[T any](row *sql.Row, scan func(scanner) (T, error), format string, args ...any) (T, error) {
	v, err := scan(row)
	if err == nil {
		return v, nil
	}
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return v, seckill.Errorf(seckill.ENotFound, "no %s", what)
	}
	return v, fmt.Errorf("%s: %w", what, err)
}

// eachRow calls fn on every row of rows, the result of a query that
// returned err, and closes rows. It returns the first error: the query's,
// fn's, or one of iterating or closing.
func eachRow(rows *sql.Rows, err error, fn func(scanner) error) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// queryAll scans every row of rows, the result of a query that returned
// err, with scan, and closes rows; see eachRow for the errors.
func queryAll[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	var out []T
	err = eachRow(rows, err, func(s scanner) error {
		v, err := scan(s)
		out = append(out, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
