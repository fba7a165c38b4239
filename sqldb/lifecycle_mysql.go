package sqldb

// mysqlLifecycle is the SQL of the order lifecycle on MySQL. At READ
// COMMITTED a conditional UPDATE waits for a concurrent one on the same
// row and then re-checks its WHERE against the committed row, so of two
// racing moves one changes the row and the other changes none.
var mysqlLifecycle = lifecycleQueries{
	cancel:        `UPDATE orders SET status = 'cancelled', cancelled_at = ? WHERE id = ? AND status = 'pending_payment'`,
	returnUnit:    `UPDATE sales SET stock_left = stock_left + 1 WHERE id = ?`,
	cancelLedger:  `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES (?, ?, 1, 'cancel', ?, FALSE)`,
	refund:        `UPDATE orders SET status = 'refunded', refunded_at = ? WHERE id = ? AND status = 'paid'`,
	refundLedger:  `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES (?, ?, 1, 'refund', ?, FALSE)`,
	refundPayment: `UPDATE payments SET outcome = 'refund_due' WHERE order_id = ? AND outcome = 'applied'`,
	payOpened:     `SELECT pay_opened FROM orders WHERE id = ?`,
	markOpened:    `UPDATE orders SET pay_opened = TRUE WHERE id = ? AND status = 'pending_payment' AND pay_opened = FALSE`,
	// No UPDATE … RETURNING: the orders are locked and read first, in id
	// order through the primary key (two sweepers given overlapping ids
	// then wait for each other instead of deadlocking; the index on
	// (status, pay_deadline) would scan, and lock for a moment, every
	// expired order). A locking read reads the latest committed version,
	// so pay_opened is as a MarkPayOpened that committed first left it,
	// and the lock keeps it so until the commit.
	lockExpired: func(n int) string {
		return `SELECT ` + orderColumns + ` FROM orders FORCE INDEX (PRIMARY)
			WHERE status = 'pending_payment' AND pay_deadline <= ? AND id IN (` + params(n) + `)
			ORDER BY id FOR UPDATE`
	},
	cancelLocked: func(n int) string {
		return `UPDATE orders SET status = 'cancelled', cancelled_at = ?
			WHERE status = 'pending_payment' AND id IN (` + params(n) + `)`
	},
	returnUnits: `UPDATE sales SET stock_left = stock_left + ? WHERE id = ?`,
	cancelLedgers: func(n int) string {
		return `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES ` +
			rows(n, "(?, ?, 1, 'cancel', ?, FALSE)")
	},
	expired: `SELECT id, sale_id, user_id, order_no, pay_deadline, pay_opened FROM orders
		WHERE status = 'pending_payment' AND pay_deadline <= ? ORDER BY pay_deadline, id LIMIT ?`,
	expiredAfter: `SELECT id, sale_id, user_id, order_no, pay_deadline, pay_opened FROM orders
		WHERE status = 'pending_payment' AND pay_deadline <= ? AND (pay_deadline > ? OR pay_deadline = ? AND id > ?)
		ORDER BY pay_deadline, id LIMIT ?`,

	orderByNo: `SELECT ` + orderColumns + ` FROM orders WHERE order_no = ?`,
	pay:       `UPDATE orders SET status = 'paid', paid_at = ? WHERE id = ? AND status = 'pending_payment'`,
	payment:   `SELECT ` + paymentColumns + ` FROM payments WHERE trade_no = ?`,
	// A plain INSERT: a duplicate trade_no is an error (ER_DUP_ENTRY),
	// which ApplyPayment takes for a replay that a concurrent call
	// recorded first.
	insertPayment: `INSERT INTO payments (order_id, sale_id, order_no, trade_no, amount_cents, trade_status,
			notify_id, app_id, outcome, paid_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	markRefunded:     `UPDATE payments SET outcome = 'refunded', refunded_at = ? WHERE trade_no = ? AND outcome = 'refund_due'`,
	paymentsToRefund: `SELECT ` + paymentColumns + ` FROM payments WHERE outcome = 'refund_due' AND id > ? ORDER BY id LIMIT ?`,

	unappliedReturns: `SELECT id, sale_id, order_id FROM stock_ledger WHERE gate_applied = FALSE AND id > ? ORDER BY id LIMIT ?`,
	markApplied: func(n int) string {
		return `UPDATE stock_ledger SET gate_applied = TRUE WHERE id IN (` + params(n) + `) AND gate_applied = FALSE`
	},
	returnedOrders: `SELECT id FROM orders WHERE sale_id = ? AND status IN ('cancelled', 'refunded') ORDER BY id`,
	lifecycleStats: `SELECT
			(SELECT COUNT(*) FROM payments WHERE sale_id = s.id AND outcome = 'refund_due'),
			(SELECT COUNT(*) FROM payments WHERE sale_id = s.id AND outcome = 'refunded'),
			(SELECT COUNT(*) FROM stock_ledger WHERE sale_id = s.id AND gate_applied = FALSE)
		FROM sales s WHERE s.id = ?`,
}
