package rdb

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.LoginGuard = (*LoginGuard)(nil)

// LoginGuard is the back-off of failed logins in Redis, shared by every
// instance: one hash per key (n attempts, the last at ts), timed by the
// Redis server's clock (TIME) so instances with skewed clocks agree, and
// expiring after the policy's Forget.
type LoginGuard struct {
	c      *Client
	prefix string
	policy seckill.Backoff
}

// NewLoginGuard returns the guard with policy p whose keys start with
// prefix (one prefix per kind of key: "seckill:login-phone:"). A Forget
// shorter than Max is raised to Max. It panics if prefix contains a brace.
func NewLoginGuard(c *Client, prefix string, p seckill.Backoff) *LoginGuard {
	checkPrefix(prefix)
	p.Forget = max(p.Forget, p.Max)
	return &LoginGuard{c: c, prefix: prefix, policy: p}
}

// attemptScript: KEYS record; ARGV free, base µs, max µs, forget ms.
// Returns {attempts on record before, µs still to wait}. A key that must
// still wait is left as it is; otherwise the attempt is recorded.
var attemptScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local free = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local maxw = tonumber(ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'n', 'ts')
local n = tonumber(r[1]) or 0
local ts = tonumber(r[2]) or 0
if n > 0 and n >= free and base > 0 then
  local delay = math.min(maxw, base * 2 ^ (n - free))
  if now < ts + delay then
    return {n, ts + delay - now}
  end
end
redis.call('HSET', KEYS[1], 'n', n + 1, 'ts', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {n, 0}
`)

// succeededScript: KEYS record. Takes back one attempt; the record goes
// when none is left.
var succeededScript = redis.NewScript(`
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if n == nil then return 0 end
if n <= 1 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'n', n - 1)
end
return 0
`)

func (g *LoginGuard) key(k string) string { return g.prefix + k }

// Attempt records an attempt of key unless key must still wait. EBusy when
// Redis cannot be reached.
func (g *LoginGuard) Attempt(ctx context.Context, key string) (int, time.Duration, error) {
	p := g.policy
	v, err := attemptScript.Run(ctx, g.c.rdb, []string{g.key(key)},
		p.Free, p.Base.Microseconds(), p.Max.Microseconds(), p.Forget.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, redisErr("login attempt", err)
	}
	if len(v) != 2 {
		return 0, 0, redisErr("login attempt", redis.Nil)
	}
	return int(v[0]), time.Duration(v[1]) * time.Microsecond, nil
}

// Succeeded takes back one attempt of key, or all of them with reset.
// EBusy when Redis cannot be reached.
func (g *LoginGuard) Succeeded(ctx context.Context, key string, reset bool) error {
	if reset {
		return redisErr("login succeeded", g.c.rdb.Del(ctx, g.key(key)).Err())
	}
	return redisErr("login succeeded", succeededScript.Run(ctx, g.c.rdb, []string{g.key(key)}).Err())
}
