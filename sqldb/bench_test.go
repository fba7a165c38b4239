package sqldb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"seckill"
)

// BenchmarkWriteOrders measures the order writer's hot path: batches of new
// orders for one sale, each batch one WriteOrders call (one transaction).
// Every op is one batch; orders/s is the figure to compare.
func BenchmarkWriteOrders(b *testing.B) {
	for _, size := range []int{100, 500, 1000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) { benchWriteOrders(b, size) })
	}
}

func benchWriteOrders(b *testing.B, size int) {
	ctx := context.Background()
	db := openTemp(b)
	const nUsers = 100_000
	users := makeUsers(0, nUsers)
	mustOK(b, db.CreateUsers(ctx, users))
	perSale := nUsers / size // batches before the sale runs out of new buyers

	var sale *seckill.Sale
	reqs := make([]seckill.OrderRequest, size)
	payBy := time.Now().Add(10 * time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%perSale == 0 {
			b.StopTimer()
			sale = &seckill.Sale{Name: "bench", PriceCents: 1, OriginalPriceCents: 2, Stock: nUsers,
				StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
			mustOK(b, db.CreateSale(ctx, sale))
			b.StartTimer()
		}
		now := time.Now()
		for j := range reqs {
			u := users[(i%perSale)*size+j]
			reqs[j] = seckill.OrderRequest{SaleID: sale.ID, UserID: u.ID,
				Ticket: fmt.Sprintf("B%d-%d", sale.ID, u.ID), PriceCents: 1, At: now}
		}
		res, err := db.WriteOrders(ctx, reqs, payBy)
		mustOK(b, err)
		if res[size-1].Status != seckill.ResultSuccess {
			b.Fatalf("result %+v", res[size-1])
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "orders/s")
}
