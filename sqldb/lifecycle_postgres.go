package sqldb

// postgresLifecycle is the SQL of the order lifecycle on PostgreSQL. At
// READ COMMITTED a conditional UPDATE waits for a concurrent one on the
// same row and then re-checks its WHERE against the committed row, so of
// two racing moves one changes the row and the other changes none.
var postgresLifecycle = lifecycleQueries{
	cancel:        `UPDATE orders SET status = 'cancelled', cancelled_at = $1 WHERE id = $2 AND status = 'pending_payment'`,
	returnUnit:    `UPDATE sales SET stock_left = stock_left + 1 WHERE id = $1`,
	cancelLedger:  `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES ($1, $2, 1, 'cancel', $3, FALSE)`,
	refund:        `UPDATE orders SET status = 'refunded', refunded_at = $1 WHERE id = $2 AND status = 'paid'`,
	refundLedger:  `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied) VALUES ($1, $2, 1, 'refund', $3, FALSE)`,
	refundPayment: `UPDATE payments SET outcome = 'refund_due' WHERE order_id = $1 AND outcome = 'applied'`,
	payOpened:     `SELECT pay_opened FROM orders WHERE id = $1`,
	markOpened:    `UPDATE orders SET pay_opened = TRUE WHERE id = $1 AND status = 'pending_payment' AND pay_opened = FALSE`,
	// The orders are locked in id order first (ORDER BY below FOR … UPDATE
	// locks rows as they come out of the sort), so two sweepers given
	// overlapping ids wait for each other instead of deadlocking. A row
	// moved by a concurrent transaction while the lock waited is
	// re-checked against its committed version and skipped if it is no
	// longer pending; the UPDATE then writes, and RETURNING reads, the
	// version the lock holds: pay_opened as a MarkPayOpened that
	// committed first left it. The ids drive the join, so the orders are
	// found through the primary key: with id = ANY(…) beside the status
	// and deadline conditions the planner took the (status,
	// pay_deadline) index and walked every expired order, and its dead
	// entries, for each page (3,100 cancels/s against 25,000).
	cancelExpired: func(int) string {
		return `WITH locked (lid) AS MATERIALIZED (
				SELECT o.id FROM unnest($3::bigint[]) AS r (id) JOIN orders o ON o.id = r.id
				WHERE o.status = 'pending_payment' AND o.pay_deadline <= $2
				ORDER BY o.id FOR NO KEY UPDATE OF o)
			UPDATE orders SET status = 'cancelled', cancelled_at = $1
			FROM locked WHERE id = locked.lid AND status = 'pending_payment'
			RETURNING ` + orderColumns
	},
	returnUnits: `UPDATE sales SET stock_left = stock_left + $1 WHERE id = $2`,
	cancelLedgers: func(int) string {
		return `INSERT INTO stock_ledger (sale_id, order_id, delta, reason, created_at, gate_applied)
			SELECT sale_id, order_id, 1, 'cancel', $3::timestamptz, FALSE
			FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS r (sale_id, order_id, n) ORDER BY n`
	},
	expired: `SELECT id, sale_id, user_id, order_no, pay_deadline, pay_opened FROM orders
		WHERE status = 'pending_payment' AND pay_deadline <= $1 ORDER BY pay_deadline, id LIMIT $2`,
	expiredAfter: `SELECT id, sale_id, user_id, order_no, pay_deadline, pay_opened FROM orders
		WHERE status = 'pending_payment' AND pay_deadline <= $1 AND (pay_deadline > $2 OR pay_deadline = $2 AND id > $3)
		ORDER BY pay_deadline, id LIMIT $4`,

	orderByNo: `SELECT ` + orderColumns + ` FROM orders WHERE order_no = $1`,
	pay:       `UPDATE orders SET status = 'paid', paid_at = $1 WHERE id = $2 AND status = 'pending_payment'`,
	payment:   `SELECT ` + paymentColumns + ` FROM payments WHERE trade_no = $1`,
	// DO NOTHING, not an error: an error would abort the transaction.
	// Without a row back, a concurrent call recorded the trade first.
	insertPayment: `INSERT INTO payments (order_id, sale_id, order_no, trade_no, amount_cents, trade_status,
			notify_id, app_id, outcome, paid_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (trade_no) DO NOTHING RETURNING id`,
	markRefunded:     `UPDATE payments SET outcome = 'refunded', refunded_at = $1 WHERE trade_no = $2 AND outcome = 'refund_due'`,
	paymentsToRefund: `SELECT ` + paymentColumns + ` FROM payments WHERE outcome = 'refund_due' AND id > $1 ORDER BY id LIMIT $2`,

	unappliedReturns: `SELECT id, sale_id, order_id FROM stock_ledger WHERE gate_applied = FALSE AND id > $1 ORDER BY id LIMIT $2`,
	markApplied: func(int) string {
		return `UPDATE stock_ledger SET gate_applied = TRUE WHERE id = ANY($1::bigint[]) AND gate_applied = FALSE`
	},
	returnedOrders: `SELECT id FROM orders WHERE sale_id = $1 AND status IN ('cancelled', 'refunded') ORDER BY id`,
	lifecycleStats: `SELECT
			(SELECT COUNT(*) FROM payments WHERE sale_id = s.id AND outcome = 'refund_due'),
			(SELECT COUNT(*) FROM payments WHERE sale_id = s.id AND outcome = 'refunded'),
			(SELECT COUNT(*) FROM stock_ledger WHERE sale_id = s.id AND gate_applied = FALSE)
		FROM sales s WHERE s.id = $1`,
}
