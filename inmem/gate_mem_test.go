package inmem

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"seckill"
)

// BenchmarkGateMemory1M reports the heap a sale with 1,000,000 distinct
// buyers holds in the in-process gate: while every reservation is still
// pending (the writer has settled none), and once they are settled. Each
// buyer holds a ticket of its own, made as the engine makes them (see
// benchTicket), so the heap counts what a real sale's tickets cost, and
// reserves with serve's default purchase bucket (5 a second, burst 10), as
// the engine does: a reservation keeps no bucket. Issue 14's target: under
// 100 MB pending.
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
		rng := rand.New(rand.NewPCG(1, uint64(i)))
		start := time.Now()
		before := heap()
		g := NewGate()
		if _, err := g.Load(ctx, 1, seckill.GateState(buyers, nil)); err != nil {
			b.Fatal(err)
		}
		for u := int64(1); u <= buyers; u++ {
			t := benchTicket(start.Add(time.Duration(u)*time.Microsecond), rng.Uint64())
			if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: u, Ticket: t, At: start, Limit: seckill.Bucket{PerSecond: 5, Burst: 10}}); err != nil || r != seckill.Reserved {
				b.Fatal(r, err)
			}
		}
		pending := heap() - before
		// Settle with the tickets the gate lists, a batch at a time, as
		// the writer does.
		rs, err := g.Stale(ctx, 1, 0)
		if err != nil || len(rs) != buyers {
			b.Fatal(len(rs), err)
		}
		users := make([]seckill.Settled, 0, 1000)
		for _, r := range rs {
			users = append(users, seckill.Settled{UserID: r.UserID, Ticket: r.Ticket})
			if len(users) == cap(users) {
				_ = g.Settle(ctx, 1, users)
				users = users[:0]
			}
		}
		rs, users = nil, nil
		settled := heap() - before
		b.ReportMetric(float64(pending)/(1<<20), "MB-pending")
		b.ReportMetric(float64(settled)/(1<<20), "MB-settled")
		if n, _, _ := g.Left(ctx, 1); n != 0 {
			b.Fatal("left", n)
		}
		if rs, _ := g.Stale(ctx, 1, 0); len(rs) != 0 {
			b.Fatal("still pending", len(rs))
		}
		runtime.KeepAlive(g)
	}
}

// benchTicket makes a ticket the way checkout's ticketAt does (a fresh
// string of 20 Crockford base32 characters: 10 of the time in
// milliseconds, 10 random), from the random bits given.
func benchTicket(t time.Time, random uint64) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [20]byte
	ms := uint64(t.UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = alphabet[ms&31]
		ms >>= 5
	}
	for i := 10; i < 20; i++ {
		b[i] = alphabet[random&31]
		random >>= 5
	}
	return string(b[:])
}
