package sqldb

import (
	"context"
	"database/sql"
	"sync/atomic"
)

// InTx exposes inTx, with its retries, to the tests.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error { return db.inTx(ctx, fn) }

// WritePool exposes the write pool, for the benchmarks that measure the
// engine's raw insert rate next to WriteOrders'.
func (db *DB) WritePool() *sql.DB { return db.write }

// CountRetryable makes db count the errors inTx finds retryable (deadlock
// victims, serialization failures), whether or not it retries them, and
// returns the counter. Call it before using db.
func (db *DB) CountRetryable() *atomic.Int64 {
	n := new(atomic.Int64)
	d := *db.d // a copy: other DBs of the engine keep theirs
	if inner := d.retryable; inner != nil {
		d.retryable = func(err error) bool {
			ok := inner(err)
			if ok {
				n.Add(1)
			}
			return ok
		}
	}
	db.d = &d
	return n
}
