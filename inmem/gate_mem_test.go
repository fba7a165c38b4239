package inmem

import (
	"context"
	"runtime"
	"testing"
	"time"

	"seckill"
)

// BenchmarkGateMemory1M reports the heap a sale with 1,000,000 distinct
// buyers holds in the in-process gate: while every reservation is still
// pending (the writer has settled none), and once they are settled.
// Issue 4's target: under 200 MB.
func BenchmarkGateMemory1M(b *testing.B) {
	const buyers = 1_000_000
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for i := 0; i < b.N; i++ {
		before := heap()
		g := NewGate()
		if _, err := g.Load(ctx, 1, seckill.GateState(buyers, nil)); err != nil {
			b.Fatal(err)
		}
		at := time.Now()
		users := make([]seckill.Settled, 0, 1000)
		for u := int64(1); u <= buyers; u++ {
			if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: u, Ticket: "ABCDEFGHIJKLMNOPQRST", At: at}); err != nil || r != seckill.Reserved {
				b.Fatal(r, err)
			}
		}
		pending := heap() - before
		for u := int64(1); u <= buyers; u++ {
			users = append(users, seckill.Settled{UserID: u, Ticket: "ABCDEFGHIJKLMNOPQRST"})
			if len(users) == cap(users) {
				_ = g.Settle(ctx, 1, users)
				users = users[:0]
			}
		}
		settled := heap() - before
		b.ReportMetric(float64(pending)/(1<<20), "MB-pending")
		b.ReportMetric(float64(settled)/(1<<20), "MB-settled")
		runtime.KeepAlive(g)
	}
}
