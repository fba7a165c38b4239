package sqldb

import (
	"context"
	"fmt"
	"time"

	"seckill"
)

var _ seckill.Clock = (*DB)(nil)

// clockSQL reads the database server's clock as unix milliseconds, per
// engine. PostgreSQL's clock_timestamp and MySQL's NOW(3) outside a
// transaction are the time of the statement, not of a transaction's start.
var clockSQL = map[*dialect]string{
	&sqlite:   `SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`,
	&postgres: `SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)`,
	&mysql:    `SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)`,
}

// Now returns the database server's time (millisecond precision, UTC): the
// one clock every instance sharing the database reads, so that they agree
// on which orders are past their deadline. Errors are the database's.
func (db *DB) Now(ctx context.Context) (time.Time, error) {
	return reread(ctx, db, func(ctx context.Context) (time.Time, error) {
		var v int64
		if err := db.read.QueryRowContext(ctx, clockSQL[db.d]).Scan(&v); err != nil {
			return time.Time{}, fmt.Errorf("read the database clock: %w", err)
		}
		return fromMS(v), nil
	})
}
