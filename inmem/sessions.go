package inmem

import (
	"context"
	"fmt"
	"sync"
	"time"

	"seckill"
)

var (
	_ seckill.SessionStore   = (*SessionCache)(nil)
	_ seckill.SessionRevoker = (*SessionCache)(nil)
)

// SessionCache sits in front of a durable SessionStore and answers repeated
// lookups of the same token from memory for a short time, so the purchase
// hot path does not pay a store round trip per request. A logout on this
// instance takes effect at once; on another instance within the TTL (with
// Revalidate: within the TTL and one more request).
type SessionCache struct {
	store seckill.SessionStore
	ttl   time.Duration
	stale time.Duration // entries older than ttl and younger than this are served while refreshed
	max   int
	now   func() time.Time

	afterRefresh func() // test hook: a background lookup settled its entry

	mu      sync.Mutex
	entries map[string]cachedSession
	// deletes counts the deletions: a lookup that saw the store before a
	// deletion must not cache what it read, or a logout racing it would
	// be undone here.
	deletes uint64
}

type cachedSession struct {
	s          seckill.Session
	cached     time.Time
	refreshing bool // a background lookup is under way
}

// NewSessionCache caches at most max sessions of store for ttl each.
func NewSessionCache(store seckill.SessionStore, ttl time.Duration, max int) *SessionCache {
	return &SessionCache{store: store, ttl: ttl, max: max, now: time.Now, entries: make(map[string]cachedSession)}
}

// Revalidate lets the cache answer from an entry older than its TTL, up to
// upTo, while it looks the session up again in the background: a buyer
// whose tries are further apart than the TTL (in a crowd of thousands they
// are) no longer waits for the store on every try. A session deleted on
// another instance is then refused from the first request after the
// background lookup, instead of the first request after the TTL. It
// returns c.
func (c *SessionCache) Revalidate(upTo time.Duration) *SessionCache {
	c.stale = upTo
	return c
}

// CreateSession stores s in the backing store.
func (c *SessionCache) CreateSession(ctx context.Context, s seckill.Session) error {
	return c.store.CreateSession(ctx, s)
}

// Session answers from the cache when the entry is fresh and unexpired.
func (c *SessionCache) Session(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	now := c.now()
	key := string(tokenHash)
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.s.ExpiresAt) {
		age := now.Sub(e.cached)
		if age < c.ttl {
			s := e.s
			return &s, nil
		}
		if age < c.stale {
			c.refresh(key, tokenHash)
			s := e.s
			return &s, nil
		}
	}
	c.mu.Lock()
	deletes := c.deletes
	c.mu.Unlock()
	s, err := c.store.Session(ctx, tokenHash)
	if err != nil {
		c.forget(key)
		return nil, err
	}
	c.remember(key, *s, now, deletes)
	return s, nil
}

// TouchSession moves the expiry in the store and the cache; like the
// store, it leaves an expired session expired.
func (c *SessionCache) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	if err := c.store.TouchSession(ctx, tokenHash, expiresAt); err != nil {
		return err
	}
	key := string(tokenHash)
	now := c.now()
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		if now.Before(e.s.ExpiresAt) {
			e.s.ExpiresAt = expiresAt
			c.entries[key] = e
		} else {
			// The store leaves an expired session alone: so must the
			// cache, or the touch would bring it back to life here.
			delete(c.entries, key)
		}
	}
	c.mu.Unlock()
	return nil
}

// DeleteSession removes the session from the store and the cache. A
// lookup under way cannot bring it back into the cache: the entry is
// dropped after the store's deletion, and a lookup that started before it
// does not cache its answer.
func (c *SessionCache) DeleteSession(ctx context.Context, tokenHash []byte) error {
	c.forget(string(tokenHash))
	err := c.store.DeleteSession(ctx, tokenHash)
	c.mu.Lock()
	c.deletes++
	delete(c.entries, string(tokenHash))
	c.mu.Unlock()
	return err
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
	c.mu.Lock()
	c.deletes++
	for k, e := range c.entries {
		if e.s.UserID == userID {
			delete(c.entries, k)
		}
	}
	c.mu.Unlock()
	return hashes, err
}

// refresh looks the session up again in the background, once at a time per
// token. The answer replaces the entry only if it is still there: a logout
// meanwhile stays a logout.
func (c *SessionCache) refresh(key string, tokenHash []byte) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if !ok || e.refreshing {
		c.mu.Unlock()
		return
	}
	e.refreshing = true
	c.entries[key] = e
	c.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := c.store.Session(ctx, tokenHash)
		now := c.now()
		if c.afterRefresh != nil {
			defer c.afterRefresh()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.entries[key]; !ok {
			return
		}
		if err != nil {
			// Gone, or the store failed: the next request asks it itself.
			delete(c.entries, key)
			return
		}
		c.entries[key] = cachedSession{s: *s, cached: now}
	}()
}

func (c *SessionCache) forget(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// remember caches s, unless a deletion happened since the lookup began,
// when c.deletes was deletes.
func (c *SessionCache) remember(key string, s seckill.Session, now time.Time, deletes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deletes != deletes {
		return
	}
	if len(c.entries) >= c.max {
		// Drop stale entries first; if all are fresh, start over rather than
		// grow without bound (a miss only costs one store lookup).
		for k, e := range c.entries {
			if now.Sub(e.cached) >= max(c.ttl, c.stale) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			c.entries = make(map[string]cachedSession)
		}
	}
	c.entries[key] = cachedSession{s: s, cached: now}
}
