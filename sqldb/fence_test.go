package sqldb_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"seckill"
	"seckill/sqldb"
)

// testFenceWaits forces, on an engine that locks rows, the two
// interleavings the sale's row lock decides between FenceTicket and
// WriteOrders: a fence that commits while an order batch waits for the
// sale, and an order that commits while FenceTicket waits. A raw
// transaction plays the side that holds the lock first, and lets go only
// once the other is seen waiting for it, so each order of events is the
// one named, not a likely one. The waiter must see, after its lock, what
// the holder committed: at READ COMMITTED that takes a statement after
// the lock (a new snapshot, a new read view), not the lock's own.
func testFenceWaits(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	setup := func(t *testing.T) (*sqldb.DB, *seckill.Sale, *seckill.User) {
		db := openFresh(t, fresh)
		sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 5,
			StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		mustOK(t, db.CreateSale(ctx, sale))
		u := &seckill.User{Phone: "13900000001", Role: seckill.RoleBuyer, PasswordHash: "x"}
		mustOK(t, db.CreateUser(ctx, u))
		return db, sale, u
	}

	t.Run("FenceWhileWriterWaits", func(t *testing.T) {
		db, sale, u := setup(t)
		const ticket = "T-fenced-while-waiting"
		h := holdSale(t, db, sale.ID)
		h.exec(fmt.Sprintf(`INSERT INTO released_tickets (ticket, sale_id, user_id, released_at)
			VALUES ('%s', %d, %d, CURRENT_TIMESTAMP)`, ticket, sale.ID, u.ID))
		type answer struct {
			res []seckill.OrderResult
			err error
		}
		done := make(chan answer, 1)
		go func() {
			req := seckill.OrderRequest{SaleID: sale.ID, UserID: u.ID, Ticket: ticket, PriceCents: 1, At: time.Now()}
			res, err := db.WriteOrders(ctx, []seckill.OrderRequest{req}, time.Now().Add(time.Minute))
			done <- answer{res, err}
		}()
		h.waitBlocked()
		h.commit()
		a := <-done
		mustOK(t, a.err)
		if r := a.res[0]; r.Status != seckill.ResultFailed || r.Reason != seckill.EExpired {
			t.Errorf("request fenced while its batch waited for the sale = %+v, want failed expired", r)
		}
		if _, err := db.OrderBySaleUser(ctx, sale.ID, u.ID); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Errorf("OrderBySaleUser = %v, want not found", err)
		}
		if st, err := db.SaleStats(ctx, sale.ID); err != nil || st.SQLStockLeft != 5 || st.Orders != 0 {
			t.Errorf("SaleStats = %+v, %v; want 5 left, no order", st, err)
		}
	})

	t.Run("OrderWhileFenceWaits", func(t *testing.T) {
		db, sale, u := setup(t)
		const ticket = "T-ordered-while-waiting"
		h := holdSale(t, db, sale.ID)
		type answer struct {
			fenced bool
			err    error
		}
		done := make(chan answer, 1)
		go func() {
			fenced, err := db.FenceTicket(ctx, sale.ID, u.ID, ticket)
			done <- answer{fenced, err}
		}()
		h.waitBlocked()
		h.exec(fmt.Sprintf(`INSERT INTO orders (sale_id, user_id, order_no, price_cents, created_at, pay_deadline, status)
			VALUES (%d, %d, '%s', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'pending_payment')`, sale.ID, u.ID, ticket))
		h.commit()
		a := <-done
		mustOK(t, a.err)
		if a.fenced {
			t.Error("FenceTicket = true for a pair whose order committed while it waited for the sale, want false")
		}
		if got, err := db.FencedTickets(ctx, sale.ID); err != nil || len(got) != 0 {
			t.Errorf("FencedTickets = %v, %v; want none", got, err)
		}
	})
}

// saleHolder is a raw transaction holding a sale's row, as WriteOrders and
// FenceTicket do.
type saleHolder struct {
	t   *testing.T
	db  *sqldb.DB
	tx  *sql.Tx
	pid int64 // the holder's session (backend pid, connection id)
}

// holdSale begins a transaction on db's write pool and locks the sale's
// row; it is rolled back at the end of the test unless committed.
func holdSale(t *testing.T, db *sqldb.DB, saleID int64) *saleHolder {
	t.Helper()
	ctx := context.Background()
	tx, err := db.WritePool().BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	mustOK(t, err)
	t.Cleanup(func() { tx.Rollback() })
	h := &saleHolder{t: t, db: db, tx: tx}
	session := `SELECT pg_backend_pid()`
	if db.Engine() == "mysql" {
		session = `SELECT CONNECTION_ID()`
	}
	mustOK(t, tx.QueryRowContext(ctx, session).Scan(&h.pid))
	var id int64
	mustOK(t, tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT id FROM sales WHERE id = %d FOR UPDATE`, saleID)).Scan(&id))
	return h
}

func (h *saleHolder) exec(query string) {
	h.t.Helper()
	_, err := h.tx.ExecContext(context.Background(), query)
	mustOK(h.t, err)
}

func (h *saleHolder) commit() {
	h.t.Helper()
	mustOK(h.t, h.tx.Commit())
}

// waitBlocked returns once another session is waiting for the sale's row
// that the holder holds, and fails the test after 10 s.
func (h *saleHolder) waitBlocked() {
	h.t.Helper()
	// PostgreSQL names the blocker. On MySQL, a session of this fresh
	// database inside the lock statement (WriteOrders' and FenceTicket's
	// stockLeft) started it before the holder lets go, which is the order
	// wanted; MariaDB's INNODB_TRX did not always list such a waiter yet.
	query := fmt.Sprintf(`SELECT COUNT(*) FROM pg_stat_activity WHERE %d = ANY(pg_blocking_pids(pid))`, h.pid)
	if h.db.Engine() == "mysql" {
		query = `SELECT COUNT(*) FROM information_schema.PROCESSLIST
			WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO LIKE 'SELECT id, stock_left FROM sales %FOR UPDATE'`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		mustOK(h.t, h.db.WritePool().QueryRowContext(context.Background(), query).Scan(&n))
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("no session waited for the sale's row within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
