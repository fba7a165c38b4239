package sqldb

import (
	"context"
	"database/sql"
)

// InTx exposes inTx, with its retries, to the tests.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error { return db.inTx(ctx, fn) }

// WritePool exposes the write pool, for the benchmarks that measure the
// engine's raw insert rate next to WriteOrders'.
func (db *DB) WritePool() *sql.DB { return db.write }

// Dialect names the engine: "sqlite", "postgres" or "mysql".
func (db *DB) Dialect() string { return db.d.name }
