package httpapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// TestCatalogCache: concurrent misses share one read, the list is read
// again only after catalogTTL (by an injected clock) or an invalidate, and
// a failed read is not cached (issue 12 item 12).
func TestCatalogCache(t *testing.T) {
	var loads atomic.Int64
	release := make(chan struct{})
	fail := false
	now := time.Unix(1000, 0)
	c := &catalog{now: func() time.Time { return now }, load: func(context.Context) ([]*seckill.Sale, error) {
		loads.Add(1)
		<-release
		if fail {
			return nil, errors.New("down")
		}
		return []*seckill.Sale{{ID: 1}}, nil
	}}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := c.get(ctx); err != nil || len(s) != 1 {
				t.Errorf("get: %v, %v", s, err)
			}
		}()
	}
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("100 concurrent gets read the catalogue %d times, want 1", n)
	}
	now = now.Add(catalogTTL - time.Millisecond)
	_, _ = c.get(ctx)
	if n := loads.Load(); n != 1 {
		t.Fatalf("within the TTL: %d reads", n)
	}
	now = now.Add(time.Millisecond)
	_, _ = c.get(ctx)
	if n := loads.Load(); n != 2 {
		t.Fatalf("after the TTL: %d reads, want 2", n)
	}
	c.invalidate()
	fail = true
	if _, err := c.get(ctx); err == nil {
		t.Fatal("failed read answered no error")
	}
	fail = false
	if s, err := c.get(ctx); err != nil || len(s) != 1 || loads.Load() != 4 {
		t.Fatalf("after a failed read: %v, %v, %d reads (want 4)", s, err, loads.Load())
	}
}
