package inmem

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"seckill"
)

var (
	_ seckill.SessionStore   = (*SessionCache)(nil)
	_ seckill.SessionRevoker = (*SessionCache)(nil)
)

// SessionCache sits in front of a durable SessionStore and answers repeated
// lookups of the same token from memory, so the purchase hot path does not
// pay a store round trip per request.
//
// An entry is served for at most the TTL after the store was read for it
// (or the session was created here); past that the store is asked again
// before anything is answered. A logout or revocation on this instance
// takes effect at once. Another instance's reaches this cache through
// Evict (a revocation broadcast, e.g. rdb.Sessions.FollowRevocations) at
// once, or, if that is lost, through the TTL: the TTL is the bound.
// Where the broadcast cannot lose one while it is followed (a single
// Redis), LongerWhileFollowed gives the entries read while it was a longer
// TTL: Followed says it is, Reset that it no longer is.
//
// The entries are spread over shards, each under its own lock, and their
// number never exceeds the size given to NewSessionCache. An entry is 32
// bytes of key and 32 of value with no pointer in either: a million of
// them take about 150 MB (BenchmarkSessionCacheMemory; 332 MB as whole
// sessions keyed by strings), and the garbage collector never scans them.
type SessionCache struct {
	store        seckill.SessionStore
	ttl          time.Duration
	refreshAfter time.Duration // hits on entries older than this refresh them in the background; 0: never
	// followedTTL and followedRefresh replace ttl and refreshAfter for
	// entries read while following was true (LongerWhileFollowed).
	followedTTL, followedRefresh time.Duration
	following                    atomic.Bool
	now                          func() time.Time
	base                         time.Time // entries' read times count from here (since)
	seed                         maphash.Seed
	shards                       []sessionShard

	afterRefresh func() // test hook: a background lookup settled its entry
}

type sessionShard struct {
	mu      sync.Mutex
	entries map[sessionKey]cachedSession
	max     int
	// deletes counts the deletions in this shard: a lookup that saw the
	// store before a deletion must not cache what it read, or a logout
	// racing it would be undone here.
	deletes uint64
}

// sessionKey is a token hash as the map's key: the hash itself when it is
// 32 bytes (account.HashToken's SHA-256), else its SHA-256 (hashed). A
// hash X and the 32-byte SHA-256(X) have the same key: the entry's hashed
// flag tells them apart, so neither is ever answered as the other.
type sessionKey [32]byte

func keyOf(tokenHash []byte) (key sessionKey, hashed bool) {
	if len(tokenHash) == len(sessionKey{}) {
		return sessionKey(tokenHash), false
	}
	return sha256.Sum256(tokenHash), true
}

// cachedSession is a session without its token hash (the key, or the
// caller's): its expiry in Unix seconds and nanoseconds (any time.Time
// round-trips), when it was read as a monotonic offset from the cache's
// base (a wall clock stepped back must not stretch the TTL), its role as an
// index in cachedRoles.
type cachedSession struct {
	userID     int64
	expSec     int64
	cached     int64 // when the store was read (before the read began): ns since SessionCache.base
	expNsec    int32
	role       uint8
	hashed     bool // the key is the SHA-256 of a hash of another length (keyOf)
	followed   bool // read while the broadcast was followed: followedTTL
	refreshing bool // a background lookup is under way
}

// cachedRoles are the roles an entry can hold (and none, as some stores'
// tests give); a session of any other is not cached.
var cachedRoles = [...]seckill.Role{seckill.RoleBuyer, seckill.RoleAdmin, ""}

// entryOf is s as an entry read at now (stamped by c.since); ok is false
// for a role not in cachedRoles.
func (c *SessionCache) entryOf(s *seckill.Session, hashed bool, now time.Time, followed bool) (e cachedSession, ok bool) {
	for i, r := range cachedRoles {
		if r == s.Role {
			return cachedSession{userID: s.UserID, expSec: s.ExpiresAt.Unix(), expNsec: int32(s.ExpiresAt.Nanosecond()),
				cached: c.since(now), role: uint8(i), hashed: hashed, followed: followed}, true
		}
	}
	return cachedSession{}, false
}

// since is now as nanoseconds since the cache's base: monotonic when both
// come from time.Now.
func (c *SessionCache) since(now time.Time) int64 { return int64(now.Sub(c.base)) }

func (e cachedSession) expiry() time.Time { return time.Unix(e.expSec, int64(e.expNsec)).UTC() }

// session is e as the session with tokenHash.
func (e cachedSession) session(tokenHash []byte) *seckill.Session {
	return &seckill.Session{TokenHash: tokenHash, UserID: e.userID, Role: cachedRoles[e.role], ExpiresAt: e.expiry()}
}

// serves reports whether e may be answered at now: the session unexpired
// and read less than its TTL ago; age is how long ago it was read.
func (c *SessionCache) serves(e cachedSession, now time.Time) (age time.Duration, ok bool) {
	ttl, _ := c.bounds(e)
	age = time.Duration(c.since(now) - e.cached)
	return age, now.Before(e.expiry()) && age >= 0 && age < ttl
}

// bounds is e's TTL and refresh age.
func (c *SessionCache) bounds(e cachedSession) (ttl, refreshAfter time.Duration) {
	if e.followed {
		return c.followedTTL, c.followedRefresh
	}
	return c.ttl, c.refreshAfter
}

// LongerWhileFollowed serves an entry read while the revocation broadcast
// was followed (from Followed to the next Reset) for ttl, refreshing it
// after refreshAfter (0: never), instead of the cache's own TTL and
// RefreshAfter: for a broadcast that loses nothing while it is followed.
// Entries read while it was not keep the shorter bounds, for good. It
// returns c.
func (c *SessionCache) LongerWhileFollowed(ttl, refreshAfter time.Duration) *SessionCache {
	c.followedTTL, c.followedRefresh = ttl, refreshAfter
	return c
}

// Followed says that the revocation broadcast is followed from now on:
// called after the Reset that its (re)confirmed subscription makes.
// Without LongerWhileFollowed it changes nothing.
func (c *SessionCache) Followed() {
	c.following.Store(c.followedTTL > 0)
}

// followedNow is whether a lookup starting now reads a session for the
// longer TTL; the caller read its shard's deletes before (see Reset).
func (c *SessionCache) followedNow() bool { return c.following.Load() }

// sessionShards is how many shards a large cache has; a cache too small
// for sessionShards × minShardSize entries has one.
const (
	sessionShards = 16
	minShardSize  = 64
)

// NewSessionCache caches at most size sessions of store, for ttl each.
func NewSessionCache(store seckill.SessionStore, ttl time.Duration, size int) *SessionCache {
	n := 1
	if size >= sessionShards*minShardSize {
		n = sessionShards
	}
	c := &SessionCache{store: store, ttl: ttl, now: time.Now, base: time.Now(), seed: maphash.MakeSeed(), shards: make([]sessionShard, n)}
	for i := range c.shards {
		c.shards[i] = sessionShard{entries: make(map[sessionKey]cachedSession), max: max(size/n, 1)}
	}
	return c
}

// RefreshAfter makes a hit on an entry older than d (and younger than the
// TTL, so still served) look the session up again in the background: a
// buyer who keeps sending requests never waits for the store, and a
// session deleted elsewhere is refused from the first request after that
// lookup, without waiting for the TTL. It returns c.
func (c *SessionCache) RefreshAfter(d time.Duration) *SessionCache {
	c.refreshAfter = d
	return c
}

func (c *SessionCache) shard(key sessionKey) *sessionShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.Bytes(c.seed, key[:])%uint64(len(c.shards))]
}

// CreateSession stores s in the backing store and caches it: a buyer's
// first request after logging in on this instance costs no lookup.
func (c *SessionCache) CreateSession(ctx context.Context, s seckill.Session) error {
	key, hashed := keyOf(s.TokenHash)
	sh := c.shard(key)
	now := c.now()
	deletes := sh.deletesNow()
	followed := c.followedNow()
	if err := c.store.CreateSession(ctx, s); err != nil {
		return err
	}
	c.remember(sh, key, hashed, &s, now, deletes, followed)
	return nil
}

// Session answers from the cache when the entry is younger than the TTL
// and the session unexpired, else from the store.
func (c *SessionCache) Session(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	now := c.now()
	key, hashed := keyOf(tokenHash)
	sh := c.shard(key)
	sh.mu.Lock()
	e, ok := sh.entries[key]
	deletes := sh.deletes
	sh.mu.Unlock()
	if ok && e.hashed == hashed {
		if age, serves := c.serves(e, now); serves {
			if _, refreshAfter := c.bounds(e); refreshAfter > 0 && age >= refreshAfter && !e.refreshing {
				c.refresh(sh, key, hashed, tokenHash)
			}
			return e.session(tokenHash), nil
		}
	}
	followed := c.followedNow()
	s, err := c.store.Session(ctx, tokenHash)
	if err != nil {
		sh.forget(key)
		return nil, err
	}
	c.remember(sh, key, hashed, s, now, deletes, followed)
	return s, nil
}

// Known reports whether the cache holds an entry for tokenHash, served
// or stale: a token that was a session's when it was last read here (a
// deletion here, or announced to here, drops its entry). It asks no
// store.
func (c *SessionCache) Known(tokenHash []byte) bool {
	key, hashed := keyOf(tokenHash)
	sh := c.shard(key)
	sh.mu.Lock()
	e, ok := sh.entries[key]
	sh.mu.Unlock()
	return ok && e.hashed == hashed
}

// TouchSession moves the expiry in the store and the cache; like the
// store, it leaves an expired session expired.
func (c *SessionCache) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	if err := c.store.TouchSession(ctx, tokenHash, expiresAt); err != nil {
		return err
	}
	key, hashed := keyOf(tokenHash)
	sh := c.shard(key)
	now := c.now()
	sh.mu.Lock()
	if e, ok := sh.entries[key]; ok && e.hashed == hashed {
		if now.Before(e.expiry()) {
			e.expSec, e.expNsec = expiresAt.Unix(), int32(expiresAt.Nanosecond())
			sh.entries[key] = e
		} else {
			// The store leaves an expired session alone: so must the
			// cache, or the touch would bring it back to life here.
			delete(sh.entries, key)
		}
	}
	sh.mu.Unlock()
	return nil
}

// DeleteSession removes the session from the store and the cache. A
// lookup under way cannot bring it back into the cache: the entry is
// dropped after the store's deletion, and a lookup that started before it
// does not cache its answer.
func (c *SessionCache) DeleteSession(ctx context.Context, tokenHash []byte) error {
	key, _ := keyOf(tokenHash)
	sh := c.shard(key)
	sh.forget(key)
	err := c.store.DeleteSession(ctx, tokenHash)
	sh.evict(key)
	return err
}

// UserSessions asks the store behind, which must be a
// seckill.SessionRevoker.
func (c *SessionCache) UserSessions(ctx context.Context, userID int64) ([][]byte, error) {
	r, ok := c.store.(seckill.SessionRevoker)
	if !ok {
		return nil, fmt.Errorf("session cache: the store behind it cannot list a user's sessions")
	}
	return r.UserSessions(ctx, userID)
}

// DeleteUserSessions removes every session of the user from the store,
// which must be a seckill.SessionRevoker (else an internal error), and
// from the cache.
func (c *SessionCache) DeleteUserSessions(ctx context.Context, userID int64) ([][]byte, error) {
	r, ok := c.store.(seckill.SessionRevoker)
	if !ok {
		return nil, fmt.Errorf("session cache: the store behind it cannot end a user's sessions")
	}
	hashes, err := r.DeleteUserSessions(ctx, userID)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.deletes++
		for k, e := range sh.entries {
			if e.userID == userID {
				delete(sh.entries, k)
			}
		}
		sh.mu.Unlock()
	}
	return hashes, err
}

// Evict drops the session from the cache (not from the store): another
// instance deleted it. A lookup under way does not cache its answer.
func (c *SessionCache) Evict(tokenHash []byte) {
	key, _ := keyOf(tokenHash)
	c.shard(key).evict(key)
}

// Reset drops every entry (not from the store), and no lookup under way
// caches its answer: the revocations of other instances may have been
// missed (the broadcast that brings them was cut). The broadcast is not
// followed until Followed: entries read meanwhile keep the shorter TTL.
func (c *SessionCache) Reset() {
	// Before the shards' deletes move: a lookup that read its shard's
	// deletes after this Reset went by sees following false (or true from
	// a later Followed), and one that read them before does not cache.
	c.following.Store(false)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.deletes++
		clear(sh.entries)
		sh.mu.Unlock()
	}
}

// Len is the number of entries cached (for tests and metrics).
func (c *SessionCache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// refresh looks the session up again in the background, once at a time per
// token. The answer replaces the entry only if no deletion happened in its
// shard meanwhile: a logout stays a logout.
func (c *SessionCache) refresh(sh *sessionShard, key sessionKey, hashed bool, tokenHash []byte) {
	sh.mu.Lock()
	e, ok := sh.entries[key]
	if !ok || e.hashed != hashed || e.refreshing {
		sh.mu.Unlock()
		return
	}
	e.refreshing = true
	sh.entries[key] = e
	deletes := sh.deletes
	sh.mu.Unlock()
	followed := c.followedNow()
	tokenHash = append([]byte(nil), tokenHash...)
	go func() {
		if c.afterRefresh != nil {
			defer c.afterRefresh()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		now := c.now()
		s, err := c.store.Session(ctx, tokenHash)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		e, ok := sh.entries[key]
		switch {
		case !ok || e.hashed != hashed:
			// Gone, or now the other hash of this key's (keyOf).
		case err != nil:
			// Gone, or the store failed: the next request asks it itself.
			delete(sh.entries, key)
		case sh.deletes != deletes:
			// A deletion may have overtaken this read: keep what is there.
			e.refreshing = false
			sh.entries[key] = e
		default:
			if ne, ok := c.entryOf(s, hashed, now, followed); ok {
				sh.entries[key] = ne
			} else {
				delete(sh.entries, key)
			}
		}
	}()
}

func (sh *sessionShard) deletesNow() uint64 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.deletes
}

func (sh *sessionShard) forget(key sessionKey) {
	sh.mu.Lock()
	delete(sh.entries, key)
	sh.mu.Unlock()
}

func (sh *sessionShard) evict(key sessionKey) {
	sh.mu.Lock()
	sh.deletes++
	delete(sh.entries, key)
	sh.mu.Unlock()
}

// remember caches s, read at now, unless a deletion happened in the shard
// since the lookup began, when sh.deletes was deletes. A full shard first
// drops the entries it would no longer serve, then, if it is still full, a
// quarter of the others (Go's map order is random enough): a miss costs one
// store lookup, and dropping them all at once would make a crowd's next
// requests all miss together.
func (c *SessionCache) remember(sh *sessionShard, key sessionKey, hashed bool, s *seckill.Session, now time.Time, deletes uint64, followed bool) {
	e, ok := c.entryOf(s, hashed, now, followed)
	if !ok {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.deletes != deletes {
		return
	}
	if _, ok := sh.entries[key]; !ok && len(sh.entries) >= sh.max {
		for k, old := range sh.entries {
			if _, serves := c.serves(old, now); !serves {
				delete(sh.entries, k)
			}
		}
		for k := range sh.entries {
			if len(sh.entries) < sh.max-sh.max/4 {
				break
			}
			delete(sh.entries, k)
		}
	}
	sh.entries[key] = e
}
