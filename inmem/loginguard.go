package inmem

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"seckill"
)

var _ seckill.LoginGuard = (*LoginGuard)(nil)

// LoginGuard is the back-off of failed logins kept in this process (a
// single instance). Keys with no attempt for the policy's Forget are
// dropped, and at most MaxGuardKeys are kept: past it, keys still within
// their free tries go first, the ones tried longest ago before the
// others. Without the bound, logins of made-up phones from many addresses
// kept a record each for a day (a phone's Forget), a few hundred MB at the
// pace hashing allows. A key in back-off goes only when the whole shard is
// in back-off: a flood of one wrong try per made-up phone, however long,
// cannot reset a phone under attack (a key waiting out its back-off is not
// touched by the tries it refuses, so by age alone it would be the first
// to go: found by review).
type LoginGuard struct {
	policy seckill.Backoff
	now    func() time.Time
	seed   maphash.Seed
	max    int // keys per shard
	shard  [limiterShards]guardShard
}

// MaxGuardKeys bounds the keys a LoginGuard keeps: about 100 MB of them.
const MaxGuardKeys = 1 << 20

type guardShard struct {
	mu    sync.Mutex
	keys  map[string]attempts
	swept time.Time
}

// attempts is what a key has on record: n attempts, the last at last.
type attempts struct {
	n    int
	last time.Time
}

// NewLoginGuard returns an empty guard with policy p. A Forget shorter
// than Max is raised to Max: forgetting a key sooner would cut its wait.
func NewLoginGuard(p seckill.Backoff) *LoginGuard {
	return NewLoginGuardClock(p, time.Now)
}

// NewLoginGuardClock is NewLoginGuard on the clock now (for tests).
func NewLoginGuardClock(p seckill.Backoff, now func() time.Time) *LoginGuard {
	p.Forget = max(p.Forget, p.Max)
	g := &LoginGuard{policy: p, now: now, seed: maphash.MakeSeed(), max: MaxGuardKeys / limiterShards}
	for i := range g.shard {
		g.shard[i].keys = make(map[string]attempts)
	}
	return g
}

func (g *LoginGuard) shardOf(key string) *guardShard {
	return &g.shard[maphash.String(g.seed, key)%limiterShards]
}

// Attempt records an attempt of key unless key must still wait.
func (g *LoginGuard) Attempt(_ context.Context, key string) (int, time.Duration, error) {
	now := g.now()
	sh := g.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.swept) > g.policy.Forget {
		for k, a := range sh.keys {
			if now.Sub(a.last) >= g.policy.Forget {
				delete(sh.keys, k)
			}
		}
		sh.swept = now
	}
	a := sh.keys[key]
	if a.n > 0 && now.Sub(a.last) >= g.policy.Forget {
		a = attempts{}
	}
	if a.n > 0 {
		if next := a.last.Add(g.policy.Delay(a.n)); now.Before(next) {
			return a.n, next.Sub(now), nil
		}
	}
	if _, known := sh.keys[key]; !known && len(sh.keys) >= g.max {
		sh.evict(g.max, g.policy.Free)
	}
	sh.keys[key] = attempts{n: a.n + 1, last: now}
	return a.n, 0, nil
}

// evict makes room for a quarter of max in a full shard: it drops the keys
// with no more than free attempts first (no back-off in effect), then the
// ones tried longest ago. It sorts the whole shard, so it frees a quarter
// at a time rather than one key per new one. Called with sh.mu held.
func (sh *guardShard) evict(max, free int) {
	type entry struct {
		key     string
		waiting bool
		last    time.Time
	}
	all := make([]entry, 0, len(sh.keys))
	for k, a := range sh.keys {
		all = append(all, entry{k, a.n > free, a.last})
	}
	slices.SortFunc(all, func(a, b entry) int {
		if a.waiting != b.waiting {
			if a.waiting {
				return 1
			}
			return -1
		}
		return a.last.Compare(b.last)
	})
	for _, e := range all[:len(all)-(max-max/4)] {
		delete(sh.keys, e.key)
	}
}

// Succeeded takes back one attempt of key, or all of them with reset.
func (g *LoginGuard) Succeeded(_ context.Context, key string, reset bool) error {
	sh := g.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a, ok := sh.keys[key]
	switch {
	case !ok:
	case reset || a.n <= 1:
		delete(sh.keys, key)
	default:
		a.n--
		sh.keys[key] = a
	}
	return nil
}
