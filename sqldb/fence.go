package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The reconciler's verdicts on reservations whose request never reached
// the queue (table released_tickets). SQL is the judge between a fence
// and the order writer: FenceTicket and WriteOrders both hold the sale's
// row (stockLeft: FOR [NO KEY] UPDATE on PostgreSQL and MySQL; SQLite's
// write transaction is the only one) before they read what the other
// wrote, so for a ticket exactly one of them commits its side.

// FenceTicket decides that ticket (userID's request in saleID) never
// becomes an order, unless the pair holds an order already, in one write
// transaction:
//
//  1. hold the sale against order writers (stockLeft(1)); no such sale:
//     true, nothing recorded (WriteOrders refuses its requests anyway);
//  2. the ticket was recorded before: true;
//  3. the (sale, user) holds an order of any status: false, nothing
//     recorded;
//  4. record it: true.
//
// A batch of WriteOrders that held the sale first committed before step
// 1 returned, and steps 2 and 3 (each a statement of its own, at READ
// COMMITTED a new snapshot) see its orders; one that comes later reads the
// record once it holds the sale, and refuses the ticket. An error leaves
// the verdict unknown; asking again gives it.
func (db *DB) FenceTicket(ctx context.Context, saleID, userID int64, ticket string) (bool, error) {
	var fenced bool
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var id, left int64
		err := db.txRow(ctx, tx, db.d.q.stockLeft(1), db.inArgs(nil, []int64{saleID})...).Scan(&id, &left)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			fenced = true
			return nil
		case err != nil:
			return fmt.Errorf("hold the sale: %w", err)
		}
		var one int
		switch err := tx.QueryRowContext(ctx, db.d.q.ticketFenced, ticket).Scan(&one); {
		case err == nil:
			fenced = true
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("recorded before: %w", err)
		}
		var orderID, user int64
		switch err := tx.QueryRowContext(ctx, db.d.q.orderIDs(1), db.inArgs([]any{saleID}, []int64{userID})...).Scan(&orderID, &user); {
		case err == nil:
			fenced = false
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("order of the user: %w", err)
		}
		if _, err := tx.ExecContext(ctx, db.d.q.fenceTicket, ticket, saleID, userID, db.tv(db.now())); err != nil {
			return fmt.Errorf("record: %w", err)
		}
		fenced = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("fence ticket of sale %d user %d: %w", saleID, userID, err)
	}
	return fenced, nil
}

// FencedTickets returns the tickets of saleID that FenceTicket recorded.
func (db *DB) FencedTickets(ctx context.Context, saleID int64) (map[string]bool, error) {
	return reread(ctx, db, func(ctx context.Context) (map[string]bool, error) {
		rows, err := db.read.QueryContext(ctx, db.d.q.fencedTickets, saleID)
		tickets, err := queryAll(rows, err, func(row scanner) (string, error) {
			var t string
			return t, row.Scan(&t)
		})
		if err != nil {
			return nil, fmt.Errorf("fenced tickets of sale %d: %w", saleID, err)
		}
		fenced := make(map[string]bool, len(tickets))
		for _, t := range tickets {
			fenced[t] = true
		}
		return fenced, nil
	})
}

// errNewFences is what checkFences returns when the batch holds requests
// whose tickets are fenced and were not set aside: the transaction rolls
// back (on PostgreSQL their orders may be inserted already) and WriteOrders
// runs it again without them.
var errNewFences = errors.New("the batch holds fenced tickets")

// checkFences reads the fenced tickets of the batch's sales, which
// loadStockLeft holds, so none can be added before the commit. Requests
// whose tickets are among them and that newOrderBatch did not set aside
// go into b.newFenced, and checkFences returns errNewFences. Without
// fences, the common case, that is one indexed lookup per sale that
// finds nothing.
func (db *DB) checkFences(ctx context.Context, tx *sql.Tx, b *orderBatch) error {
	for _, s := range b.sales {
		if !s.found {
			continue // its requests fail ENotFound; FenceTicket records nothing for it
		}
		rows, err := db.txQuery(ctx, tx, db.d.q.fencedTickets, s.id)
		var fenced map[string]bool
		err = eachRow(rows, err, func(row scanner) error {
			var t string
			if err := row.Scan(&t); err != nil {
				return err
			}
			if fenced == nil {
				fenced = map[string]bool{}
			}
			fenced[t] = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("fenced tickets of sale %d: %w", s.id, err)
		}
		if fenced == nil {
			continue
		}
		for i, r := range b.reqs {
			if r.SaleID == s.id && fenced[r.Ticket] && !b.fenced[i] {
				b.newFenced = append(b.newFenced, i)
			}
		}
	}
	if len(b.newFenced) > 0 {
		return errNewFences
	}
	return nil
}

// lookupFenced gives each request set aside as fenced the order its (sale,
// user) holds, if any (written from another ticket, earlier or in this
// batch, which the transaction sees): the buyer holds an order, and the
// result of their late, fenced request must say so rather than fail. Rare:
// only batches with fenced requests query anything.
func (db *DB) lookupFenced(ctx context.Context, tx *sql.Tx, b *orderBatch) error {
	bySale := map[int64][]int{}
	for i := range b.fenced {
		bySale[b.reqs[i].SaleID] = append(bySale[b.reqs[i].SaleID], i)
	}
	for sale, idx := range bySale {
		users := make([]int64, len(idx))
		for j, i := range idx {
			users[j] = b.reqs[i].UserID
		}
		orders := make(map[int64]int64, len(idx)) // user → order
		if err := db.ordersOf(ctx, tx, sale, users, func(user, id int64) { orders[user] = id }); err != nil {
			return fmt.Errorf("orders of fenced requests of sale %d: %w", sale, err)
		}
		for _, i := range idx {
			b.orderID[i] = orders[b.reqs[i].UserID]
		}
	}
	return nil
}
