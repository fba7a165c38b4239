package inmem

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"seckill"
)

var _ seckill.Limiter = (*Limiter)(nil)

const limiterShards = 64

// Limiter is a set of in-process token buckets, one per key, refilled at a
// fixed rate. Buckets idle long enough to be full again are dropped so the
// set stays bounded by the number of active keys.
type Limiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket unused this long is full: safe to forget
	seed  maphash.Seed
	now   func() time.Time
	shard [limiterShards]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// NewLimiter returns buckets refilling at perSecond tokens per second holding
// at most burst. perSecond <= 0 disables limiting: Allow always succeeds.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return NewLimiterClock(perSecond, burst, time.Now)
}

// NewLimiterClock is NewLimiter on the clock now (the gate's buckets
// refill by the gate's clock; tests move theirs).
func NewLimiterClock(perSecond float64, burst int, now func() time.Time) *Limiter {
	if burst < 1 {
		burst = 1
	}
	l := &Limiter{limit: rate.Limit(perSecond), burst: burst, seed: maphash.MakeSeed(), now: now}
	if perSecond > 0 {
		l.idle = time.Duration(float64(burst)/perSecond*float64(time.Second)) + time.Second
	}
	for i := range l.shard {
		l.shard[i].buckets = make(map[string]*bucket)
	}
	return l
}

// Allow takes a token from key's bucket.
func (l *Limiter) Allow(_ context.Context, key string) (bool, error) {
	if l.limit <= 0 {
		return true, nil
	}
	now := l.now()
	sh := &l.shard[maphash.String(l.seed, key)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if now.Sub(sh.swept) > l.idle {
			sh.sweep(now, l.idle)
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		sh.buckets[key] = b
	}
	b.used = now
	return b.lim.AllowN(now, 1), nil
}

// hasToken reports whether the bucket of user id (as Allow's key) holds a
// token, taking none and keeping no bucket for a key it does not know
// (whose bucket is full).
func (l *Limiter) hasToken(id int64) bool {
	if l.limit <= 0 {
		return true
	}
	key := strconv.FormatInt(id, 10)
	now := l.now()
	sh := &l.shard[maphash.String(l.seed, key)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	return b == nil || b.lim.TokensAt(now) >= 1
}

// take takes a token of the bucket of user id, if it has one.
func (l *Limiter) take(id int64) {
	_, _ = l.Allow(context.Background(), strconv.FormatInt(id, 10))
}

// sweep drops buckets that have refilled completely; they behave exactly like
// new ones.
func (sh *limiterShard) sweep(now time.Time, idle time.Duration) {
	for k, b := range sh.buckets {
		if now.Sub(b.used) > idle {
			delete(sh.buckets, k)
		}
	}
	sh.swept = now
}
