package httpapi

import (
	"context"
	"sync"
	"time"

	"seckill"
)

// catalogTTL is how long GET /api/sales answers from the cached list of
// sales. Statuses and stock_left are computed per request from the engine
// (they may lag about a second anyway, api.md); only the SQL read of the
// whole catalogue is cached.
const catalogTTL = time.Second

// catalog caches the list of sales for catalogTTL and coalesces concurrent
// misses into one read: an unauthenticated flood of GET /api/sales costs
// the database one query per second per instance, not one per request.
type catalog struct {
	load func(ctx context.Context) ([]*seckill.Sale, error)
	now  func() time.Time

	mu      sync.Mutex
	sales   []*seckill.Sale
	at      time.Time     // when sales was read; zero: nothing cached
	loading chan struct{} // closed when the read under way ends; nil if none
	err     error         // the error of the last read, for its waiters
	gen     uint64        // bumped by invalidate: a read begun before it is not cached
}

// get returns the cached sales, reading them when the cache is older than
// catalogTTL. Concurrent callers share one read; a failed read is returned
// to those that waited for it and not cached. A caller whose context ends
// while waiting gets its error.
func (c *catalog) get(ctx context.Context) ([]*seckill.Sale, error) {
	for {
		c.mu.Lock()
		if !c.at.IsZero() && c.now().Sub(c.at) < catalogTTL {
			sales := c.sales
			c.mu.Unlock()
			return sales, nil
		}
		if wait := c.loading; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		done := make(chan struct{})
		c.loading, c.err = done, nil
		gen := c.gen
		c.mu.Unlock()

		// The read outlives a caller that gives up: others wait on it.
		sales, err := c.load(context.WithoutCancel(ctx))
		c.mu.Lock()
		c.loading, c.err = nil, err
		if err == nil && gen == c.gen {
			c.sales, c.at = sales, c.now()
		}
		c.mu.Unlock()
		close(done)
		return sales, err
	}
}

// invalidate drops the cached list (a sale was created here), so this
// instance shows it at once; others within catalogTTL.
func (c *catalog) invalidate() {
	c.mu.Lock()
	c.at, c.sales = time.Time{}, nil
	c.gen++
	c.mu.Unlock()
}
