package sqldb_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"seckill"
	"seckill/sqldb"
)

// migrateOrders writes a sale of 5 units at 100 cents and one pending
// order of each of n new buyers, at 100 cents.
func migrateOrders(t *testing.T, db *sqldb.DB, n int) (*seckill.Sale, []seckill.OrderResult) {
	t.Helper()
	ctx := context.Background()
	users := make([]*seckill.User, n)
	for i := range users {
		users[i] = &seckill.User{Phone: fmt.Sprintf("1390000000%d", i), Role: seckill.RoleBuyer, PasswordHash: "h"}
	}
	mustOK(t, db.CreateUsers(ctx, users))
	sale := &seckill.Sale{Name: "s", PriceCents: 100, OriginalPriceCents: 200, Stock: 5,
		StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))
	var reqs []seckill.OrderRequest
	for i, u := range users {
		reqs = append(reqs, seckill.OrderRequest{SaleID: sale.ID, UserID: u.ID, Ticket: fmt.Sprintf("M%d", i), PriceCents: 100, At: time.Now()})
	}
	res, err := db.WriteOrders(ctx, reqs, time.Now().Add(10*time.Minute))
	mustOK(t, err)
	return sale, res
}

// testMigrateRefund rolls a database holding orders, a payment and an
// unapplied cancel back to the schema before refunds (00002) and opens it
// again: migration 00003 keeps every row — on SQLite it rebuilds the
// stock ledger — and a refund then works on the old data.
func testMigrateRefund(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	url := fresh(t)
	db, err := sqldb.Open(ctx, url)
	mustOK(t, err)
	sale, res := migrateOrders(t, db, 3)
	now := time.Now().UTC().Truncate(time.Millisecond)
	paid, err := db.Order(ctx, res[0].OrderID)
	mustOK(t, err)
	_, _, err = db.ApplyPayment(ctx, seckill.Payment{OrderNo: paid.OrderNo, TradeNo: "TR-M0", AmountCents: 100, TradeStatus: "TRADE_SUCCESS", PaidAt: now})
	mustOK(t, err)
	_, err = db.CancelOrder(ctx, res[1].OrderID, 0, now, false)
	mustOK(t, err)
	wantStats, err := db.SaleStats(ctx, sale.ID)
	mustOK(t, err)
	wantReturns, err := db.UnappliedReturns(ctx, 0, 100)
	mustOK(t, err)
	mustOK(t, db.Close())

	mustOK(t, sqldb.MigrateDownTo(ctx, url, 2))
	db = openAt(t, url)
	st, err := db.SaleStats(ctx, sale.ID)
	mustOK(t, err)
	returns, err := db.UnappliedReturns(ctx, 0, 100)
	mustOK(t, err)
	if *st != *wantStats || !slices.Equal(returns, wantReturns) || len(returns) != 1 {
		t.Fatalf("after migrating: stats %+v, returns %+v; want %+v, %+v", st, returns, wantStats, wantReturns)
	}
	o, err := db.Order(ctx, paid.ID)
	mustOK(t, err)
	if o.Status != seckill.OrderPaid || o.RefundedAt != nil || o.PaidAt == nil || !o.PaidAt.Equal(now) {
		t.Fatalf("paid order after migrating: %+v", o)
	}

	// The old paid order refunds; its ledger row follows the old ones.
	o, err = db.RefundOrder(ctx, paid.ID, now)
	mustOK(t, err)
	if o.Status != seckill.OrderRefunded {
		t.Fatalf("RefundOrder = %+v", o)
	}
	returns, err = db.UnappliedReturns(ctx, 0, 100)
	mustOK(t, err)
	if len(returns) != 2 || returns[0] != wantReturns[0] || returns[1].OrderID != paid.ID || returns[1].LedgerID <= returns[0].LedgerID {
		t.Fatalf("returns after a refund: %+v", returns)
	}
	st, err = db.SaleStats(ctx, sale.ID)
	mustOK(t, err)
	if st.Refunded != 1 || st.Paid != 0 || st.SQLStockLeft != wantStats.SQLStockLeft+1 || st.LedgerSum != st.SQLStockLeft {
		t.Fatalf("stats after a refund: %+v", st)
	}
	due, err := db.PaymentsToRefund(ctx, 0, 10)
	mustOK(t, err)
	if len(due) != 1 || due[0].TradeNo != "TR-M0" {
		t.Fatalf("PaymentsToRefund = %+v", due)
	}
}

// testMigratePayOpened rolls a database back to the schema before the
// pay_opened mark (00003) and opens it again: migration 00004 takes every
// order still pending as opened (its page may have been opened before
// the mark existed, and a close of a trade that does not exist is
// harmless), no other; orders written after it start unmarked, and a
// cancel returns the mark.
func testMigratePayOpened(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	url := fresh(t)
	db, err := sqldb.Open(ctx, url)
	mustOK(t, err)
	sale, res := migrateOrders(t, db, 4)
	now := time.Now().UTC().Truncate(time.Millisecond)
	mustOK(t, db.MarkPayOpened(ctx, res[1].OrderID))
	_, err = db.CancelOrder(ctx, res[2].OrderID, 0, now, false)
	mustOK(t, err)
	paid, err := db.Order(ctx, res[3].OrderID)
	mustOK(t, err)
	_, _, err = db.ApplyPayment(ctx, seckill.Payment{OrderNo: paid.OrderNo, TradeNo: "TR-P3", AmountCents: 100, TradeStatus: "TRADE_SUCCESS", PaidAt: now})
	mustOK(t, err)
	mustOK(t, db.Close())

	mustOK(t, sqldb.MigrateDownTo(ctx, url, 3))
	db = openAt(t, url)
	for i, want := range []bool{true, true, false, false} {
		o, err := db.Order(ctx, res[i].OrderID)
		mustOK(t, err)
		if o.PayOpened != want {
			t.Errorf("order %d (%s) after migrating: opened %v, want %v", o.ID, o.Status, o.PayOpened, want)
		}
	}
	late := &seckill.User{Phone: "13900000099", Role: seckill.RoleBuyer, PasswordHash: "h"}
	mustOK(t, db.CreateUsers(ctx, []*seckill.User{late}))
	more, err := db.WriteOrders(ctx, []seckill.OrderRequest{{SaleID: sale.ID, UserID: late.ID, Ticket: "M-new", PriceCents: 100, At: now}}, now.Add(time.Minute))
	mustOK(t, err)
	o, err := db.CancelOrder(ctx, more[0].OrderID, 0, now, false)
	mustOK(t, err)
	if o.PayOpened {
		t.Errorf("an order written after migrating is marked opened: %+v", o)
	}
	o, err = db.CancelOrder(ctx, res[0].OrderID, 0, now, false)
	mustOK(t, err)
	if !o.PayOpened {
		t.Errorf("a pending order from before the mark, cancelled: %+v, want it opened", o)
	}
}

// testOpenTogether opens one fresh database from several processes' worth
// of connections at once, as instances starting together do: each must
// migrate or find the schema migrated, none may fail on another's half
// done migration (MySQL's "Table 'users' already exists" made one of
// three first starts exit; 8 at once fail nearly every time without a
// lock).
func testOpenTogether(t *testing.T, fresh freshURL) {
	url := fresh(t)
	const n = 8
	errs := make(chan error, n)
	dbs := make(chan *sqldb.DB, n)
	for range n {
		go func() {
			db, err := sqldb.Open(context.Background(), url)
			errs <- err
			dbs <- db
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("open while others open: %v", err)
		}
		if db := <-dbs; db != nil {
			t.Cleanup(func() { _ = db.Close() })
			if err := db.Ping(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}
}
