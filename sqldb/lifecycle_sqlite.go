package sqldb

// sqliteLifecycle is the SQL of the order lifecycle on SQLite. The write
// transaction holds the database's only write lock from BEGIN, so the
// conditional UPDATEs never race inside the engine; they are written as
// on the other engines all the same.
var sqliteLifecycle = lifecycleQueries{
	cancel:        `UPDATE orders SET status = 'cancelled', cancelled_at = ? WHERE id = ? AND status = 'pending_payment'`,
	returnUnit:    `UPDATE sales SET stock_left = stock_left + 1 WHERE id = ?`,
	cancelLedger:  `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES (?, ?, 1, 'cancel', ?, 0)`,
	refund:        `UPDATE orders SET status = 'refunded', refunded_at = ? WHERE id = ? AND status = 'paid'`,
	refundLedger:  `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES (?, ?, 1, 'refund', ?, 0)`,
	refundPayment: `UPDATE payments SET outcome = 'refund_due' WHERE order_id = ? AND outcome = 'applied'`,
	payOpened:     `SELECT pay_opened FROM orders WHERE id = ?`,
	markOpened:    `UPDATE orders SET pay_opened = 1 WHERE id = ? AND status = 'pending_payment' AND pay_opened = 0`,
	// One writer at a time: nothing moves the orders between the
	// UPDATE's read of a row and its write, and RETURNING gives the row
	// as written. The unary + keeps the planner on the primary key: on
	// the (status, pay_deadline) index it would walk every expired
	// order for each page (measured: 27k → 36k cancels/s).
	cancelExpired: func(n int) string {
		return `UPDATE orders SET status = 'cancelled', cancelled_at = ?
			WHERE +status = 'pending_payment' AND +pay_deadline <= ? AND id IN (` + params(n) + `)
			RETURNING ` + orderColumns
	},
	returnUnits: `UPDATE sales SET stock_left = stock_left + ? WHERE id = ?`,
	cancelLedgers: func(n int) string {
		return `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES ` +
			rows(n, "(?, ?, 1, 'cancel', ?, 0)")
	},
	expired: `SELECT id, sale_id, user_id, order_no, pay_deadline, pay_opened FROM orders
		WHERE status = 'pending_payment' AND pay_deadline <= ? ORDER BY pay_deadline, id LIMIT ?`,
	expiredAfter: `SELECT id, sale_id, user_id, order_no, pay_deadline, pay_opened FROM orders
		WHERE status = 'pending_payment' AND pay_deadline <= ? AND (pay_deadline > ? OR pay_deadline = ? AND id > ?)
		ORDER BY pay_deadline, id LIMIT ?`,

	orderByNo: `SELECT ` + orderColumns + ` FROM orders WHERE order_no = ?`,
	pay:       `UPDATE orders SET status = 'paid', paid_at = ? WHERE id = ? AND status = 'pending_payment'`,
	payment:   `SELECT ` + paymentColumns + ` FROM payments WHERE trade_no = ?`,
	insertPayment: `INSERT INTO payments (order_id, sale_id, order_no, trade_no, amount_cents, trade_status,
			notify_id, app_id, outcome, paid_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (trade_no) DO NOTHING RETURNING id`,
	markRefunded:     `UPDATE payments SET outcome = 'refunded', refunded_at = ? WHERE trade_no = ? AND outcome = 'refund_due'`,
	paymentsToRefund: `SELECT ` + paymentColumns + ` FROM payments WHERE outcome = 'refund_due' AND id > ? ORDER BY id LIMIT ?`,

	unappliedReturns: `SELECT id, sale_id, order_id FROM stock_ledger WHERE gate_applied = 0 AND id > ? ORDER BY id LIMIT ?`,
	markApplied: func(n int) string {
		return `UPDATE stock_ledger SET gate_applied = 1 WHERE id IN (` + params(n) + `) AND gate_applied = 0`
	},
	returnedOrders: `SELECT id FROM orders WHERE sale_id = ? AND status IN ('cancelled', 'refunded') ORDER BY id`,
	lifecycleStats: `SELECT
			(SELECT COUNT(*) FROM payments WHERE sale_id = s.id AND outcome = 'refund_due'),
			(SELECT COUNT(*) FROM payments WHERE sale_id = s.id AND outcome = 'refunded'),
			(SELECT COUNT(*) FROM stock_ledger WHERE sale_id = s.id AND gate_applied = 0)
		FROM sales s WHERE s.id = ?`,
}
