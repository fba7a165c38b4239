package checkout

import (
	"sync"
	"time"

	"seckill"
)

// resultMap remembers the latest outcome per (sale, user) on this instance.
// Results of other instances' purchases arrive through the result bus; a
// miss falls back to SQL. Every instance hears every result, so successes,
// which SQL answers as well, are forgotten after keepSuccess: the map holds
// what is queued, what failed (SQL has no trace of a refusal) and the
// successes of the last minute, not every buyer of every sale. A sale's
// results go altogether when it leaves the gate (Engine.ForgetEnded).
type resultMap struct {
	shards [64]resultShard
	now    func() time.Time
}

// keepSuccess is how long a success stays in the map; sweepEvery is how
// often a shard looks for old ones, when a result arrives.
const (
	keepSuccess = time.Minute
	sweepEvery  = 10 * time.Second
)

type resultShard struct {
	mu    sync.Mutex
	m     map[resultKey]resultEntry
	swept time.Time
}

type resultKey struct{ sale, user int64 }

type resultEntry struct {
	ticket string
	r      Result
	at     time.Time // when a success was recorded
}

func newResultMap() *resultMap {
	rm := &resultMap{now: time.Now}
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
	now := rm.now()
	sh.mu.Lock()
	if e, ok := sh.m[k]; !ok || e.r.Status != seckill.ResultSuccess {
		sh.m[k] = resultEntry{ticket: r.Ticket, r: Result{Status: r.Status, OrderID: r.OrderID, Reason: r.Reason}, at: now}
	}
	if now.Sub(sh.swept) >= sweepEvery {
		sh.swept = now
		for k, e := range sh.m {
			if e.r.Status == seckill.ResultSuccess && now.Sub(e.at) > keepSuccess {
				delete(sh.m, k)
			}
		}
	}
	sh.mu.Unlock()
}

// forgetSale drops every result of the sale (one that ended long ago):
// a buyer then learns from SQL whether they have an order.
func (rm *resultMap) forgetSale(sale int64) {
	for i := range rm.shards {
		sh := &rm.shards[i]
		sh.mu.Lock()
		for k := range sh.m {
			if k.sale == sale {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

func (rm *resultMap) get(sale, user int64) (Result, bool) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	e, ok := sh.m[k]
	sh.mu.Unlock()
	return e.r, ok
}
