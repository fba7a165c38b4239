package sqldb

import (
	"context"
	"database/sql"
)

// InTx exposes inTx, with its retries, to the tests.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error { return db.inTx(ctx, fn) }
