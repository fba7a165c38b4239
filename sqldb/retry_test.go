package sqldb_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// testDeadlockRetry makes two transactions deadlock on two sales' rows and
// checks that the engine's victim is retried: both commit, each exactly
// once.
func testDeadlockRetry(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	var sales [2]*seckill.Sale
	for i := range sales {
		sales[i] = &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 10,
			StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		mustOK(t, db.CreateSale(ctx, sales[i]))
	}
	var (
		holding  sync.WaitGroup // both hold their first row
		attempts atomic.Int32
	)
	holding.Add(2)
	take := func(tx *sql.Tx, id int64) error {
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE sales SET stock_left = stock_left - 1 WHERE id = %d`, id))
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w := range 2 {
		first, second := sales[w].ID, sales[1-w].ID
		var once sync.Once
		wg.Go(func() {
			errs[w] = db.InTx(ctx, func(tx *sql.Tx) error {
				attempts.Add(1)
				if err := take(tx, first); err != nil {
					return err
				}
				once.Do(func() { holding.Done(); holding.Wait() })
				return take(tx, second)
			})
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
		}
	}
	if n := attempts.Load(); n < 3 {
		t.Errorf("%d attempts; want a retry after the deadlock", n)
	}
	for _, s := range sales {
		got, err := db.Sale(ctx, s.ID)
		mustOK(t, err)
		if got.StockLeft != 8 {
			t.Errorf("sale %d: %d left, want 8: each transaction once", s.ID, got.StockLeft)
		}
	}
}

func TestManyWriters(t *testing.T) { testManyWriters(t, freshSQLite) }

// testManyWriters runs more writers than connections over batches that
// mix several sales in random order (so they would lock them in different
// orders), with redeliveries that meet each other's uncommitted orders,
// and sales that run short, and checks that no transaction deadlocked (or
// failed in any way the engine would have it retried), and I1, I2 and I4
// in SQL: no batch fails, live orders + stock left = stock, the ledger
// agrees.
func testManyWriters(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	retried := db.CountRetryable()
	const (
		writers = 24
		batches = 10
		size    = 60
		nUsers  = 400
	)
	users := makeUsers(500_000, nUsers)
	mustOK(t, db.CreateUsers(ctx, users))
	var sales []*seckill.Sale
	for _, stock := range []int64{50, 150, 300, 1000} {
		s := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: stock,
			StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		mustOK(t, db.CreateSale(ctx, s))
		sales = append(sales, s)
	}
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := range writers {
		wg.Go(func() {
			for i := range batches {
				reqs := make([]seckill.OrderRequest, size)
				for j := range reqs {
					k := (w*7919 + i*104729 + j*31) // spread, with repeats across writers
					s := sales[k%len(sales)]
					u := users[(k/3+j)%nUsers]
					reqs[j] = seckill.OrderRequest{SaleID: s.ID, UserID: u.ID,
						Ticket: fmt.Sprintf("M%d", seq.Add(1)), PriceCents: 1, At: time.Now()}
				}
				if _, err := db.WriteOrders(ctx, reqs, time.Now().Add(time.Minute)); err != nil {
					t.Errorf("writer %d batch %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := retried.Load(); n != 0 {
		t.Errorf("%d transactions deadlocked or failed to serialize (and were retried); want none", n)
	}
	for _, s := range sales {
		st, err := db.SaleStats(ctx, s.ID)
		mustOK(t, err)
		if st.Orders+st.SQLStockLeft != s.Stock || st.LedgerSum != st.SQLStockLeft || st.SQLStockLeft < 0 {
			t.Errorf("sale %d (stock %d): %+v; want orders + left = stock = ledger + orders", s.ID, s.Stock, st)
		}
		buyers, err := db.SaleBuyers(ctx, s.ID)
		mustOK(t, err)
		if int64(len(buyers)) != st.Orders {
			t.Errorf("sale %d: %d buyers, %d orders", s.ID, len(buyers), st.Orders)
		}
	}
}
