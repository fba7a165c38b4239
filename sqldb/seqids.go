package sqldb

import (
	"context"
	"database/sql"
	"fmt"
)

// insertOrdersSeq runs query, the INSERT … ON CONFLICT DO NOTHING of the
// orders of requests chunk without RETURNING, on an engine where the rows
// one statement inserts get consecutive ids after the largest id, in the
// order of its VALUES (dialect.seqIDs: SQLite, whose writer holds the only
// write lock, gives a new row the largest rowid plus one). Reading the
// inserted rows back through RETURNING cost about a fifth of the order
// writer's time on SQLite.
//
// b.maxID is the largest order id before the statement (read once per
// batch). When every row went in and LastInsertId is b.maxID plus their
// number, the rows hold the ids in between, in order. Otherwise (some
// conflicted: redeliveries) the chunk's orders are looked up, and those
// with an id above b.maxID are the ones inserted.
func (db *DB) insertOrdersSeq(ctx context.Context, tx *sql.Tx, b *orderBatch, chunk []int, query string, args []any) error {
	if b.maxID < 0 {
		if err := tx.QueryRowContext(ctx, db.d.q.maxOrderID).Scan(&b.maxID); err != nil {
			return fmt.Errorf("largest order id: %w", err)
		}
	}
	r, err := db.txExec(ctx, tx, query, args...)
	if err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	if n == 0 {
		return nil // all conflicts; LastInsertId tells nothing
	}
	last, err := r.LastInsertId()
	if err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	from := b.maxID
	b.maxID = max(b.maxID, last)
	if n == int64(len(chunk)) && last-from == n {
		for j, i := range chunk {
			b.orderID[i] = from + 1 + int64(j)
		}
		return nil
	}
	// Some rows conflicted. lookupOrders records every order found; keep
	// only those this statement inserted.
	bySale := map[int64][]int{}
	for _, i := range chunk {
		s := b.reqs[i].SaleID
		bySale[s] = append(bySale[s], i)
	}
	found := int64(0)
	for s, idx := range bySale {
		if err := db.lookupOrders(ctx, tx, b, s, idx); err != nil {
			return err
		}
		for _, i := range idx {
			if b.orderID[i] <= from {
				b.orderID[i] = 0 // there before: a conflict
			} else {
				found++
			}
		}
	}
	if found != n {
		return fmt.Errorf("insert orders: %d rows inserted, %d found with new ids", n, found)
	}
	return nil
}
