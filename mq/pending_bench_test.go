package mq

import (
	"context"
	"testing"
)

// BenchmarkPendingRequests reads a backlog of 100,000 requests (published
// by 256 buyers at once, grouped as a crowd's are) as the gate rebuild and
// the reconciler read it.
func BenchmarkPendingRequests(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  func(b *testing.B) Config
	}{
		{"embedded", func(b *testing.B) Config { return Config{DataDir: b.TempDir()} }},
		{"external", func(b *testing.B) Config { return Config{URL: externalURL(b), Prefix: uniquePrefix(b)} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q, err := Open(context.Background(), tc.cfg(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { deleteStream(b, q); q.Close() })
			const n = 100_000
			fill(b, q, n)
			info, err := q.stream.Info(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				rs, err := q.PendingRequests(context.Background(), 1)
				if err != nil || len(rs) != n {
					b.Fatalf("%d requests, %v; want %d", len(rs), err, n)
				}
			}
			b.ReportMetric(float64(info.State.Msgs), "messages")
		})
	}
}
