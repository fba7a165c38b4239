package checkout

import (
	"sync"

	"seckill"
)

// resultMap remembers the latest outcome per (sale, user) on this instance.
// Results of other instances' purchases arrive through the result bus; a
// miss falls back to SQL.
type resultMap struct {
	shards [64]resultShard
}

type resultShard struct {
	mu sync.Mutex
	m  map[resultKey]resultEntry
}

type resultKey struct{ sale, user int64 }

type resultEntry struct {
	ticket string
	r      Result
}

func newResultMap() *resultMap {
	rm := &resultMap{}
	for i := range rm.shards {
		rm.shards[i].m = make(map[resultKey]resultEntry)
	}
	return rm
}

func (rm *resultMap) shard(k resultKey) *resultShard {
	return &rm.shards[uint64(k.user*31+k.sale)%uint64(len(rm.shards))]
}

// queue marks a purchase queued and returns the entry it replaced, for
// unqueue to put back if the publish fails.
func (rm *resultMap) queue(sale, user int64, ticket string) (prev resultEntry, had bool) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	prev, had = sh.m[k]
	// A failed earlier attempt may be retried; a success stays.
	if !had || prev.r.Status != seckill.ResultSuccess {
		sh.m[k] = resultEntry{ticket: ticket, r: Result{Status: seckill.ResultQueued}}
	}
	return prev, had
}

// unqueue undoes queue for a ticket whose publish failed, restoring what
// was there before, unless a result arrived meanwhile.
func (rm *resultMap) unqueue(sale, user int64, ticket string, prev resultEntry, had bool) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[k]; ok && e.ticket == ticket && e.r.Status == seckill.ResultQueued {
		if had {
			sh.m[k] = prev
		} else {
			delete(sh.m, k)
		}
	}
}

// settle records a terminal result; a success is never replaced by a later
// failure of a stray redelivery.
func (rm *resultMap) settle(r seckill.OrderResult) {
	k := resultKey{r.SaleID, r.UserID}
	sh := rm.shard(k)
	sh.mu.Lock()
	if e, ok := sh.m[k]; !ok || e.r.Status != seckill.ResultSuccess {
		sh.m[k] = resultEntry{ticket: r.Ticket, r: Result{Status: r.Status, OrderID: r.OrderID, Reason: r.Reason}}
	}
	sh.mu.Unlock()
}

func (rm *resultMap) get(sale, user int64) (Result, bool) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	e, ok := sh.m[k]
	sh.mu.Unlock()
	return e.r, ok
}
