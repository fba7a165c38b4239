package rdb

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/redis/go-redis/v9"

	"seckill"
)

// Reservations of one sale that arrive together share one script: in a
// crowd the sale's master runs the script's fixed part (the epoch check,
// the stock read, the clock, the writes of the units taken) once for many
// buyers instead of once each, and a hot sale lives on one master (its
// keys share one hash tag), whose single core bounds how fast it sells.
// The first caller of a sale with no script on its way starts a goroutine
// that runs scripts until none waits; callers arriving meanwhile wait for
// the next. Semantics are those of one script per
// reservation, run in the order the callers joined.

// maxReserveBatch bounds the reservations of one script, so that one
// script never stalls the server for long (about 10 µs each).
const maxReserveBatch = 256

// reserveRunners is how many scripts of one sale may be on their way at
// once: two overlap one's round trip with the other's run on the server.
const reserveRunners = 2

// reserveKey groups the reservations one script can carry: one sale, one
// purchase bucket.
type reserveKey struct {
	sale  int64
	rate  float64
	burst int
}

// idleMS is how long an unused bucket lives: the time to refill
// completely, plus a second, after which it behaves exactly like a new one.
func (k reserveKey) idleMS() int64 {
	if k.rate <= 0 {
		return 0
	}
	return int64(math.Ceil(float64(k.burst)/k.rate*1000)) + 1000
}

// reserveCall is one Reserve waiting for its script.
type reserveCall struct {
	ctx          context.Context
	user, ticket string
	res          int64 // the script's answer for this call, when err is nil
	err          error
	done         chan struct{} // closed once res or err is set
}

// reserveQueue is a sale's reservations waiting for a script, and how many
// scripts are on their way.
type reserveQueue struct {
	pending []*reserveCall
	running int
}

// reserveScript: KEYS stock, buyers, resv, epoch, then the bucket of each
// user when the rate is above 0; ARGV tokens per second, burst, bucket idle
// ms, then user id and ticket of each reservation. Returns -1 if the sale
// is not loaded. Else, for each reservation in order, what one reserve
// would answer (seckill.StockGate.Reserve): with a rate above 0, 4
// (Limited) if the user's bucket of the sale has no token (refilled by the
// time elapsed on the server's clock since its last use; a missing bucket
// is full; it expires after idle ms unused, when it is full again). Then 2
// (Duplicate) if the user is a buyer (or reserved earlier in this script),
// 3 (SoldOut) if no unit is left, either taking a token; else takes a
// unit, records the buyer and the reservation and answers 1 (Reserved),
// the bucket untouched. The numbers are seckill.GateResult's.
// Reservations are stamped with the server's TIME (in nanoseconds, see
// encodeReservation): every instance's reconciler ages them on that one
// clock (Redis 5+ replicates a script's effects, so a script may read TIME
// before it writes). Buckets share the sale's hash tag, so the script
// stays in one slot on a Cluster.
var reserveScript = redis.NewScript(takeTokenLua + promotedLua(4) + `
local left = redis.call('GET', KEYS[1])
if not left then return -1 end
left = tonumber(left)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = t[1] .. string.format('%06d', tonumber(t[2])) .. '000 '
local rate, burst, idle = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out, buyers, resv, seen = {}, {}, {}, {}
for i = 1, (#ARGV - 3) / 2 do
  local user = ARGV[2 * i + 2]
  local tokens = rate > 0 and bucket_tokens(KEYS[4 + i], now, rate, burst)
  if tokens and tokens < 1 then
    out[i] = 4
  else
    if seen[user] or redis.call('SISMEMBER', KEYS[2], user) == 1 then
      out[i] = 2
    elseif left <= 0 then
      out[i] = 3
    else
      left = left - 1
      seen[user] = true
      buyers[#buyers + 1] = user
      resv[#resv + 1] = user
      resv[#resv + 1] = stamp .. ARGV[2 * i + 3]
      out[i] = 1
    end
    if tokens and out[i] ~= 1 then
      set_tokens(KEYS[4 + i], tokens - 1, now, idle)
    end
  end
end
if #buyers > 0 then
  redis.call('DECRBY', KEYS[1], #buyers)
  redis.call('SADD', KEYS[2], unpack(buyers))
  redis.call('HSET', KEYS[3], unpack(resv))
end
return out
`)

// Reserve joins the sale's next reserve script (see above): Duplicate,
// SoldOut, Limited or Reserved; EBusy if the sale is not loaded or Redis
// cannot be reached. A caller whose ctx ends while it waits gets an error
// at once; its reservation, if the script was sent already, is settled
// like any other whose publish never came (the reconciler releases it):
// checkout.Engine.Admit therefore never cancels it.
func (g *Gate) Reserve(ctx context.Context, r seckill.Reservation) (seckill.GateResult, error) {
	if err := g.fresh(ctx, r.SaleID); err != nil {
		return 0, err
	}
	key := reserveKey{sale: r.SaleID, burst: max(r.Limit.Burst, 1)}
	if r.Limit.PerSecond > 0 {
		key.rate = r.Limit.PerSecond
		if v, ok := g.buckets.Load(r.SaleID); !ok || v.(reserveKey) != key {
			g.buckets.Store(r.SaleID, key) // for Release
		}
	}
	c := &reserveCall{ctx: ctx, user: strconv.FormatInt(r.UserID, 10), ticket: r.Ticket, done: make(chan struct{})}
	g.resvMu.Lock()
	q := g.resv[key]
	if q == nil {
		q = &reserveQueue{}
		g.resv[key] = q
	}
	q.pending = append(q.pending, c)
	lead := q.running < reserveRunners
	if lead {
		q.running++
	}
	g.resvMu.Unlock()
	if lead {
		// Not on this goroutine: a caller running a script could not
		// return when its ctx ends (the script is not cancelled with it),
		// nor when another runner answered it first.
		go g.runReserves(key, q)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return 0, redisErr(fmt.Sprintf("reserve sale %d", r.SaleID), ctx.Err())
	}
	if c.err != nil {
		return 0, c.err
	}
	switch res := seckill.GateResult(c.res); res {
	case seckill.Reserved, seckill.Duplicate, seckill.SoldOut, seckill.Limited:
		return res, nil
	}
	if c.res == -1 {
		return 0, notLoaded(r.SaleID)
	}
	return 0, fmt.Errorf("rdb reserve sale %d: unexpected script answer %d", r.SaleID, c.res)
}

// runReserves runs the sale's scripts, one batch of waiting reservations
// after another, until none waits; then it counts itself out.
func (g *Gate) runReserves(key reserveKey, q *reserveQueue) {
	for {
		g.resvMu.Lock()
		batch := q.take(key.sale)
		if len(batch) == 0 {
			q.running--
			if q.running == 0 {
				delete(g.resv, key)
			}
			g.resvMu.Unlock()
			return
		}
		g.resvMu.Unlock()
		g.reserveBatch(key, batch)
	}
}

// take removes up to maxReserveBatch waiting reservations of the sale from
// the queue, answering at once those whose caller gave up (they are not
// sent). Called with Gate.resvMu held.
func (q *reserveQueue) take(sale int64) []*reserveCall {
	var batch []*reserveCall
	n := 0
	for _, c := range q.pending {
		if len(batch) == maxReserveBatch {
			break
		}
		n++
		if err := c.ctx.Err(); err != nil {
			c.err = redisErr(fmt.Sprintf("reserve sale %d", sale), err)
			close(c.done)
			continue
		}
		batch = append(batch, c)
	}
	q.pending = q.pending[n:]
	if len(q.pending) == 0 {
		q.pending = nil // let the array go
	}
	return batch
}

// reserveBatch runs one reserve script for calls and answers each. The
// script is not cancelled with any one caller: the others wait for it.
func (g *Gate) reserveBatch(key reserveKey, calls []*reserveCall) {
	k := g.keys(key.sale)
	keys := make([]string, 0, 4+len(calls))
	keys = append(keys, k.stock, k.buyers, k.resv, k.epoch)
	args := make([]any, 0, 3+2*len(calls))
	args = append(args, strconv.FormatFloat(key.rate, 'g', -1, 64), key.burst, key.idleMS())
	for _, c := range calls {
		if key.rate > 0 {
			keys = append(keys, k.bucket(c.user))
		}
		args = append(args, c.user, c.ticket)
	}
	ctx := context.WithoutCancel(calls[0].ctx)
	v, err := reserveScript.Run(ctx, g.c.rdb, keys, args...).Result()
	if err == nil {
		err = answerReserves(v, calls)
	}
	if err != nil {
		err = redisErr(fmt.Sprintf("reserve sale %d", key.sale), err)
	} else if v == int64(promotedAnswer) {
		// Dropped once for the whole script, not once per caller.
		err = g.promoted(ctx, key.sale)
	}
	for _, c := range calls {
		c.err = err
		close(c.done)
	}
}

// answerReserves sets each call's answer from the script's reply: one
// number for all (the sale is not loaded, or its server was promoted), or
// one per call.
func answerReserves(v any, calls []*reserveCall) error {
	switch v := v.(type) {
	case int64:
		for _, c := range calls {
			c.res = v
		}
		return nil
	case []any:
		if len(v) != len(calls) {
			return fmt.Errorf("%d answers for %d reservations", len(v), len(calls))
		}
		for i, a := range v {
			n, ok := a.(int64)
			if !ok {
				return fmt.Errorf("answer %T for a reservation", a)
			}
			calls[i].res = n
		}
		return nil
	}
	return fmt.Errorf("reserve script answered %T", v)
}
