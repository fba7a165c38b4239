package mq

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// BenchmarkPublish measures synchronous publishes (each waits for its
// PubAck) from many goroutines at once, as concurrent HTTP handlers do.
func BenchmarkPublish(b *testing.B) {
	for _, par := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", par), func(b *testing.B) {
			q := benchQueue(b)
			var user atomic.Int64
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					u := user.Add(1)
					r := seckill.OrderRequest{SaleID: 1, UserID: u, Ticket: "T00000000000000000000", PriceCents: 999, At: time.Now()}
					if err := q.Publish(ctx, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkFetchAck measures the writer side: fetch batches of up to 500
// and ack every delivery, acking sequentially or from several goroutines.
func BenchmarkFetchAck(b *testing.B) {
	for _, ackers := range []int{0, 1, 8} { // 0: AckAll
		b.Run(fmt.Sprintf("ackers=%d", ackers), func(b *testing.B) {
			q := benchQueue(b)
			fill(b, q, b.N)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for got := 0; got < b.N; {
				ds, err := q.Fetch(ctx, 500, time.Second)
				if err != nil || len(ds) == 0 {
					b.Fatalf("fetch after %d: %v", got, err)
				}
				got += len(ds)
				ackAll(b, ds, ackers)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func ackAll(b *testing.B, ds []seckill.Delivery, ackers int) {
	if ackers == 0 {
		if err := ds[0].(*delivery).q.AckAll(context.Background(), ds); err != nil {
			b.Fatal(err)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range ackers {
		wg.Go(func() {
			for i := w; i < len(ds); i += ackers {
				if err := ds[i].Ack(context.Background()); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func benchQueue(b *testing.B) *Queue {
	b.Helper()
	q, err := Open(context.Background(), Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

// fill publishes n requests from 256 goroutines.
func fill(b *testing.B, q *Queue, n int) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for u := next.Add(1); u <= int64(n); u = next.Add(1) {
				if err := q.Publish(context.Background(), seckill.OrderRequest{SaleID: 1, UserID: u, Ticket: "T00000000000000000000"}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
