package checkout

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// hangingSales is a SaleStore whose reads of the catalogue (Sales) and of
// one id (Sale of gap) hang until release is closed or their context ends:
// SQL that stopped answering (a blackholed server, a lock wait). fail makes
// every read fail at once instead (SQL down). It counts the reads.
type hangingSales struct {
	seckill.SaleStore
	gap      int64
	hang     atomic.Bool
	fail     atomic.Bool
	release  chan struct{}
	listings atomic.Int64
	reads    atomic.Int64
}

func (s *hangingSales) wait(ctx context.Context) error {
	if s.fail.Load() {
		return seckill.Errorf(seckill.EInternal, "sql down")
	}
	if !s.hang.Load() {
		return nil
	}
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *hangingSales) Sales(ctx context.Context) ([]*seckill.Sale, error) {
	s.listings.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	all, err := s.SaleStore.Sales(ctx)
	var out []*seckill.Sale
	for _, x := range all {
		if x.ID != s.gap {
			out = append(out, x)
		}
	}
	return out, err
}

func (s *hangingSales) Sale(ctx context.Context, id int64) (*seckill.Sale, error) {
	s.reads.Add(1)
	if id == s.gap || s.fail.Load() {
		if err := s.wait(ctx); err != nil {
			return nil, err
		}
	}
	if id == s.gap {
		return nil, seckill.Errorf(seckill.ENotFound, "sale %d", id)
	}
	return s.SaleStore.Sale(ctx, id)
}

// TestSaleDeadlineWhileAnotherReadHangs (review): a request for an id
// not in the cache waits on freshRead.mu, a sync.Mutex held by another
// request through its whole SQL read (and its relistEvery sleep). When
// that read hangs (SQL not answering; the other request's context has no
// deadline, as an HTTP request's has none), the waiting request ignores
// its own deadline and hangs too, for as long as the other one does.
// Before this change the per-id read ("gap", an id at most newest that SQL
// says is none) was each request's own, bounded by its own context; the
// listing ("above newest") already serialised on newestMu.
func TestSaleDeadlineWhileAnotherReadHangs(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   func(gap int64) int64
	}{
		{"gap", func(gap int64) int64 { return gap }},
		{"above newest", func(int64) int64 { return 1 << 40 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t)
			s1 := v.openSale(1)
			s2 := v.openSale(1)
			store := &hangingSales{SaleStore: v.db, gap: s1.ID, release: make(chan struct{})}
			// The gap: s1 is hidden from every read, below s2.
			bk := v.backends()
			bk.Sales = store
			e := v.recovered(Config{}, &bk)
			if _, err := e.Sale(context.Background(), s2.ID); err != nil { // newest = s2
				t.Fatal(err)
			}
			id := tc.id(s1.ID)
			if _, err := e.Sale(context.Background(), id); seckill.ErrorCode(err) != seckill.ENotFound {
				t.Fatalf("sale %d: %v, want not found", id, err)
			}
			time.Sleep(relistEvery) // the next request reads again at once
			store.hang.Store(true)
			first := make(chan struct{})
			go func() {
				defer close(first)
				_, _ = e.Sale(context.Background(), id) // no deadline: its read hangs
			}()
			time.Sleep(50 * time.Millisecond) // it holds the lock, in its read
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := e.Sale(ctx, id)
				done <- err
			}()
			answered := false
			select {
			case err := <-done:
				answered = true
				if !errors.Is(err, context.DeadlineExceeded) && seckill.ErrorCode(err) != seckill.ENotFound {
					t.Logf("answer: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Errorf("a request with a 100 ms deadline for sale %d is still waiting after %v: another request's hung read holds freshRead.mu",
					id, time.Since(start).Round(time.Millisecond))
			}
			close(store.release)
			<-first
			if !answered {
				<-done
			}
		})
	}
}

// TestInventedIDsWhileSQLFails (review): while SQL fails, a read that
// failed does not count toward relistEvery (freshRead.started moves only on
// success), so every request for an invented id lists the catalogue
// itself, then reads its id too (the fall-through after a failed listing),
// and the id is added to noSales although above newest. 100 requests, 200
// SQL attempts. (The code before this change did the same: pre-existing,
// but the SECURITY.md claim "costs no SQL read per request" does not hold
// while SQL fails.)
func TestInventedIDsWhileSQLFails(t *testing.T) {
	v := newEnv(t)
	s := v.openSale(1)
	store := &hangingSales{SaleStore: v.db, release: make(chan struct{})}
	bk := v.backends()
	bk.Sales = store
	e := v.recovered(Config{}, &bk)
	if _, err := e.Sale(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(relistEvery) // past the pacing of the listing above
	store.fail.Store(true)
	l0, r0 := store.listings.Load(), store.reads.Load()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() { _, _ = e.Sale(context.Background(), 1<<40+int64(i)) })
	}
	wg.Wait()
	l, r := store.listings.Load()-l0, store.reads.Load()-r0
	e.saleMu.Lock()
	n := len(e.noSales)
	e.saleMu.Unlock()
	t.Logf("100 requests for invented ids while SQL fails: %d listings, %d reads of an id, %d ids in noSales", l, r, n)
	if l+r > 20 {
		t.Errorf("100 requests for invented ids while SQL fails cost %d SQL attempts (%d listings, %d id reads); want them paced like successful reads", l+r, l, r)
	}
}
