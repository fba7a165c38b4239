package sqldb_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"seckill"
	"seckill/internal/testenv"
	"seckill/sqldb"
)

// BenchmarkWriteOrders measures the order writer's hot path: batches of new
// orders for one sale, each batch one WriteOrders call (one transaction).
// Every op is one batch; orders/s is the figure to compare.
func BenchmarkWriteOrders(b *testing.B) { benchWriteOrdersSizes(b, freshSQLite) }

// BenchmarkWriteOrdersPostgres is BenchmarkWriteOrders on the server in
// SECKILL_TEST_POSTGRES.
func BenchmarkWriteOrdersPostgres(b *testing.B) { benchWriteOrdersSizes(b, freshPostgres) }

// BenchmarkWriteOrdersMySQL is BenchmarkWriteOrders on the server in
// SECKILL_TEST_MYSQL.
func BenchmarkWriteOrdersMySQL(b *testing.B) { benchWriteOrdersSizes(b, freshMySQL) }

func benchWriteOrdersSizes(b *testing.B, fresh freshURL) {
	for _, size := range []int{100, 500, 1000, 2000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) { benchWriteOrders(b, fresh, size, false) })
	}
	// A crowd's buyers come in no order of their ids (the batches above
	// hold consecutive ones): the indexes and checks by user meet them at
	// random.
	b.Run("2000-crowd", func(b *testing.B) { benchWriteOrders(b, fresh, 2000, true) })
}

func benchWriteOrders(b *testing.B, fresh freshURL, size int, shuffle bool) {
	ctx := context.Background()
	db := openFresh(b, fresh)
	reqs := make([]seckill.OrderRequest, size)
	payBy := time.Now().Add(10 * time.Minute)
	benchBatches(b, db, size, shuffle, func(saleID int64, users []*seckill.User) {
		now := time.Now()
		for j, u := range users {
			reqs[j] = seckill.OrderRequest{SaleID: saleID, UserID: u.ID,
				Ticket: fmt.Sprintf("B%d-%d", saleID, u.ID), PriceCents: 1, At: now}
		}
		res, err := db.WriteOrders(ctx, reqs, payBy)
		mustOK(b, err)
		if res[size-1].Status != seckill.ResultSuccess {
			b.Fatalf("result %+v", res[size-1])
		}
	})
}

// benchBatches calls write with one batch of size new buyers of one sale
// per op, a fresh sale of 100,000 units every 100,000 buyers, and reports
// orders/s and the CPU time of the process per order (the whole engine's,
// for SQLite). The batches hold consecutive users, or with shuffle each
// sale's buyers in a random order.
func benchBatches(b *testing.B, db *sqldb.DB, size int, shuffle bool, write func(saleID int64, users []*seckill.User)) {
	ctx := context.Background()
	const nUsers = 100_000
	users := makeUsers(0, nUsers)
	mustOK(b, db.CreateUsers(ctx, users))
	perSale := nUsers / size // batches before the sale runs out of new buyers
	var sale *seckill.Sale
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.CPUTime()
	for i := 0; b.Loop(); i++ {
		if i%perSale == 0 {
			b.StopTimer()
			sale = &seckill.Sale{Name: "bench", PriceCents: 1, OriginalPriceCents: 2, Stock: nUsers,
				StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
			mustOK(b, db.CreateSale(ctx, sale))
			if shuffle {
				rand.Shuffle(len(users), func(i, j int) { users[i], users[j] = users[j], users[i] })
			}
			b.StartTimer()
		}
		write(sale.ID, users[(i%perSale)*size:][:size])
	}
	orders := float64(b.N * size)
	b.ReportMetric(orders/b.Elapsed().Seconds(), "orders/s")
	if cpu := testenv.CPUTime() - cpu0; cpu > 0 {
		b.ReportMetric(cpu.Seconds()*1e6/orders, "cpu-µs/order")
	}
}

// BenchmarkWriteOrdersParallel runs 2 × GOMAXPROCS writers at once (as
// that many order-writer consumers would), each writing batches of 100 new
// orders to one sale. SQLite takes one writer at a time, and PostgreSQL and
// MySQL one writer per sale (the batch locks the sale's row); this
// measures that they queue without failing or spinning.
func BenchmarkWriteOrdersParallel(b *testing.B) { benchWriteOrdersParallel(b, freshSQLite) }

// BenchmarkWriteOrdersParallelPostgres is BenchmarkWriteOrdersParallel on
// the server in SECKILL_TEST_POSTGRES.
func BenchmarkWriteOrdersParallelPostgres(b *testing.B) {
	benchWriteOrdersParallel(b, freshPostgres)
}

// BenchmarkWriteOrdersParallelMySQL is BenchmarkWriteOrdersParallel on the
// server in SECKILL_TEST_MYSQL.
func BenchmarkWriteOrdersParallelMySQL(b *testing.B) { benchWriteOrdersParallel(b, freshMySQL) }

func benchWriteOrdersParallel(b *testing.B, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(b, fresh)
	const nUsers, size = 100_000, 100
	users := makeUsers(0, nUsers)
	mustOK(b, db.CreateUsers(ctx, users))
	var mu sync.Mutex
	next := 0 // next user batch; a new sale every nUsers/size batches
	var sale *seckill.Sale
	batch := func() (int64, []*seckill.User) {
		mu.Lock()
		defer mu.Unlock()
		i := next % (nUsers / size)
		if i == 0 {
			sale = &seckill.Sale{Name: "bench", PriceCents: 1, OriginalPriceCents: 2, Stock: nUsers,
				StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
			mustOK(b, db.CreateSale(ctx, sale))
		}
		next++
		return sale.ID, users[i*size : (i+1)*size]
	}
	b.SetParallelism(2) // 2 × GOMAXPROCS writers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		reqs := make([]seckill.OrderRequest, size)
		for pb.Next() {
			saleID, us := batch()
			now := time.Now()
			for j, u := range us {
				reqs[j] = seckill.OrderRequest{SaleID: saleID, UserID: u.ID,
					Ticket: fmt.Sprintf("P%d-%d", saleID, u.ID), PriceCents: 1, At: now}
			}
			if _, err := db.WriteOrders(ctx, reqs, now.Add(time.Minute)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "orders/s")
}

// BenchmarkRawInsert measures what the engine itself takes: plain
// multi-row INSERTs of new orders (no ON CONFLICT, no RETURNING, no stock
// or ledger), 500 rows each, prepared once, four to a transaction: batches
// of 2000 as the order writer's. It is the ceiling WriteOrders is reported against, as
// a ratio, in the same run.
func BenchmarkRawInsert(b *testing.B) { benchRawInsert(b, freshSQLite) }

// BenchmarkRawInsertPostgres is BenchmarkRawInsert on the server in
// SECKILL_TEST_POSTGRES.
func BenchmarkRawInsertPostgres(b *testing.B) { benchRawInsert(b, freshPostgres) }

func benchRawInsert(b *testing.B, fresh freshURL) {
	const size, rowsPer = 2000, 500
	ctx := context.Background()
	db := openFresh(b, fresh)
	pg := db.Engine() == "postgres"
	var q strings.Builder
	q.WriteString(`INSERT INTO orders (sale_id, user_id, order_no, price_cents, created_at, pay_deadline, status) VALUES `)
	for i := range rowsPer {
		if i > 0 {
			q.WriteString(", ")
		}
		if pg {
			n := 6 * i
			fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, 'pending_payment')", n+1, n+2, n+3, n+4, n+5, n+6)
		} else {
			q.WriteString("(?, ?, ?, ?, ?, ?, 'pending_payment')")
		}
	}
	st, err := db.WritePool().PrepareContext(ctx, q.String())
	mustOK(b, err)
	defer st.Close()
	args := make([]any, 0, 6*size)
	benchBatches(b, db, size, false, func(saleID int64, users []*seckill.User) {
		now := time.Now()
		var at, payBy any = now, now.Add(10 * time.Minute)
		if !pg {
			at, payBy = now.UnixMilli(), now.Add(10*time.Minute).UnixMilli()
		}
		args = args[:0]
		for _, u := range users {
			args = append(args, saleID, u.ID, fmt.Sprintf("B%d-%d", saleID, u.ID), int64(1), at, payBy)
		}
		mustOK(b, db.InTx(ctx, func(tx *sql.Tx) error {
			ts := tx.StmtContext(ctx, st)
			for k := 0; k < len(args); k += 6 * rowsPer {
				if _, err := ts.ExecContext(ctx, args[k:k+6*rowsPer]...); err != nil {
					return err
				}
			}
			return nil
		}))
	})
}

// BenchmarkRawCopyPostgres is the PostgreSQL server's own ceiling for
// these rows and indexes: the rows of BenchmarkRawInsertPostgres, 2000 to
// a transaction, written with COPY (pgx CopyFrom) straight into orders.
func BenchmarkRawCopyPostgres(b *testing.B) {
	const size = 2000
	ctx := context.Background()
	db := openFresh(b, freshPostgres)
	conn, err := db.WritePool().Conn(ctx)
	mustOK(b, err)
	defer conn.Close()
	cols := []string{"sale_id", "user_id", "order_no", "price_cents", "created_at", "pay_deadline", "status"}
	rows := make([][]any, size)
	benchBatches(b, db, size, false, func(saleID int64, users []*seckill.User) {
		now := time.Now()
		payBy := now.Add(10 * time.Minute)
		for j, u := range users {
			rows[j] = []any{saleID, u.ID, fmt.Sprintf("B%d-%d", saleID, u.ID), int64(1), now, payBy, "pending_payment"}
		}
		mustOK(b, conn.Raw(func(dc any) error {
			return pgx.BeginFunc(ctx, dc.(*stdlib.Conn).Conn(), func(tx pgx.Tx) error {
				n, err := tx.CopyFrom(ctx, pgx.Identifier{"orders"}, cols, pgx.CopyFromRows(rows))
				if err == nil && n != size {
					err = fmt.Errorf("copied %d of %d rows", n, size)
				}
				return err
			})
		}))
	})
}
