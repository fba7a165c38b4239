package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// ExplainLifecycle returns the engine's plan of the sweeper's and the
// outbox's reads, all its columns as text. On PostgreSQL sequential scans
// are priced out, so that a test table of a few rows shows whether an
// index can serve the query at all (the planner would rightly scan so
// small a table).
func (db *DB) ExplainLifecycle(ctx context.Context, now time.Time) (expired, unapplied string, err error) {
	explain := `EXPLAIN `
	if db.d.name == "sqlite" {
		explain = `EXPLAIN QUERY PLAN `
	}
	err = db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if db.d.name == "postgres" {
			if _, err := tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
				return err
			}
		}
		var err error
		if expired, err = planText(ctx, tx, explain+db.lq().expired, db.tv(now), 10); err != nil {
			return err
		}
		unapplied, err = planText(ctx, tx, explain+db.lq().unappliedReturns, 0, 10)
		return err
	})
	return expired, unapplied, err
}

func planText(ctx context.Context, tx *sql.Tx, query string, args ...any) (string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		for i := range vals {
			vals[i] = new(sql.NullString)
		}
		if err := rows.Scan(vals...); err != nil {
			return "", err
		}
		for i, v := range vals {
			fmt.Fprintf(&b, "%s=%s ", cols[i], v.(*sql.NullString).String)
		}
		b.WriteString("\n")
	}
	return b.String(), rows.Err()
}
