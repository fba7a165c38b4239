package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"seckill"
)

// placeOrders is writeOrders for engines that lock rows and whose bulk
// INSERT says what it inserted (dialect.insertFirst): it writes the orders
// first and locks the sales after, so a sale's row is locked only from
// that lock to the commit, not while thousands of orders and their indexes
// are written, and the writers of one sale overlap.
//
//  1. Insert the order of every first request, ordered by (sale, user),
//     skipping those whose (sale, user) has one. Holding no sale's row yet,
//     this waits only for other writers' uncommitted orders of the same
//     (sale, user) — a redelivery meeting its original — and every writer
//     takes those keys in the same order.
//  2. Lock the batch's sales in id order and read their units left, then
//     their fenced tickets: a request whose ticket is fenced rolls the
//     transaction back, its order with it, and WriteOrders runs it again
//     with the request set aside (checkFences).
//  3. Where a sale has fewer units left than orders inserted, the earliest
//     requests (in request order) keep them and the rest are deleted again,
//     sold out (or not found, for a sale that does not exist); requests
//     that found an order already get its id.
//  4. Take each sale's units and append its ledger row, one statement.
//
// No cycle of waits can form among such writers: a writer in step 1 holds
// no sale, so only writers in step 1 wait for it, and they wait for keys
// in one order; writers in steps 2–4 wait only for sales, taken in one
// order. Writers of the other engines' path (writeOrders) never run on
// the same database. Requests get what writeOrders would give them.
//
// Step 1 is one INSERT from unnest(arrays), not COPY. COPY cannot skip
// conflicts nor return ids, so it would go into a temporary staging table
// and an INSERT … SELECT … ON CONFLICT would follow. Measured on
// PostgreSQL 15, batches of 2000: COPY straight into orders
// (BenchmarkRawCopyPostgres) beats a plain multi-row INSERT by only about
// 5%, since the four indexes of orders cost most of the time, and the
// staging path was 8% slower than this one, and 25% slower with parallel
// writers of 100-order batches: writing the staging table and the COPY's
// extra round trips cost more than binding arrays does.
func (db *DB) placeOrders(ctx context.Context, tx *sql.Tx, b *orderBatch, payBy time.Time) error {
	var idx []int
	todo := make([][]int, len(b.sales))
	for k, s := range b.sales {
		idx, todo[k] = append(idx, s.todo...), s.todo
	}
	// The statement orders the rows by (sale, user) itself; it is the one
	// place that order is promised.
	if err := db.insertOrders(ctx, tx, b, idx, payBy); err != nil {
		return err
	}
	if err := db.loadStockLeft(ctx, tx, b); err != nil {
		return err
	}
	if err := db.checkFences(ctx, tx, b); err != nil {
		return err
	}
	var drop []int64 // orders inserted above that found no unit
	for k, s := range b.sales {
		// loadStockLeft failed the requests of a sale it did not find
		// (ENotFound) and cleared its todo.
		missing := s.todo == nil
		for _, i := range todo[k] {
			switch {
			case missing:
				if b.orderID[i] != 0 {
					drop = append(drop, b.orderID[i])
					b.orderID[i] = 0
				}
			case b.orderID[i] == 0:
				s.conflict = append(s.conflict, i)
			case int64(len(s.inserted)) < s.left:
				s.inserted = append(s.inserted, i)
			default:
				drop = append(drop, b.orderID[i])
				b.orderID[i], b.reason[i] = 0, seckill.ESoldOut
			}
		}
		s.todo = nil
	}
	return db.finishPlaced(ctx, tx, b, drop)
}

// finishPlaced is the end of placeOrders: it deletes the orders in drop,
// looks up the orders the requests in conflict hold, and takes the units
// of the orders inserted.
func (db *DB) finishPlaced(ctx context.Context, tx *sql.Tx, b *orderBatch, drop []int64) error {
	if len(drop) > 0 {
		r, err := tx.ExecContext(ctx, db.d.q.deleteOrders, drop)
		if err != nil {
			return fmt.Errorf("delete %d orders without a unit: %w", len(drop), err)
		}
		if n, err := r.RowsAffected(); err != nil || n != int64(len(drop)) {
			return fmt.Errorf("delete %d orders without a unit: %d deleted (%v)", len(drop), n, err)
		}
	}
	var ids, counts []int64
	for _, s := range b.sales {
		if len(s.conflict) > 0 {
			if err := db.lookupOrders(ctx, tx, b, s.id, s.conflict); err != nil {
				return err
			}
			for _, i := range s.conflict {
				if b.orderID[i] == 0 {
					return fmt.Errorf("sale %d user %d: insert conflicted but no order found", s.id, b.reqs[i].UserID)
				}
			}
		}
		if n := len(s.inserted); n > 0 {
			ids, counts = append(ids, s.id), append(counts, int64(n))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// The sales are locked and their units were counted: a miss means
	// the invariant broke, and the whole batch rolls back.
	r, err := tx.ExecContext(ctx, db.d.q.takeStocks, ids, counts, db.tv(db.now()))
	if err != nil {
		return fmt.Errorf("take the units of %d sales: %w", len(ids), err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return fmt.Errorf("take the units of %d sales: %w", len(ids), err)
	} else if n != int64(len(ids)) {
		return fmt.Errorf("take the units of %d sales: %d had fewer units left than counted", len(ids), int64(len(ids))-n)
	}
	return nil
}
