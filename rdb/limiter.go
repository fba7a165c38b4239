package rdb

import (
	"context"
	"math"
	"strconv"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.Limiter = (*Limiter)(nil)

// Limiter is a set of token buckets in Redis shared by every instance, one
// hash per key, refilled from the Redis server's clock (TIME) so instances
// with skewed clocks agree. A bucket idle long enough to be full again
// expires, so Redis holds only the active keys.
type Limiter struct {
	c         *Client
	prefix    string
	perSecond float64
	burst     int
	idleMS    int64
}

// NewLimiter returns buckets refilling at perSecond tokens per second holding
// at most burst, under keys starting with prefix (use one prefix per kind of
// limit: "seckill:user:", "seckill:ip:"). perSecond <= 0 disables limiting:
// Allow always succeeds without asking Redis. It panics if prefix contains a
// brace.
func NewLimiter(c *Client, prefix string, perSecond float64, burst int) *Limiter {
	checkPrefix(prefix)
	if burst < 1 {
		burst = 1
	}
	l := &Limiter{c: c, prefix: prefix, perSecond: perSecond, burst: burst}
	if perSecond > 0 {
		// Time to refill completely, plus a second: a bucket gone this long
		// behaves exactly like a new one.
		l.idleMS = int64(math.Ceil(float64(burst)/perSecond*1000)) + 1000
	}
	return l
}

// takeTokenLua defines the bucket functions of the limiter's script and
// the gate's reserve and release scripts. bucket_tokens(key, now, rate,
// burst) is the bucket at key refilled by the time elapsed since its last
// use (now and the stamp in microseconds of the server's clock; a missing
// bucket is full). set_tokens(key, tokens, now, idle) stores it; it
// expires after idle ms without use, when it is full again.
// take_token(key, now, rate, burst, idle) takes one token if there is one
// and reports whether it did.
const takeTokenLua = `
local function bucket_tokens(key, now, rate, burst)
  local b = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if tokens == nil or ts == nil then
    return burst
  end
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
  end
  return tokens
end
local function set_tokens(key, tokens, now, idle)
  redis.call('HSET', key, 't', string.format('%.17g', tokens), 'ts', string.format('%d', now))
  redis.call('PEXPIRE', key, idle)
end
local function take_token(key, now, rate, burst, idle)
  local tokens = bucket_tokens(key, now, rate, burst)
  local ok = tokens >= 1
  if ok then tokens = tokens - 1 end
  set_tokens(key, tokens, now, idle)
  return ok
end
`

// allowScript: KEYS bucket; ARGV tokens per second, burst, idle ms. Takes
// a token of the bucket (take_token) and returns 1 if there was one, else 0.
var allowScript = redis.NewScript(takeTokenLua + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if take_token(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]) then return 1 end
return 0
`)

// Allow takes a token from key's bucket and reports whether there was one.
// EBusy when Redis cannot be reached.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, error) {
	if l.perSecond <= 0 {
		return true, nil
	}
	n, err := allowScript.Run(ctx, l.c.rdb, []string{l.prefix + "rl:" + key},
		strconv.FormatFloat(l.perSecond, 'g', -1, 64), l.burst, l.idleMS).Int64()
	if err != nil {
		return false, redisErr("allow", err)
	}
	return n == 1, nil
}
