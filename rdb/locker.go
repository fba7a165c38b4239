package rdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.Locker = (*Locker)(nil)

// Locker hands out named locks with a lease, shared by every instance using
// the same Redis: SET NX PX with a random token, released by a
// compare-and-delete script so a holder whose lease expired cannot free the
// next holder's lock. On a single Redis (or one cluster master) the lease
// is as safe as that node: a failover that loses the key may let a second
// holder in, so jobs under the lock must stay safe to run twice.
type Locker struct {
	c      *Client
	prefix string
}

// NewLocker returns the lock table whose keys start with prefix. It panics
// if prefix contains a brace.
func NewLocker(c *Client, prefix string) *Locker {
	checkPrefix(prefix)
	return &Locker{c: c, prefix: prefix}
}

// unlockScript: KEYS lock; ARGV token. Deletes the lock only if the token
// is still the holder's; returns 1 if it did.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// extendScript: KEYS lock; ARGV token, ttl in ms. Sets the lock's TTL only
// if the token is still the holder's; returns 1 if it did.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// TryLock takes the named lock for ttl (at least a millisecond) if nobody
// holds it.
func (l *Locker) TryLock(ctx context.Context, name string, ttl time.Duration) (seckill.Lease, bool, error) {
	var rnd [16]byte
	rand.Read(rnd[:])
	token := hex.EncodeToString(rnd[:])
	key := l.prefix + "lock:" + name
	ttl = max(ttl, time.Millisecond)
	ok, err := l.c.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return seckill.Lease{}, false, redisErr("lock "+name, err)
	}
	if !ok {
		return seckill.Lease{}, false, nil
	}
	return seckill.Lease{
		Release: func(ctx context.Context) error {
			return redisErr("unlock "+name, unlockScript.Run(ctx, l.c.rdb, []string{key}, token).Err())
		},
		Extend: func(ctx context.Context, ttl time.Duration) (bool, error) {
			n, err := extendScript.Run(ctx, l.c.rdb, []string{key}, token, max(ttl, time.Millisecond).Milliseconds()).Int()
			return n == 1, redisErr("extend lock "+name, err)
		},
	}, true, nil
}
