package sqldb

import (
	"context"
	"database/sql"
	"strings"
	"sync/atomic"

	"github.com/pressly/goose/v3"
)

// SetSessionDeleteBatch sets how many sessions DeleteExpiredSessions
// deletes per transaction.
func (db *DB) SetSessionDeleteBatch(n int) { db.sessionBatch = n }

// InTx exposes inTx, with its retries, to the tests.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.inTx(ctx, func(_ context.Context, tx *sql.Tx) error { return fn(tx) })
}

// MigrateDownTo rolls the database at url back to migration version, as
// a binary of that version left it; Open migrates it up again.
func MigrateDownTo(ctx context.Context, url string, version int64) error {
	scheme, _, _ := strings.Cut(url, ":")
	d := dialects[scheme]
	write, read, err := d.open(ctx, url)
	if err != nil {
		return err
	}
	defer write.Close()
	if read != write {
		defer read.Close()
	}
	p, err := goose.NewProvider(d.goose, write, d.migrations)
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}

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
