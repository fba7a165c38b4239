package checkout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// TestRebuildKeepsExtendingItsLease: while a rebuild runs, its lease is
// extended every rebuildExtend to rebuildLease, so a long rebuild keeps
// the lock though the lease is short (a holder that dies holds it up at
// most rebuildLease); once the rebuild is done, or the lease lost, the
// extending stops.
func TestRebuildKeepsExtendingItsLease(t *testing.T) {
	var extends atomic.Int32
	var lost atomic.Bool
	lease := seckill.Lease{
		Release: func(context.Context) error { return nil },
		Extend: func(_ context.Context, ttl time.Duration) (bool, error) {
			if ttl != rebuildLease {
				t.Errorf("extended to %v, want %v", ttl, rebuildLease)
			}
			extends.Add(1)
			return !lost.Load(), nil
		},
	}
	stop := keepExtending(context.Background(), lease)
	time.Sleep(2*rebuildExtend + rebuildExtend/2)
	stop()
	n := extends.Load()
	if n < 2 {
		t.Fatalf("extended %d times in %v, want every %v", n, 2*rebuildExtend+rebuildExtend/2, rebuildExtend)
	}
	time.Sleep(rebuildExtend + rebuildExtend/2)
	if extends.Load() != n {
		t.Fatal("extended after the rebuild stopped")
	}
	// A lost lease stops the extending by itself.
	lost.Store(true)
	extends.Store(0)
	stop = keepExtending(context.Background(), lease)
	time.Sleep(2*rebuildExtend + rebuildExtend/2)
	if got := extends.Load(); got != 1 {
		t.Errorf("a lost lease was extended %d times, want 1 try", got)
	}
	stop()
}
