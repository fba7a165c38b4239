package sqldb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"seckill"
)

var _ seckill.OrderLifecycle = (*DB)(nil)

// lifecycleQueries is the SQL of the order lifecycle on one engine
// (lifecycle_sqlite.go, lifecycle_postgres.go, lifecycle_mysql.go).
type lifecycleQueries struct {
	cancel       string // cancelled_at, id: one conditional UPDATE, pending_payment → cancelled
	returnUnit   string // sale id: stock_left + 1
	cancelLedger string // sale_id, order_id, created_at: a +1 'cancel' row not applied to the gate
	expired      string // now, limit → id, sale_id, user_id, order_no, pay_deadline, pay_opened
	expiredAfter string // now, (after's deadline, its deadline again but $2 on PostgreSQL), after's id, limit → as expired
	payOpened    string // id → pay_opened, read after the cancel's UPDATE

	// CancelExpired's: with UPDATE … RETURNING, cancelExpired moves and
	// returns the orders in one statement; without (MySQL), lockExpired
	// locks and reads them, then cancelLocked moves them.
	cancelExpired func(n int) string // cancelled_at, now, n ids → orderColumns of the orders it moved; nil without RETURNING
	lockExpired   func(n int) string // now, n ids → orderColumns of those pending and expired, locked in id order
	cancelLocked  func(n int) string // cancelled_at, n ids: pending_payment → cancelled
	returnUnits   string             // n, sale id: stock_left + n
	cancelLedgers func(n int) string // n rows of sale_id, order_id, created_at: +1 'cancel' rows not applied to the gate

	markOpened string // id: one conditional UPDATE, pay_opened while pending_payment

	refund        string // refunded_at, id: one conditional UPDATE, paid → refunded
	refundLedger  string // sale_id, order_id, created_at: a +1 'refund' row not applied to the gate
	refundPayment string // order id: its payment applied → refund_due

	orderByNo     string
	pay           string // paid_at, id: one conditional UPDATE, pending_payment → paid
	payment       string // trade_no → paymentColumns
	insertPayment string // order_id, sale_id, order_no, trade_no, amount_cents, trade_status, notify_id, app_id, outcome, paid_at, created_at → id; no row (or a duplicate-key error without RETURNING) if the trade_no is recorded

	markRefunded     string // refunded_at, trade_no: refund_due → refunded
	paymentsToRefund string // afterID, limit

	unappliedReturns string             // afterID, limit → id, sale_id, order_id
	markApplied      func(n int) string // n ledger ids (one array where the engine binds arrays)
	returnedOrders   string             // sale id → ids of its cancelled and refunded orders
	lifecycleStats   string             // sale id → refunds due, refunded, unapplied returns
}

// lifecycleSQL maps each engine to its lifecycle SQL.
var lifecycleSQL = map[*dialect]*lifecycleQueries{
	&sqlite:   &sqliteLifecycle,
	&postgres: &postgresLifecycle,
	&mysql:    &mysqlLifecycle,
}

// lq returns the engine's lifecycle SQL.
func (db *DB) lq() *lifecycleQueries { return lifecycleSQL[db.d] }

// paymentColumns are the columns scanPayment reads, in its order.
const paymentColumns = `id, order_id, sale_id, order_no, trade_no, amount_cents, trade_status,
	notify_id, app_id, outcome, paid_at, created_at, refunded_at`

func scanPayment(s scanner) (*seckill.Payment, error) {
	var p seckill.Payment
	var paid, created, refunded dbTime
	if err := s.Scan(&p.ID, &p.OrderID, &p.SaleID, &p.OrderNo, &p.TradeNo, &p.AmountCents, &p.TradeStatus,
		&p.NotifyID, &p.AppID, &p.Outcome, &paid, &created, &refunded); err != nil {
		return nil, err
	}
	p.PaidAt, p.CreatedAt, p.RefundedAt = paid.t, created.t, refunded.ptr()
	return &p, nil
}

// CancelOrder moves the order pending_payment → cancelled and gives its unit
// back to SQL stock with a 'cancel' ledger row the gate has not applied, in
// one transaction; see seckill.OrderLifecycle for the contract.
//
// The owner and the deadline are checked on the row read first: they never
// change, so only the status can race, and the UPDATE's condition on it
// decides the race.
func (db *DB) CancelOrder(ctx context.Context, orderID, userID int64, now time.Time, onlyIfExpired bool) (*seckill.Order, error) {
	var o *seckill.Order
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		o, err = scanOrder(db.txRow(ctx, tx, db.d.q.order, orderID))
		if errors.Is(err, sql.ErrNoRows) || err == nil && userID != 0 && o.UserID != userID {
			return seckill.Errorf(seckill.ENotFound, "no order %d", orderID)
		}
		if err != nil {
			return err
		}
		if o.Status != seckill.OrderPending {
			return seckill.Errorf(seckill.ENotCancellable, "order %d is %s", orderID, o.Status)
		}
		if onlyIfExpired && o.PayDeadline.After(now) {
			return seckill.Errorf(seckill.ENotCancellable, "order %d is not past its deadline", orderID)
		}
		q := db.lq()
		if err := db.giveBack(ctx, tx, o, now, q.cancel, q.cancelLedger); err != nil {
			return err
		}
		// The mark is read again under the row lock the UPDATE took: a
		// MarkPayOpened that committed since the read above (the UPDATE
		// waited for it) set it, and its trade must be closed.
		if err := db.txRow(ctx, tx, q.payOpened, orderID).Scan(&o.PayOpened); err != nil {
			return fmt.Errorf("pay_opened: %w", err)
		}
		at := stamp(now)
		o.Status, o.CancelledAt = seckill.OrderCancelled, &at
		return nil
	})
	if err != nil {
		if seckill.ErrorCode(err) != seckill.EInternal {
			return nil, err
		}
		return nil, fmt.Errorf("cancel order %d: %w", orderID, err)
	}
	return o, nil
}

// cancelExpiredTx is the most orders one CancelExpired transaction
// cancels: a sweep page's. It bounds how long the transaction holds the
// orders' and sales' rows (and, on SQLite, the one writer).
const cancelExpiredTx = 500

// CancelExpired cancels, of the orders ids names, those pending and past
// their deadline, in one transaction per cancelExpiredTx of them; see
// seckill.OrderLifecycle for the contract.
//
// A transaction moves its orders with one conditional UPDATE per chunk of
// ids (statement sizes as the other bulk statements), then gives each
// sale its units with one UPDATE, sales in id order, and appends one
// ledger row per order cancelled, in id order. Orders are locked before
// sales, as CancelOrder and RefundOrder lock them; the order writer locks
// no existing order.
func (db *DB) CancelExpired(ctx context.Context, ids []int64, now time.Time) ([]*seckill.Order, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var out []*seckill.Order
	for part := range slices.Chunk(ids, cancelExpiredTx) {
		var got []*seckill.Order
		err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			got, err = db.cancelExpired(ctx, tx, part, now)
			return err
		})
		if err != nil {
			return out, fmt.Errorf("cancel %d expired orders: %w", len(part), err)
		}
		out = append(out, got...)
	}
	return out, nil
}

// cancelExpired is one transaction of CancelExpired: ids are sorted and
// distinct. It returns the orders it cancelled, in id order.
func (db *DB) cancelExpired(ctx context.Context, tx *sql.Tx, ids []int64, now time.Time) ([]*seckill.Order, error) {
	q := db.lq()
	var got []*seckill.Order
	for chunk := range chunked(ids, db.hotChunks(len(ids), 1)) {
		var (
			os  []*seckill.Order
			err error
		)
		if q.cancelExpired != nil {
			rows, qerr := db.txQuery(ctx, tx, q.cancelExpired(len(chunk)), db.inArgs([]any{db.tv(now), db.tv(now)}, chunk)...)
			os, err = queryAll(rows, qerr, scanOrder)
			if err != nil {
				return nil, fmt.Errorf("cancel: %w", err)
			}
		} else {
			rows, qerr := db.txQuery(ctx, tx, q.lockExpired(len(chunk)), db.inArgs([]any{db.tv(now)}, chunk)...)
			os, err = queryAll(rows, qerr, scanOrder)
			if err != nil {
				return nil, fmt.Errorf("lock: %w", err)
			}
			if len(os) > 0 {
				locked := make([]int64, len(os))
				for i, o := range os {
					locked[i] = o.ID
				}
				r, err := db.txExec(ctx, tx, q.cancelLocked(len(locked)), db.inArgs([]any{db.tv(now)}, locked)...)
				if err != nil {
					return nil, fmt.Errorf("cancel: %w", err)
				}
				// The rows are locked and were read pending: a miss means
				// the invariant broke, and the transaction rolls back.
				if n, err := r.RowsAffected(); err != nil {
					return nil, fmt.Errorf("cancel: %w", err)
				} else if n != int64(len(locked)) {
					return nil, fmt.Errorf("cancel: %d of %d locked pending orders moved", n, len(locked))
				}
			}
			at := stamp(now)
			for _, o := range os {
				o.Status, o.CancelledAt = seckill.OrderCancelled, &at
			}
		}
		got = append(got, os...)
	}
	if len(got) == 0 {
		return nil, nil
	}
	// RETURNING lists the rows in no promised order.
	slices.SortFunc(got, func(a, b *seckill.Order) int { return cmp.Compare(a.ID, b.ID) })
	for _, o := range got {
		// Each its own: a caller may keep one and not the rest.
		at := *o.CancelledAt
		o.CancelledAt = &at
	}
	units := map[int64]int64{}
	for _, o := range got {
		units[o.SaleID]++
	}
	for _, sale := range slices.Sorted(maps.Keys(units)) {
		if _, err := db.txExec(ctx, tx, q.returnUnits, units[sale], sale); err != nil {
			return nil, fmt.Errorf("return %d units to sale %d: %w", units[sale], sale, err)
		}
	}
	sales, orders := make(col[int64], len(got)), make(col[int64], len(got))
	for i, o := range got {
		sales[i], orders[i] = o.SaleID, o.ID
	}
	at := same{db.tv(now)}
	done := 0
	for _, n := range db.hotChunks(len(got), 3) {
		args := db.bulkArgs(n, sales[done:done+n], orders[done:done+n], at)
		if _, err := db.txExec(ctx, tx, q.cancelLedgers(n), args...); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		done += n
	}
	return got, nil
}

// MarkPayOpened marks the pending order's payment opened; see
// seckill.OrderLifecycle for the contract. The UPDATE's condition on the
// status decides a race with CancelOrder: the row lock makes one wait for
// the other, which then re-checks its WHERE against the committed row.
func (db *DB) MarkPayOpened(ctx context.Context, orderID int64) error {
	r, err := db.writeExec(ctx, db.lq().markOpened, orderID)
	if err != nil {
		return fmt.Errorf("mark order %d's payment opened: %w", orderID, err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return fmt.Errorf("mark order %d's payment opened: %w", orderID, err)
	} else if n == 1 {
		return nil
	}
	// Nothing moved: marked already, or not pending. Both are for good (a
	// status never returns to pending, a mark is never taken back), so a
	// read after the UPDATE tells which.
	o, err := reread(ctx, db, func(ctx context.Context) (*seckill.Order, error) {
		return scanOrder(db.write.QueryRowContext(ctx, db.d.q.order, orderID))
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return seckill.Errorf(seckill.ENotFound, "no order %d", orderID)
	case err != nil:
		return fmt.Errorf("mark order %d's payment opened: %w", orderID, err)
	case o.Status != seckill.OrderPending:
		return seckill.Errorf(seckill.ENotPayable, "order %d is %s", orderID, o.Status)
	case !o.PayOpened:
		return fmt.Errorf("mark order %d's payment opened: the pending order was not marked", orderID)
	}
	return nil
}

// RefundOrder moves the paid order to refunded, gives its unit back to SQL
// stock with a 'refund' ledger row the gate has not applied, and makes the
// payment that paid it refund_due, in one transaction; see
// seckill.OrderLifecycle for the contract.
func (db *DB) RefundOrder(ctx context.Context, orderID int64, now time.Time) (*seckill.Order, error) {
	var o *seckill.Order
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		o, err = scanOrder(tx.QueryRowContext(ctx, db.d.q.order, orderID))
		if errors.Is(err, sql.ErrNoRows) {
			return seckill.Errorf(seckill.ENotFound, "no order %d", orderID)
		}
		if err != nil {
			return err
		}
		if o.Status != seckill.OrderPaid {
			return seckill.Errorf(seckill.ENotCancellable, "order %d is %s, not paid", orderID, o.Status)
		}
		q := db.lq()
		if err := db.giveBack(ctx, tx, o, now, q.refund, q.refundLedger); err != nil {
			return err
		}
		// The payment's row is locked after the order's, as ApplyPayment
		// locks them (order UPDATE, then the payment INSERT): no deadlock.
		// A paid order has exactly one applied payment (ApplyPayment's
		// move to paid records it in the same transaction).
		if _, err := db.txExec(ctx, tx, q.refundPayment, orderID); err != nil {
			return fmt.Errorf("payment of order %d: %w", orderID, err)
		}
		at := stamp(now)
		o.Status, o.RefundedAt = seckill.OrderRefunded, &at
		return nil
	})
	if err != nil {
		if seckill.ErrorCode(err) != seckill.EInternal {
			return nil, err
		}
		return nil, fmt.Errorf("refund order %d: %w", orderID, err)
	}
	return o, nil
}

// giveBack moves o in tx with update (at, id: one conditional UPDATE on
// the status o was read in), adds its unit back to the sale's stock_left
// and appends ledger (sale_id, order_id, created_at), a +1 row the gate
// has not applied. ENotCancellable if the UPDATE moved nothing: a racing
// call moved the order since it was read.
func (db *DB) giveBack(ctx context.Context, tx *sql.Tx, o *seckill.Order, now time.Time, update, ledger string) error {
	r, err := db.txExec(ctx, tx, update, db.tv(now), o.ID)
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return seckill.Errorf(seckill.ENotCancellable, "order %d is no longer %s", o.ID, o.Status)
	}
	if _, err := db.txExec(ctx, tx, db.lq().returnUnit, o.SaleID); err != nil {
		return fmt.Errorf("return unit to sale %d: %w", o.SaleID, err)
	}
	if _, err := db.txExec(ctx, tx, ledger, o.SaleID, o.ID, db.tv(now)); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// ExpiredOrders returns up to limit pending orders past their deadline,
// earliest deadline first, after the order after (none: from the first),
// through the (status, pay_deadline, id) index.
func (db *DB) ExpiredOrders(ctx context.Context, now time.Time, after seckill.OrderRef, limit int) ([]seckill.OrderRef, error) {
	return reread(ctx, db, func(ctx context.Context) ([]seckill.OrderRef, error) {
		var rows *sql.Rows
		var err error
		switch {
		case after.ID == 0:
			rows, err = db.read.QueryContext(ctx, db.lq().expired, db.tv(now), limit)
		case db.d.name == "postgres":
			rows, err = db.read.QueryContext(ctx, db.lq().expiredAfter, db.tv(now), db.tv(after.PayDeadline), after.ID, limit)
		default:
			rows, err = db.read.QueryContext(ctx, db.lq().expiredAfter, db.tv(now), db.tv(after.PayDeadline), db.tv(after.PayDeadline), after.ID, limit)
		}
		if err != nil {
			return nil, fmt.Errorf("expired orders: %w", err)
		}
		defer rows.Close()
		var refs []seckill.OrderRef
		for rows.Next() {
			var r seckill.OrderRef
			var deadline dbTime
			if err := rows.Scan(&r.ID, &r.SaleID, &r.UserID, &r.OrderNo, &deadline, &r.PayOpened); err != nil {
				return nil, fmt.Errorf("expired orders: %w", err)
			}
			r.PayDeadline = deadline.t
			refs = append(refs, r)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("expired orders: %w", err)
		}
		return refs, nil
	})
}

// ApplyPayment records p once per trade number and moves its order to
// paid, or records it refund_due when the order cannot take it; see
// seckill.OrderLifecycle for the contract.
//
// The order's UPDATE runs before the payment's INSERT: two calls with the
// same trade race on the order row, and the loser, finding the trade
// recorded by the winner, rolls back and answers as a replay.
func (db *DB) ApplyPayment(ctx context.Context, p seckill.Payment) (*seckill.Payment, *seckill.Order, error) {
	if p.TradeNo == "" {
		return nil, nil, seckill.Errorf(seckill.EInvalid, "payment without a trade number")
	}
	var (
		rec    *seckill.Payment
		o      *seckill.Order
		replay bool
	)
	q := db.lq()
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		replay = false
		var err error
		rec, err = scanPayment(db.txRow(ctx, tx, q.payment, p.TradeNo))
		switch {
		case err == nil:
			replay = true
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("payment: %w", err)
		}
		o, err = scanOrder(db.txRow(ctx, tx, q.orderByNo, p.OrderNo))
		if errors.Is(err, sql.ErrNoRows) {
			return seckill.Errorf(seckill.ENotFound, "no order %q", p.OrderNo)
		}
		if err != nil {
			return fmt.Errorf("order: %w", err)
		}
		if p.AmountCents != o.PriceCents {
			return seckill.Errorf(seckill.EAmountMismatch, "paid %d cents for an order of %d", p.AmountCents, o.PriceCents)
		}
		r, err := db.txExec(ctx, tx, q.pay, db.tv(p.PaidAt), o.ID)
		if err != nil {
			return fmt.Errorf("pay: %w", err)
		}
		outcome := seckill.PaymentRefundDue
		if n, err := r.RowsAffected(); err != nil {
			return fmt.Errorf("pay: %w", err)
		} else if n == 1 {
			outcome = seckill.PaymentApplied
		}
		created := stamp(db.now())
		id, err := db.insertID(ctx, tx, q.insertPayment, o.ID, o.SaleID, p.OrderNo, p.TradeNo, p.AmountCents,
			p.TradeStatus, p.NotifyID, p.AppID, string(outcome), db.tv(p.PaidAt), db.tv(created))
		if err != nil {
			// errConflict: a concurrent call recorded the trade first;
			// rolling back undoes the UPDATE (which then moved nothing).
			return fmt.Errorf("record payment: %w", err)
		}
		rec = &p
		rec.ID, rec.OrderID, rec.SaleID, rec.Outcome, rec.CreatedAt = id, o.ID, o.SaleID, outcome, created
		rec.PaidAt, rec.RefundedAt = stamp(p.PaidAt), nil
		o, err = scanOrder(db.txRow(ctx, tx, db.d.q.order, o.ID))
		if err != nil {
			return fmt.Errorf("order: %w", err)
		}
		return nil
	})
	if errors.Is(err, errConflict) {
		rec, err = reread(ctx, db, func(ctx context.Context) (*seckill.Payment, error) {
			return scanPayment(db.write.QueryRowContext(ctx, q.payment, p.TradeNo))
		})
		if err != nil {
			return nil, nil, fmt.Errorf("apply payment %q: replay: %w", p.TradeNo, err)
		}
		replay = true
	}
	if err != nil {
		if seckill.ErrorCode(err) != seckill.EInternal {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("apply payment %q: %w", p.TradeNo, err)
	}
	if replay {
		if rec.OrderNo != p.OrderNo || rec.AmountCents != p.AmountCents {
			return nil, nil, seckill.Errorf(seckill.EInvalid, "trade %q is recorded for order %q, %d cents",
				p.TradeNo, rec.OrderNo, rec.AmountCents)
		}
		o, err = db.Order(ctx, rec.OrderID)
		if err != nil {
			return nil, nil, fmt.Errorf("apply payment %q: replay: %w", p.TradeNo, err)
		}
	}
	return rec, o, nil
}

// MarkRefunded moves the payment refund_due → refunded; see
// seckill.OrderLifecycle for the contract.
func (db *DB) MarkRefunded(ctx context.Context, tradeNo string, now time.Time) error {
	q := db.lq()
	r, err := db.writeExec(ctx, q.markRefunded, db.tv(now), tradeNo)
	if err != nil {
		return fmt.Errorf("mark %q refunded: %w", tradeNo, err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return fmt.Errorf("mark %q refunded: %w", tradeNo, err)
	} else if n == 1 {
		return nil
	}
	// Nothing moved: say why. The outcome read is only for the error.
	p, err := reread(ctx, db, func(ctx context.Context) (*seckill.Payment, error) {
		return scanPayment(db.write.QueryRowContext(ctx, q.payment, tradeNo))
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return seckill.Errorf(seckill.ENotFound, "no payment %q", tradeNo)
	case err != nil:
		return fmt.Errorf("mark %q refunded: %w", tradeNo, err)
	case p.Outcome == seckill.PaymentRefunded:
		return nil
	}
	return seckill.Errorf(seckill.EInvalid, "payment %q is %s, not refund_due", tradeNo, p.Outcome)
}

// PaymentsToRefund returns up to limit refund_due payments with ids above
// afterID, in id order, through the (outcome, id) index.
func (db *DB) PaymentsToRefund(ctx context.Context, afterID int64, limit int) ([]seckill.Payment, error) {
	return reread(ctx, db, func(ctx context.Context) ([]seckill.Payment, error) {
		rows, err := db.read.QueryContext(ctx, db.lq().paymentsToRefund, afterID, limit)
		if err != nil {
			return nil, fmt.Errorf("payments to refund: %w", err)
		}
		defer rows.Close()
		var ps []seckill.Payment
		for rows.Next() {
			p, err := scanPayment(rows)
			if err != nil {
				return nil, fmt.Errorf("payments to refund: %w", err)
			}
			ps = append(ps, *p)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("payments to refund: %w", err)
		}
		return ps, nil
	})
}

// UnappliedReturns returns up to limit 'cancel' and 'refund' ledger rows not yet
// applied to the gate with ids above afterID, oldest first, through the
// (gate_applied, id) index.
func (db *DB) UnappliedReturns(ctx context.Context, afterID int64, limit int) ([]seckill.StockReturn, error) {
	return reread(ctx, db, func(ctx context.Context) ([]seckill.StockReturn, error) {
		rows, err := db.read.QueryContext(ctx, db.lq().unappliedReturns, afterID, limit)
		if err != nil {
			return nil, fmt.Errorf("unapplied returns: %w", err)
		}
		defer rows.Close()
		var rs []seckill.StockReturn
		for rows.Next() {
			var r seckill.StockReturn
			if err := rows.Scan(&r.LedgerID, &r.SaleID, &r.OrderID); err != nil {
				return nil, fmt.Errorf("unapplied returns: %w", err)
			}
			rs = append(rs, r)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("unapplied returns: %w", err)
		}
		return rs, nil
	})
}

// MarkReturnsApplied marks the ledger rows applied to the gate, in one
// transaction.
func (db *DB) MarkReturnsApplied(ctx context.Context, ledgerIDs []int64) error {
	if len(ledgerIDs) == 0 {
		return nil
	}
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for chunk := range chunked(ledgerIDs, db.chunks(len(ledgerIDs), 1)) {
			if _, err := db.txExec(ctx, tx, db.lq().markApplied(len(chunk)), db.inArgs(nil, chunk)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %d returns applied: %w", len(ledgerIDs), err)
	}
	return nil
}

// ReturnedOrders returns the ids of the sale's cancelled and refunded
// orders, in id order.
func (db *DB) ReturnedOrders(ctx context.Context, saleID int64) ([]int64, error) {
	return reread(ctx, db, func(ctx context.Context) ([]int64, error) {
		ids, err := queryIDs(ctx, db.read, db.lq().returnedOrders, saleID)
		if err != nil {
			return nil, fmt.Errorf("returned orders of sale %d: %w", saleID, err)
		}
		return ids, nil
	})
}

// SaleSnapshotWithReturns is SaleSnapshot plus the sale's returned
// orders, read in the same read-only snapshot transaction.
func (db *DB) SaleSnapshotWithReturns(ctx context.Context, saleID int64) (stockLeft int64, buyers, returned []int64, err error) {
	type snapshot struct {
		left             int64
		buyers, returned []int64
	}
	snap, err := reread(ctx, db, func(ctx context.Context) (snapshot, error) {
		left, buyers, returned, err := db.saleSnapshotWithReturns(ctx, saleID)
		return snapshot{left, buyers, returned}, err
	})
	return snap.left, snap.buyers, snap.returned, err
}

func (db *DB) saleSnapshotWithReturns(ctx context.Context, saleID int64) (stockLeft int64, buyers, returned []int64, err error) {
	tx, err := db.read.BeginTx(ctx, db.d.snapshot)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("snapshot of sale %d: begin: %w", saleID, err)
	}
	// Nothing to commit: the transaction only read.
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, db.d.q.saleLeft, saleID).Scan(&stockLeft)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil, seckill.Errorf(seckill.ENotFound, "no sale %d", saleID)
	}
	if err != nil {
		return 0, nil, nil, fmt.Errorf("snapshot of sale %d: %w", saleID, err)
	}
	if buyers, err = queryIDs(ctx, tx, db.d.q.saleBuyers, saleID); err != nil {
		return 0, nil, nil, fmt.Errorf("snapshot of sale %d: buyers: %w", saleID, err)
	}
	if returned, err = queryIDs(ctx, tx, db.lq().returnedOrders, saleID); err != nil {
		return 0, nil, nil, fmt.Errorf("snapshot of sale %d: returned: %w", saleID, err)
	}
	return stockLeft, buyers, returned, nil
}

// LifecycleStats counts the sale's refunds due and done and its unapplied
// returns in one statement.
func (db *DB) LifecycleStats(ctx context.Context, saleID int64) (*seckill.LifecycleStats, error) {
	return reread(ctx, db, func(ctx context.Context) (*seckill.LifecycleStats, error) {
		var st seckill.LifecycleStats
		err := db.read.QueryRowContext(ctx, db.lq().lifecycleStats, saleID).Scan(
			&st.RefundsDue, &st.PaymentsRefunded, &st.ReturnsUnapplied)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, seckill.Errorf(seckill.ENotFound, "no sale %d", saleID)
		}
		if err != nil {
			return nil, fmt.Errorf("lifecycle stats of sale %d: %w", saleID, err)
		}
		return &st, nil
	})
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryIDs runs query and reads one int64 column of every row.
func queryIDs(ctx context.Context, q querier, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
