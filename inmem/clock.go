package inmem

import (
	"time"

	"seckill"
)

// NewSessionCacheClock is NewSessionCache on the clock now, which ages the
// cached entries and decides whether a session expired (tests inject a
// clock; give the backing store the same one).
func NewSessionCacheClock(store seckill.SessionStore, ttl time.Duration, max int, now func() time.Time) *SessionCache {
	c := NewSessionCache(store, ttl, max)
	c.now, c.base = now, now()
	return c
}
