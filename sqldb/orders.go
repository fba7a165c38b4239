package sqldb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"seckill"
)

// WriteOrders stores a batch of order requests in one transaction and
// returns one result per request, in request order, with SaleID, UserID and
// Ticket copied from it.
//
//   - A request whose (sale, user) already has an order, in the database or
//     earlier in the batch, is not inserted again and succeeds with that
//     order's ID: redelivery is a no-op.
//   - New orders are inserted pending_payment with the request's ticket as
//     order number, its price and time, and payBy as the pay deadline; each
//     sale's stock_left drops by the number inserted, and one ledger row
//     per sale (delta minus that number, reason "order") is appended.
//   - When a sale has fewer units left than new buyers, the earliest
//     requests get them and the rest fail with reason ESoldOut; a request
//     for a sale that does not exist fails with reason ENotFound.
//   - A request whose ticket FenceTicket recorded writes nothing and takes
//     no unit; it does not count as its (sale, user)'s first request, so a
//     later one of the pair with a ticket not fenced is written. It fails
//     with reason EExpired, unless the pair holds an order (written from
//     another ticket, in this batch or before): then it succeeds with that
//     order, as a redelivery does, so that the buyer who holds it is not
//     told otherwise. The records are read once the batch holds its sales
//     (checkFences), which FenceTicket holds too.
//
// An error means nothing was written.
func (db *DB) WriteOrders(ctx context.Context, reqs []seckill.OrderRequest, payBy time.Time) ([]seckill.OrderResult, error) {
	res := make([]seckill.OrderResult, len(reqs))
	for i, r := range reqs {
		res[i] = seckill.OrderResult{SaleID: r.SaleID, UserID: r.UserID, Result: seckill.Result{Ticket: r.Ticket}}
	}
	if len(reqs) == 0 {
		return res, nil
	}
	write := db.writeOrders
	if db.d.insertFirst {
		write = db.placeOrders
	}
	// The requests whose tickets an attempt found fenced. A fenced ticket
	// stays fenced (the records are committed and never deleted), so the
	// set carries over to the next attempt; it grows with every
	// errNewFences, so the attempts end. Fences are rare: nearly every
	// batch runs once, with the set empty.
	var fenced map[int]bool
	var b *orderBatch
	for {
		err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			b = newOrderBatch(reqs, fenced) // afresh for every attempt
			if err := write(ctx, tx, b, payBy); err != nil {
				return err
			}
			return db.lookupFenced(ctx, tx, b)
		})
		if errors.Is(err, errNewFences) {
			if fenced == nil {
				fenced = make(map[int]bool, len(b.newFenced))
			}
			for _, i := range b.newFenced {
				fenced[i] = true
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write %d orders: %w", len(reqs), err)
		}
		break
	}
	for i := range res {
		f := b.first[i]
		if id := b.orderID[f]; id != 0 {
			res[i].Status, res[i].OrderID = seckill.ResultSuccess, id
		} else {
			res[i].Status, res[i].Reason = seckill.ResultFailed, b.reason[f]
		}
	}
	return res, nil
}

type orderKey struct{ sale, user int64 }

// orderBatch is the working state of one attempt of a WriteOrders call.
// Requests are referred to by index; only the first request of each (sale,
// user) is written, later ones share its outcome. A request in fenced is
// no pair's first nor shares an outcome: it fails with EExpired.
type orderBatch struct {
	reqs      []seckill.OrderRequest
	fenced    map[int]bool         // requests set aside as fenced (not changed)
	newFenced []int                // requests checkFences found fenced and not in fenced
	first     []int                // index of the first request with the same (sale, user), itself if fenced
	index     map[orderKey]int     // (sale, user) → first request
	sales     []*saleBatch         // in order of first appearance
	orderID   []int64              // by first request: the order, 0 while unknown
	reason    []string             // by first request: why it failed
	bySale    map[int64]*saleBatch // sale id → its part of the batch
	maxID     int64                // the largest order id before this batch's inserts, -1 until read (dialect.seqIDs)
}

// saleBatch is the part of a batch for one sale.
type saleBatch struct {
	id       int64
	found    bool  // the sale exists (set by loadStockLeft)
	left     int64 // units left, as this transaction sees them
	todo     []int // first requests not yet tried, in request order
	conflict []int // tried, but (sale, user) had an order already
	inserted []int // first requests whose order this batch inserted
}

func newOrderBatch(reqs []seckill.OrderRequest, fenced map[int]bool) *orderBatch {
	b := &orderBatch{
		reqs:    reqs,
		fenced:  fenced,
		first:   make([]int, len(reqs)),
		index:   make(map[orderKey]int, len(reqs)),
		orderID: make([]int64, len(reqs)),
		reason:  make([]string, len(reqs)),
		bySale:  make(map[int64]*saleBatch),
		maxID:   -1,
	}
	for i, r := range reqs {
		if fenced[i] {
			b.first[i], b.reason[i] = i, seckill.EExpired
			continue
		}
		k := orderKey{r.SaleID, r.UserID}
		if f, ok := b.index[k]; ok {
			b.first[i] = f
			continue
		}
		b.index[k], b.first[i] = i, i
		s := b.bySale[r.SaleID]
		if s == nil {
			s = &saleBatch{id: r.SaleID}
			b.bySale[r.SaleID] = s
			b.sales = append(b.sales, s)
		}
		s.todo = append(s.todo, i)
	}
	return b
}

// writeOrders does the work of WriteOrders inside tx. In the common case
// (new buyers, enough stock, no fences) that is one SELECT of the stock,
// one SELECT of the fenced tickets per sale, one INSERT of the orders, and
// one UPDATE and one ledger INSERT per sale; engines without RETURNING add
// a SELECT of existing orders and one of the new ids per sale. It returns
// errNewFences, having written nothing yet, if the batch holds fenced
// tickets not set aside.
func (db *DB) writeOrders(ctx context.Context, tx *sql.Tx, b *orderBatch, payBy time.Time) error {
	// From here on this transaction is the only writer of these sales
	// (SQLite: the only writer at all): the stock it reads stays true, no
	// one else adds orders to them, and FenceTicket records no release
	// of theirs.
	if err := db.loadStockLeft(ctx, tx, b); err != nil {
		return err
	}
	if err := db.checkFences(ctx, tx, b); err != nil {
		return err
	}
	if !db.d.returning {
		// An INSERT that cannot say which rows it inserted must not meet
		// a conflict: set the existing orders aside first. They are
		// conflicts, as the loop below would have found them.
		for _, s := range b.sales {
			if len(s.todo) == 0 {
				continue
			}
			if err := db.lookupOrders(ctx, tx, b, s.id, s.todo); err != nil {
				return err
			}
			todo := s.todo[:0:0]
			for _, i := range s.todo {
				if b.orderID[i] != 0 {
					s.conflict = append(s.conflict, i)
				} else {
					todo = append(todo, i)
				}
			}
			s.todo = todo
		}
	}
	// Insert as many new orders as each sale has units. A conflict is an
	// order written before (a redelivery): it takes no unit, so its unit
	// goes to the next request in line, hence the loop.
	for {
		var try []int
		for _, s := range b.sales {
			n := min(int64(len(s.todo)), s.left)
			try = append(try, s.todo[:n]...)
		}
		if len(try) == 0 {
			break
		}
		if err := db.insertOrders(ctx, tx, b, try, payBy); err != nil {
			return err
		}
		for _, s := range b.sales {
			n := min(int64(len(s.todo)), s.left)
			for _, i := range s.todo[:n] {
				if b.orderID[i] != 0 {
					s.inserted = append(s.inserted, i)
					s.left--
				} else {
					s.conflict = append(s.conflict, i)
				}
			}
			s.todo = s.todo[n:]
		}
	}
	// Requests that conflicted, or that found no unit, may already hold
	// an order: they succeed with it; the others are sold out. (Without
	// RETURNING they were looked up before.)
	for _, s := range b.sales {
		look := slices.Concat(s.conflict, s.todo)
		if !db.d.returning {
			look = nil
		}
		if len(look) == 0 {
			for _, i := range s.todo {
				b.reason[i] = seckill.ESoldOut
			}
			continue
		}
		if err := db.lookupOrders(ctx, tx, b, s.id, look); err != nil {
			return err
		}
		for _, i := range s.conflict {
			if b.orderID[i] == 0 {
				return fmt.Errorf("sale %d user %d: insert conflicted but no order found", s.id, b.reqs[i].UserID)
			}
		}
		for _, i := range s.todo {
			if b.orderID[i] == 0 {
				b.reason[i] = seckill.ESoldOut
			}
		}
	}
	// The stock read above is still true, since the transaction holds the
	// sales' rows (or SQLite's write lock); a miss of this conditional
	// UPDATE means the invariant broke, and the whole batch rolls back.
	for _, s := range b.sales {
		n := len(s.inserted)
		if n == 0 {
			continue
		}
		r, err := db.txExec(ctx, tx, db.d.q.takeStock, n, s.id, n)
		if err != nil {
			return fmt.Errorf("take %d of sale %d: %w", n, s.id, err)
		}
		if hit, err := r.RowsAffected(); err != nil {
			return fmt.Errorf("take %d of sale %d: %w", n, s.id, err)
		} else if hit != 1 {
			return fmt.Errorf("take %d of sale %d: fewer units left than counted", n, s.id)
		}
		if _, err := db.txExec(ctx, tx, db.d.q.ledgerRow, s.id, -n, "order", db.tv(db.now())); err != nil {
			return fmt.Errorf("ledger of sale %d: %w", s.id, err)
		}
	}
	return nil
}

// loadStockLeft reads the units left of every sale in b, and locks those
// sales against other writers where the engine locks rows; the requests of
// a sale that does not exist fail with ENotFound.
func (db *DB) loadStockLeft(ctx context.Context, tx *sql.Tx, b *orderBatch) error {
	ids := make([]int64, len(b.sales))
	for i, s := range b.sales {
		ids[i] = s.id
	}
	// Every writer locks its sales in the same order, so two batches
	// sharing sales cannot deadlock on them.
	slices.Sort(ids)
	for chunk := range chunked(ids, db.hotChunks(len(ids), 1)) {
		rows, err := db.txQuery(ctx, tx, db.d.q.stockLeft(len(chunk)), db.inArgs(nil, chunk)...)
		err = eachRow(rows, err, func(row scanner) error {
			var id, left int64
			if err := row.Scan(&id, &left); err != nil {
				return err
			}
			s := b.bySale[id]
			s.left, s.found = left, true
			return nil
		})
		if err != nil {
			return fmt.Errorf("stock left: %w", err)
		}
	}
	for _, s := range b.sales {
		if !s.found {
			for _, i := range s.todo {
				b.reason[i] = seckill.ENotFound
			}
			s.todo = nil
		}
	}
	return nil
}

// insertOrders inserts the orders of requests idx, skipping those whose
// (sale, user) has one, and records the IDs of those inserted. (Without
// RETURNING there is none to skip: writeOrders set them aside.)
func (db *DB) insertOrders(ctx context.Context, tx *sql.Tx, b *orderBatch, idx []int, payBy time.Time) error {
	const cols = 6
	deadline := db.tv(payBy)
	idx = byUser(b, idx)
	for chunk := range chunked(idx, db.hotChunks(len(idx), cols)) {
		n := len(chunk)
		sales, users, tickets, prices, ats := make(col[int64], n), make(col[int64], n),
			make(col[string], n), make(col[int64], n), make([]time.Time, n)
		for j, i := range chunk {
			r := &b.reqs[i]
			sales[j], users[j], tickets[j], prices[j], ats[j] = r.SaleID, r.UserID, r.Ticket, r.PriceCents, r.At
		}
		args := db.bulkArgs(n, sales, users, tickets, prices, db.times(ats), same{deadline})
		query := db.d.q.insertOrder(n)
		if db.d.seqIDs {
			if err := db.insertOrdersSeq(ctx, tx, b, chunk, query, args); err != nil {
				return err
			}
			continue
		}
		if !db.d.returning {
			if err := db.insertOrdersNoReturning(ctx, tx, b, chunk, query, args); err != nil {
				return err
			}
			continue
		}
		rows, err := db.txQuery(ctx, tx, query, args...)
		err = eachRow(rows, err, func(row scanner) error {
			var id int64
			var k orderKey
			if err := row.Scan(&id, &k.sale, &k.user); err != nil {
				return err
			}
			b.orderID[b.index[k]] = id
			return nil
		})
		if err != nil {
			return fmt.Errorf("insert orders: %w", err)
		}
	}
	return nil
}

// byUser returns the requests idx ordered by (sale, user). A crowd's
// requests come in no order of user; inserted in the order of the (sale,
// user) and (user, id) indexes, each row lands next to the one before, on
// a page the engine holds already, instead of anywhere in both indexes.
// The rows' ids follow that order; which requests get units was decided
// before, in request order. BenchmarkWriteOrders/2000-crowd on SQLite:
// 35 → 24 µs of CPU per order.
func byUser(b *orderBatch, idx []int) []int {
	idx = slices.Clone(idx)
	slices.SortFunc(idx, func(i, j int) int {
		ri, rj := &b.reqs[i], &b.reqs[j]
		return cmp.Or(cmp.Compare(ri.SaleID, rj.SaleID), cmp.Compare(ri.UserID, rj.UserID))
	})
	return idx
}

// insertOrdersNoReturning runs query, the INSERT of the orders of requests
// chunk, and reads their IDs back, one SELECT per sale.
func (db *DB) insertOrdersNoReturning(ctx context.Context, tx *sql.Tx, b *orderBatch, chunk []int, query string, args []any) error {
	r, err := db.txExec(ctx, tx, query, args...)
	if err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return fmt.Errorf("insert orders: %w", err)
	} else if n != int64(len(chunk)) {
		return fmt.Errorf("insert orders: %d of %d rows inserted", n, len(chunk))
	}
	bySale := map[int64][]int{}
	var sales []int64
	for _, i := range chunk {
		s := b.reqs[i].SaleID
		if bySale[s] == nil {
			sales = append(sales, s)
		}
		bySale[s] = append(bySale[s], i)
	}
	for _, s := range sales {
		if err := db.lookupOrders(ctx, tx, b, s, bySale[s]); err != nil {
			return err
		}
		for _, i := range bySale[s] {
			if b.orderID[i] == 0 {
				return fmt.Errorf("insert orders: sale %d user %d: inserted order not found", s, b.reqs[i].UserID)
			}
		}
	}
	return nil
}

// lookupOrders records the IDs of the existing orders of requests idx, all
// for sale.
func (db *DB) lookupOrders(ctx context.Context, tx *sql.Tx, b *orderBatch, sale int64, idx []int) error {
	users := make([]int64, len(idx))
	for j, i := range idx {
		users[j] = b.reqs[i].UserID
	}
	err := db.ordersOf(ctx, tx, sale, users, func(user, id int64) {
		b.orderID[b.index[orderKey{sale, user}]] = id
	})
	if err != nil {
		return fmt.Errorf("existing orders of sale %d: %w", sale, err)
	}
	return nil
}

// ordersOf calls found with each of users that holds an order of sale, and
// that order's id, in as many queries as the engine's parameters need.
func (db *DB) ordersOf(ctx context.Context, tx *sql.Tx, sale int64, users []int64, found func(user, id int64)) error {
	for chunk := range chunked(users, db.chunks(len(users), 1)) {
		rows, err := tx.QueryContext(ctx, db.d.q.orderIDs(len(chunk)), db.inArgs([]any{sale}, chunk)...)
		err = eachRow(rows, err, func(row scanner) error {
			var id, user int64
			if err := row.Scan(&id, &user); err != nil {
				return err
			}
			found(user, id)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Order returns the order or ENotFound.
func (db *DB) Order(ctx context.Context, id int64) (*seckill.Order, error) {
	return reread(ctx, db, func(ctx context.Context) (*seckill.Order, error) {
		return queryOne(db.read.QueryRowContext(ctx, db.d.q.order, id), scanOrder, "order %d", id)
	})
}

// OrderBySaleUser returns the user's order in the sale or ENotFound.
func (db *DB) OrderBySaleUser(ctx context.Context, saleID, userID int64) (*seckill.Order, error) {
	return reread(ctx, db, func(ctx context.Context) (*seckill.Order, error) {
		return queryOne(db.read.QueryRowContext(ctx, db.d.q.orderBySU, saleID, userID), scanOrder,
			"order of user %d in sale %d", userID, saleID)
	})
}

// OrdersByUser returns the user's orders, newest first; none is not an
// error.
func (db *DB) OrdersByUser(ctx context.Context, userID int64) ([]*seckill.Order, error) {
	return reread(ctx, db, func(ctx context.Context) ([]*seckill.Order, error) {
		rows, err := db.read.QueryContext(ctx, db.d.q.ordersBy, userID)
		os, err := queryAll(rows, err, scanOrder)
		if err != nil {
			return nil, fmt.Errorf("orders of user %d: %w", userID, err)
		}
		return os, nil
	})
}

// SaleBuyers returns the users holding an order of any status in the sale,
// by user id; none (or no such sale) is not an error.
func (db *DB) SaleBuyers(ctx context.Context, saleID int64) ([]int64, error) {
	return reread(ctx, db, func(ctx context.Context) ([]int64, error) {
		rows, err := db.read.QueryContext(ctx, db.d.q.saleBuyers, saleID)
		ids, err := queryAll(rows, err, scanInt64)
		if err != nil {
			return nil, fmt.Errorf("buyers of sale %d: %w", saleID, err)
		}
		return ids, nil
	})
}

// SaleSnapshot returns the sale's stock_left and its buyers (by user id),
// read in one read-only transaction that sees one snapshot (see
// dialect.snapshot): a batch of orders committed meanwhile shows in both
// numbers or in neither. ENotFound if there is no such sale.
func (db *DB) SaleSnapshot(ctx context.Context, saleID int64) (stockLeft int64, buyers []int64, err error) {
	type snapshot struct {
		left   int64
		buyers []int64
	}
	snap, err := reread(ctx, db, func(ctx context.Context) (snapshot, error) {
		left, buyers, err := db.saleSnapshot(ctx, saleID)
		return snapshot{left, buyers}, err
	})
	return snap.left, snap.buyers, err
}

func (db *DB) saleSnapshot(ctx context.Context, saleID int64) (stockLeft int64, buyers []int64, err error) {
	tx, err := db.read.BeginTx(ctx, db.d.snapshot)
	if err != nil {
		return 0, nil, fmt.Errorf("snapshot of sale %d: begin: %w", saleID, err)
	}
	// Nothing to commit: the transaction only read.
	defer tx.Rollback()
	stockLeft, err = queryOne(tx.QueryRowContext(ctx, db.d.q.saleLeft, saleID), scanInt64, "sale %d", saleID)
	if err != nil {
		return 0, nil, err
	}
	rows, err := tx.QueryContext(ctx, db.d.q.saleBuyers, saleID)
	if buyers, err = queryAll(rows, err, scanInt64); err != nil {
		return 0, nil, fmt.Errorf("snapshot of sale %d: buyers: %w", saleID, err)
	}
	return stockLeft, buyers, nil
}
