package sqldb_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"seckill"
	"seckill/sqldb"
)

// BenchmarkSweep measures how fast expired orders come back to stock: one
// op writes sweepOrders orders whose deadline has passed (not timed), then
// sweepers cancel them all in pages of 500 read as checkout.Sweep reads
// them, either one CancelOrder transaction per order (as the sweeper did)
// or one CancelExpired call per page. cancels/s is the figure to compare;
// run it with -benchtime=1x -count=5 and take the median.
func BenchmarkSweep(b *testing.B) { benchSweep(b, freshSQLite) }

// BenchmarkSweepPostgres is BenchmarkSweep on the server in
// SECKILL_TEST_POSTGRES.
func BenchmarkSweepPostgres(b *testing.B) { benchSweep(b, freshPostgres) }

// BenchmarkSweepMySQL is BenchmarkSweep on the server in SECKILL_TEST_MYSQL.
func BenchmarkSweepMySQL(b *testing.B) { benchSweep(b, freshMySQL) }

// sweepOrders is how many expired orders one op sweeps.
const sweepOrders = 20_000

func benchSweep(b *testing.B, fresh freshURL) {
	for _, sweepers := range []int{1, 3} {
		for _, batch := range []bool{false, true} {
			name := fmt.Sprintf("per-order/sweepers=%d", sweepers)
			if batch {
				name = fmt.Sprintf("batch/sweepers=%d", sweepers)
			}
			b.Run(name, func(b *testing.B) { benchSweepOne(b, fresh, sweepers, batch) })
		}
	}
}

func benchSweepOne(b *testing.B, fresh freshURL, sweepers int, batch bool) {
	ctx := context.Background()
	db := openFresh(b, fresh)
	users := makeUsers(0, sweepOrders)
	mustOK(b, db.CreateUsers(ctx, users))
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		sale := &seckill.Sale{Name: "sweep", PriceCents: 1, OriginalPriceCents: 2, Stock: sweepOrders,
			StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		mustOK(b, db.CreateSale(ctx, sale))
		payBy := time.Now().Add(-time.Minute)
		for from := 0; from < sweepOrders; from += 2000 {
			reqs := make([]seckill.OrderRequest, 0, 2000)
			for _, u := range users[from:min(from+2000, sweepOrders)] {
				reqs = append(reqs, seckill.OrderRequest{SaleID: sale.ID, UserID: u.ID,
					Ticket: fmt.Sprintf("S%d-%d", sale.ID, u.ID), PriceCents: 1, At: time.Now()})
			}
			_, err := db.WriteOrders(ctx, reqs, payBy)
			mustOK(b, err)
		}
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for range sweepers {
			wg.Go(func() { sweepAll(b, db, time.Now(), batch) })
		}
		wg.Wait()
		elapsed += time.Since(start)
		b.StopTimer()
		st, err := db.SaleStats(ctx, sale.ID)
		mustOK(b, err)
		if st.Cancelled != sweepOrders || st.SQLStockLeft != sweepOrders || st.LedgerSum != sweepOrders {
			b.Fatalf("after the sweep: %+v", st)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*sweepOrders)/elapsed.Seconds(), "cancels/s")
}

// sweepAll cancels the orders expired at now, in pages as checkout.Sweep
// reads them, until none is left.
func sweepAll(b *testing.B, db *sqldb.DB, now time.Time, batch bool) {
	ctx := context.Background()
	var after seckill.OrderRef
	for {
		refs, err := db.ExpiredOrders(ctx, now, after, 500)
		if err != nil {
			b.Error(err)
			return
		}
		if len(refs) == 0 {
			return
		}
		after = refs[len(refs)-1]
		if batch {
			ids := make([]int64, len(refs))
			for i, r := range refs {
				ids[i] = r.ID
			}
			if _, err := db.CancelExpired(ctx, ids, now); err != nil {
				b.Error(err)
				return
			}
			continue
		}
		for _, r := range refs {
			_, err := db.CancelOrder(ctx, r.ID, 0, now, true)
			if err != nil && seckill.ErrorCode(err) != seckill.ENotCancellable {
				b.Error(err)
				return
			}
		}
	}
}
