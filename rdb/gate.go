package rdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.StockGate = (*Gate)(nil)

// loadChunk is how many buyers one SADD carries while Load fills its
// temporary set: big enough to load a million buyers in a few hundred
// round trips, small enough not to stall the server on any one of them.
const loadChunk = 10_000

// settleChunk bounds the fields of one HDEL.
const settleChunk = 1_000

// Gate is the stock gate in Redis. Each sale's keys share the hash tag
// {sale:ID} (see the package doc), so every script runs in one slot and the
// gate works unchanged on Redis Cluster. Each operation is one script or
// one command, atomic on the server; reservations of one sale that arrive
// together share one script (reserve.go), each answered as if alone.
// Instances of the engine may share a gate freely.
//
// A Redis that comes back with older data (restarted from an RDB snapshot
// or an AOF written every second, or a replica promoted before it had
// every write) holds a gate that looks loaded but misses recent buyers and
// units: trusting it would sell twice to the same buyer or beyond SQL. So
// every load records the identity of the server it loaded on (the epoch
// key: its run_id, new at every restart, and its replication ID, new at
// every promotion), and a sale is checked against its server's identity
// before the gate uses it: the first time this process touches it, and
// again over every connection to a server this client had not seen (see
// Client.onConnect). A server is promoted without closing the
// connections open to it, so every script also compares the replication
// ID (promotedLua). A sale loaded on another server is
// dropped, as if Redis had restarted empty: Reserve answers EBusy and the
// engine rebuilds it from SQL and the queue. A restart or a failover that
// lost nothing costs a rebuild too.
type Gate struct {
	c       *Client
	prefix  string
	checked sync.Map // sale id → uint64: Client.gen when it was last checked (notChecked: never)

	resvMu sync.Mutex
	resv   map[reserveKey]*reserveQueue // sales with reservations waiting or on their way (reserve.go)
	// buckets: sale id → reserveKey, the purchase bucket of the sale's
	// last Reserve with one, whose token Release takes.
	buckets sync.Map
}

// notChecked marks a sale the gate has touched but not yet checked.
const notChecked = ^uint64(0)

// NewGate returns the gate whose keys start with prefix (e.g. "seckill:").
// It panics if prefix contains a brace.
func NewGate(c *Client, prefix string) *Gate {
	checkPrefix(prefix)
	g := &Gate{c: c, prefix: prefix, resv: make(map[reserveKey]*reserveQueue)}
	c.watch(g.checkConn)
	return g
}

// promotedLua returns a check for the start of a script whose KEYS[epochKey]
// is the sale's epoch: on a Cluster a server is promoted (a replica by a
// failover, or an old master failing back) without closing the
// connections clients opened to it before, so no Client.onConnect sees it,
// and its copy of the sale may lag what was admitted on the master before
// it (TestPromotionOverPooledConnections). Every promotion gives the server
// a new replication ID, so the script returns promoted (-2) when the
// epoch's is not the server's own; the gate then drops the sale (see
// Gate.promoted). INFO costs the script about 3 µs of the server's time.
// A single Redis needs it as much: REPLICAOF and FAILOVER demote and
// promote a server without closing clients' connections either (only
// Sentinel kills them, and this package has no Sentinel client), so a
// switchover and back over the same address goes unseen too
// (TestReplicaOfOverPooledConnections).
func promotedLua(epochKey int) string {
	return fmt.Sprintf(`local ep = redis.call('GET', KEYS[%d])
if ep and not string.find(redis.call('INFO', 'replication'), 'master_replid:' .. (string.match(ep, ' (%%x+)$') or '?') .. '\r', 1, true) then return -2 end
`, epochKey)
}

// promotedAnswer is what a script answers under promotedLua's check.
const promotedAnswer = -2

// promoted drops the sale, whose epoch a script found to name another
// replication history than its server's (promotedLua), and returns the
// error of a sale not loaded: the engine rebuilds it from SQL and the queue.
func (g *Gate) promoted(ctx context.Context, saleID int64) error {
	if err := g.check(ctx, saleID); err != nil {
		return err
	}
	return notLoaded(saleID)
}

// check runs the check script on the sale (checkSrc), which drops it if
// its server is not the one it was loaded on.
func (g *Gate) check(ctx context.Context, saleID int64) error {
	dropped, err := checkScript.Run(ctx, g.c.rdb, g.keys(saleID).all()).Int()
	if err != nil {
		return redisErr(fmt.Sprintf("check sale %d", saleID), err)
	}
	if dropped == 1 {
		slog.Warn("redis: dropped a sale loaded on another server (restarted, or failed over with older data); it will be rebuilt", "sale", saleID)
	}
	return nil
}

// runIDLua sets id to the run_id of the server running the script.
const runIDLua = `local id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
`

// checkSrc: KEYS the sale's (all()). Drops a loaded sale whose epoch is not
// the identity of this server (run_id and replication ID, serverIDLua): it
// was loaded on another, on this one before a restart, or before this one
// was promoted (a failover back to it), and may be older than what was
// admitted. Returns 1 if it dropped the sale.
const checkSrc = serverIDLua + `
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('GET', KEYS[5]) == id then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
`

var checkScript = redis.NewScript(checkSrc)

// fresh makes sure the sale was checked against the server holding it
// since this client last reached a server it had not seen. The usual case
// is two loads from memory; otherwise one script.
func (g *Gate) fresh(ctx context.Context, saleID int64) error {
	v, ok := g.checked.Load(saleID)
	if ok && v.(uint64) == g.c.gen.Load() {
		return nil
	}
	if !ok {
		// Known from now on: checkConn checks it on every new server.
		g.checked.LoadOrStore(saleID, notChecked)
	}
	gen := g.c.gen.Load()
	if err := g.check(ctx, saleID); err != nil {
		return err
	}
	g.checked.Store(saleID, gen)
	return nil
}

// checkConn checks every sale the gate has touched over cn, a new
// connection to a server this client had not seen, before cn carries
// anything else. On a Cluster the sales of other masters answer MOVED and
// are left to their own masters' connections.
func (g *Gate) checkConn(ctx context.Context, cn *redis.Conn) error {
	var ids []int64
	g.checked.Range(func(k, _ any) bool {
		ids = append(ids, k.(int64))
		return true
	})
	if len(ids) == 0 {
		return nil
	}
	// Each command's error is looked at below: MOVED is not a failure.
	cmds, err := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			// EVAL, not EVALSHA: a restarted server has no scripts.
			keys := g.keys(id).all()
			args := make([]any, 0, 3+len(keys))
			args = append(args, "eval", checkSrc, len(keys))
			for _, k := range keys {
				args = append(args, k)
			}
			p.Do(ctx, args...)
		}
		return nil
	})
	for i, cmd := range cmds {
		err := cmd.Err()
		switch {
		case err == nil:
			if n, _ := cmd.(*redis.Cmd).Int(); n == 1 {
				slog.Warn("redis: a new server held a sale loaded on another (restarted or failed over with older data); dropped, it will be rebuilt", "sale", ids[i])
			}
		case redis.HasErrorPrefix(err, "MOVED"), redis.HasErrorPrefix(err, "ASK"):
		default:
			return fmt.Errorf("rdb: check sale %d on a new server: %w", ids[i], err)
		}
	}
	if len(cmds) == 0 {
		return err
	}
	return nil
}

type saleKeys struct{ tag, stock, buyers, resv, claim, epoch, returned string }

func (g *Gate) keys(saleID int64) saleKeys {
	tag := g.prefix + "{sale:" + strconv.FormatInt(saleID, 10) + "}:"
	return saleKeys{tag: tag, stock: tag + "stock", buyers: tag + "buyers", resv: tag + "resv", claim: tag + "claim", epoch: tag + "epoch", returned: tag + "returned"}
}

// all lists every key of the sale (checkSrc deletes them by position).
func (k saleKeys) all() []string {
	return []string{k.stock, k.buyers, k.resv, k.claim, k.epoch, k.returned}
}

// withEpoch lists the keys of the scripts of a loaded sale's buyers:
// stock, buyers, resv and the epoch (promotedLua).
func (k saleKeys) withEpoch() []string { return []string{k.stock, k.buyers, k.resv, k.epoch} }

// bucket is the user's purchase bucket in the sale (Reservation.Limit):
// one key per user, under the sale's hash tag, expiring when idle; not in
// all(), since a bucket outliving its sale's other keys harms nothing.
func (k saleKeys) bucket(user string) string {
	return k.tag + "rl:" + user
}

func notLoaded(saleID int64) error {
	return seckill.Errorf(seckill.EBusy, "stock of sale %d is not loaded", saleID)
}

// timeScript: KEYS any key of the sale. Returns the TIME of the server
// holding the sale's slot: on a Cluster each master has its own clock, and
// a sale's reservations are stamped by its master's.
var timeScript = redis.NewScript(`return redis.call('TIME')`)

// undoLua ends releaseScript and withdrawScript, once they found the
// user's reservation (KEYS[3]'s field ARGV[1]) to undo: it forgets the
// reservation and the buyer, gives the unit back (only to a loaded sale: a
// unit must not conjure up a stock key), takes a token of the user's bucket
// (the press ended without a unit: see Gate.Reserve), and returns 1.
const undoLua = `
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCR', KEYS[1]) end
local rate = tonumber(ARGV[3])
if rate > 0 then
  local t = redis.call('TIME')
  take_token(KEYS[5], tonumber(t[1]) * 1000000 + tonumber(t[2]), rate, tonumber(ARGV[4]), ARGV[5])
end
return 1
`

// releaseScript: KEYS stock, buyers, resv, epoch, and the user's bucket
// when the rate is above 0; ARGV user id, ticket, tokens per second,
// burst, bucket idle ms. If the user's reservation is pending with that
// ticket and not claimed: undoes it (undoLua) and returns 1. If the
// sale is loaded and the user holds nothing, no buyer (released before:
// the answer a retry of a release whose reply was lost gets), returns 2.
// Else 0.
var releaseScript = redis.NewScript(takeTokenLua + promotedLua(4) + `
local v = redis.call('HGET', KEYS[3], ARGV[1])
if not v then
  if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 2 end
  return 0
end
if string.sub(v, 1, 1) == 'c' then return 0 end
local sp = string.find(v, ' ', 1, true)
if not sp or string.sub(v, sp + 1) ~= ARGV[2] then return 0 end
` + undoLua)

// withdrawScript: KEYS and ARGV as releaseScript's. Returns -1 if the sale
// is not loaded. If the user's reservation has that ticket, claimed or
// not: undoes it (undoLua) and returns 1. Else 0.
var withdrawScript = redis.NewScript(takeTokenLua + promotedLua(4) + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local v = redis.call('HGET', KEYS[3], ARGV[1])
if not v then return 0 end
local sp = string.find(v, ' ', 1, true)
if not sp or string.sub(v, sp + 1) ~= ARGV[2] then return 0 end
` + undoLua)

// loadTTL bounds a Load: its claim and its temporary buyers set expire on
// their own if it dies half-way, and a Load slower than this is refused.
const loadTTL = 10 * time.Minute

// claimScript: KEYS stock, claim; ARGV token, ttl in ms. Claims an unloaded
// sale for the Load holding token on this server as it is now, its
// identity (serverIDLua) in the claim: a later claim takes it over; a claim
// restored with older data on a restarted server is not this server's, nor
// one that came back to it through a failover and back, which keeps the
// run_id while the sale may have been loaded and sold from meanwhile
// (TestLoadClaimAcrossFailback). Returns 1, or 0 if the sale is loaded.
var claimScript = redis.NewScript(serverIDLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. id, 'PX', ARGV[2])
return 1
`)

// loadScript: KEYS stock, buyers, resv, temporary buyers set, claim, epoch,
// returned, temporary returned set, temporary reservations hash; ARGV
// left, token, buyers added to the temporary buyers set, orders added to
// the temporary returned set, fields added to the temporary reservations
// hash. If a temporary key does not hold as many members as were added to
// it (a Redis under memory pressure evicted it: with its expiry it is what
// a volatile-* policy evicts first), drops them all and returns -3: loaded
// without them, every buyer could buy again and every returned order come
// back twice. Otherwise, if the sale is unloaded and the claim still
// token's on this server as it is now (same run_id and replication ID, see
// claimScript), loads it at once: the buyers become the temporary buyers
// set, the returned orders the temporary returned set, the reservations
// the temporary hash (or none where a temporary key does not exist), left
// units are left, the epoch is this server's identity; returns 1.
// Otherwise drops the temporary keys and returns 0: a loaded sale is never
// replaced, and a lost claim (taken over, gone with a restarted server, or
// from before a promotion) means the snapshot may miss what was admitted
// since. Old keys are UNLINKed so the server frees them in the background.
var loadScript = redis.NewScript(serverIDLua + `
if redis.call('SCARD', KEYS[4]) ~= tonumber(ARGV[3]) or redis.call('SCARD', KEYS[8]) ~= tonumber(ARGV[4])
  or redis.call('HLEN', KEYS[9]) ~= tonumber(ARGV[5]) then
  redis.call('UNLINK', KEYS[4], KEYS[8], KEYS[9])
  return -3
end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('GET', KEYS[5]) ~= ARGV[2] .. ' ' .. id then
  redis.call('UNLINK', KEYS[4], KEYS[8], KEYS[9])
  return 0
end
redis.call('UNLINK', KEYS[2], KEYS[3], KEYS[5], KEYS[7])
for _, p in ipairs({{4, 2}, {8, 7}, {9, 3}}) do
  if redis.call('EXISTS', KEYS[p[1]]) == 1 then
    redis.call('RENAME', KEYS[p[1]], KEYS[p[2]])
    redis.call('PERSIST', KEYS[p[2]])
  end
end
redis.call('SET', KEYS[6], id)
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// Load claims an unloaded sale, reads its state with snapshot and loads it
// if the claim still holds. Buyers (and returned orders, and the queued
// requests' claimed reservations) go first into temporary keys of the same
// hash tag, in chunks (a sale may have a million), which expire on their
// own if Load dies half-way; one script then checks the claim and swaps
// them in with the units left. Reserve sees the sale unloaded or loaded,
// never half of it.
func (g *Gate) Load(ctx context.Context, saleID int64, snapshot seckill.GateSnapshot) (bool, error) {
	if err := g.fresh(ctx, saleID); err != nil {
		return false, err
	}
	k := g.keys(saleID)
	var rnd [16]byte
	rand.Read(rnd[:])
	token := hex.EncodeToString(rnd[:])
	ok, err := claimScript.Run(ctx, g.c.rdb, []string{k.stock, k.claim}, token, loadTTL.Milliseconds()).Bool()
	if err != nil || !ok {
		return false, redisErr(fmt.Sprintf("claim sale %d", saleID), err)
	}
	c, err := snapshot(ctx)
	if err != nil {
		return false, err
	}
	buyers, claimed := c.Split()
	for _, q := range claimed {
		buyers = append(buyers, q.UserID)
	}
	tmp := k.buyers + ":load:" + token
	tmpReturned := k.returned + ":load:" + token
	tmpResv := k.resv + ":load:" + token
	var n [3]int64
	for i, fill := range []func() (int64, error){
		func() (int64, error) { return g.fillTemp(ctx, tmp, int64Members(buyers)) },
		func() (int64, error) { return g.fillTemp(ctx, tmpReturned, int64Members(c.Returned)) },
		func() (int64, error) { return g.fillTemp(ctx, tmpResv, claimedFields(claimed)) },
	} {
		if n[i], err = fill(); err != nil {
			return false, redisErr(fmt.Sprintf("load sale %d", saleID), err)
		}
	}
	// With no buyers (returns, reservations) a temporary key was never
	// created: the sale starts with none.
	keys := []string{k.stock, k.buyers, k.resv, tmp, k.claim, k.epoch, k.returned, tmpReturned, tmpResv}
	res, err := loadScript.Run(ctx, g.c.rdb, keys, c.Left, token, n[0], n[1], n[2]).Int()
	if err != nil {
		return false, redisErr(fmt.Sprintf("load sale %d", saleID), err)
	}
	if res == tempsLost {
		return false, &unavailableError{op: fmt.Sprintf("load sale %d", saleID),
			err: errors.New("its temporary keys lost members before the swap (evicted? the gate's Redis needs maxmemory-policy noeviction)")}
	}
	return res == 1 || res == 2, nil
}

// tempsLost is loadScript's answer when a temporary set lost members.
const tempsLost = -3

// fillTemp adds members to the temporary key in chunks, each renewing its
// expiry, so a Load that dies half-way leaves nothing for long: a set of
// ids (int64Members) or a hash of reservations (claimedFields). It returns
// how many members the chunks added (the distinct ones), which loadScript
// checks the key still holds.
func (g *Gate) fillTemp(ctx context.Context, key string, m tempMembers) (int64, error) {
	var added int64
	for i := 0; i < len(m.args); i += loadChunk * m.width {
		chunk := m.args[i:min(i+loadChunk*m.width, len(m.args))]
		var add *redis.IntCmd
		_, err := g.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			if m.width == 1 {
				add = p.SAdd(ctx, key, chunk...)
			} else {
				add = p.HSet(ctx, key, chunk...)
			}
			p.Expire(ctx, key, loadTTL)
			return nil
		})
		if err != nil {
			return 0, err
		}
		added += add.Val()
	}
	return added, nil
}

// tempMembers is what fillTemp adds: members of a set (width 1), or
// field-value pairs of a hash (width 2).
type tempMembers struct {
	args  []any
	width int
}

func int64Members(ids []int64) tempMembers {
	args := make([]any, len(ids))
	for i, u := range ids {
		args[i] = u
	}
	return tempMembers{args, 1}
}

// claimedFields are the queued requests as reservations claimed by the
// writer ("c" in front, see decodeReservation): Stale never lists them, so
// the time in them is never read.
func claimedFields(claimed []seckill.Settled) tempMembers {
	args := make([]any, 0, 2*len(claimed))
	for _, q := range claimed {
		args = append(args, q.UserID, "c0 "+q.Ticket)
	}
	return tempMembers{args, 2}
}

// returnScript: KEYS stock, returned, epoch; ARGV order id. Returns -1 if the
// sale is not loaded, 0 if the order's unit came back already, else adds
// the order to the returned set and the unit to stock and returns 1.
var returnScript = redis.NewScript(promotedLua(3) + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = 0
for i = 1, #ARGV do n = n + redis.call('SADD', KEYS[2], ARGV[i]) end
if n > 0 then redis.call('INCRBY', KEYS[1], n) end
return n
`)

// Return gives the orders' units back to the sale once per order id, in
// one script under the sale's hash tag.
func (g *Gate) Return(ctx context.Context, saleID int64, orderIDs []int64) (int, error) {
	if len(orderIDs) > seckill.MaxReturn {
		return 0, fmt.Errorf("rdb: return of %d orders to sale %d: at most %d at once", len(orderIDs), saleID, seckill.MaxReturn)
	}
	if len(orderIDs) == 0 {
		return 0, nil
	}
	if err := g.fresh(ctx, saleID); err != nil {
		return 0, err
	}
	k := g.keys(saleID)
	args := make([]any, len(orderIDs))
	for i, id := range orderIDs {
		args[i] = id
	}
	n, err := returnScript.Run(ctx, g.c.rdb, []string{k.stock, k.returned, k.epoch}, args...).Int64()
	if err != nil {
		return 0, redisErr(fmt.Sprintf("return %d orders to sale %d", len(orderIDs), saleID), err)
	}
	switch n {
	case -1:
		return 0, notLoaded(saleID)
	case promotedAnswer:
		return 0, g.promoted(ctx, saleID)
	}
	return int(n), nil
}

// Release gives back the user's unit and forgets the user and their
// reservation, if that reservation is pending with this ticket, taking a
// token of the user's bucket when the gate knows the sale's (Gate.buckets);
// a no-op otherwise.
func (g *Gate) Release(ctx context.Context, saleID, userID int64, ticket string) (bool, error) {
	n, err := g.undo(ctx, releaseScript, "release", saleID, userID, ticket)
	return n == 1 || n == 2, err
}

// Withdraw is Release of a reservation claimed or not.
func (g *Gate) Withdraw(ctx context.Context, saleID, userID int64, ticket string) (bool, error) {
	n, err := g.undo(ctx, withdrawScript, "withdraw", saleID, userID, ticket)
	return n == 1, err
}

// undo runs releaseScript or withdrawScript (op names it in errors) for the
// user's reservation with ticket and returns its answer.
func (g *Gate) undo(ctx context.Context, script *redis.Script, op string, saleID, userID int64, ticket string) (int64, error) {
	if err := g.fresh(ctx, saleID); err != nil {
		return 0, err
	}
	k := g.keys(saleID)
	keys := k.withEpoch()
	var b reserveKey
	if v, ok := g.buckets.Load(saleID); ok {
		b = v.(reserveKey)
		keys = append(keys, k.bucket(strconv.FormatInt(userID, 10)))
	}
	n, err := script.Run(ctx, g.c.rdb, keys, userID, ticket,
		strconv.FormatFloat(b.rate, 'g', -1, 64), b.burst, b.idleMS()).Int64()
	switch {
	case err != nil:
		return 0, redisErr(fmt.Sprintf("%s sale %d user %d", op, saleID, userID), err)
	case n == promotedAnswer:
		return 0, g.promoted(ctx, saleID)
	case n == -1:
		return 0, notLoaded(saleID)
	}
	return n, nil
}

// claimChunk bounds the requests of one claim script, so that a big batch
// does not stall the server on one script.
const claimChunk = 1_000

// claimResvScript: KEYS stock, buyers, resv, epoch; ARGV user id, ticket, user id,
// ticket, ... Returns -1 if the sale is not loaded; else, for each user in
// order, '1' (allowed) or '0' (refused) in one string: a reservation
// pending with that ticket is marked claimed (a 'c' before its value,
// which releaseScript then leaves alone) and allowed; a buyer with none
// pending is allowed; anyone else (no buyer, or pending with another
// ticket: the ticket was released) is refused.
var claimResvScript = redis.NewScript(promotedLua(4) + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local out = {}
for i = 1, #ARGV, 2 do
  local v = redis.call('HGET', KEYS[3], ARGV[i])
  local ok = '0'
  if v then
    local sp = string.find(v, ' ', 1, true)
    if sp and string.sub(v, sp + 1) == ARGV[i + 1] then
      if string.sub(v, 1, 1) ~= 'c' then redis.call('HSET', KEYS[3], ARGV[i], 'c' .. v) end
      ok = '1'
    end
  elseif redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 1 then
    ok = '1'
  end
  out[#out + 1] = ok
end
return table.concat(out)
`)

// Claim runs the claim script over the requests, in chunks sent in one
// pipeline (one round trip); EBusy if the sale is not loaded or Redis
// cannot be reached. Claiming twice is claiming once, so a pipeline sent
// again (after NOSCRIPT) answers the same.
func (g *Gate) Claim(ctx context.Context, saleID int64, reqs []seckill.Settled) ([]bool, error) {
	if err := g.fresh(ctx, saleID); err != nil {
		return nil, err
	}
	keys := g.keys(saleID).withEpoch()
	var chunks [][]any
	for i := 0; i < len(reqs); i += claimChunk {
		chunk := reqs[i:min(i+claimChunk, len(reqs))]
		args := make([]any, 0, 2*len(chunk))
		for _, r := range chunk {
			args = append(args, r.UserID, r.Ticket)
		}
		chunks = append(chunks, args)
	}
	var cmds []*redis.Cmd
	run := func(p redis.Pipeliner) error {
		cmds = cmds[:0]
		for _, args := range chunks {
			cmds = append(cmds, claimResvScript.EvalSha(ctx, p, keys, args...))
		}
		return nil
	}
	_, err := g.c.rdb.Pipelined(ctx, run)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = claimResvScript.Load(ctx, g.c.rdb).Err(); err == nil {
			_, err = g.c.rdb.Pipelined(ctx, run)
		}
	}
	if err != nil {
		return nil, redisErr(fmt.Sprintf("claim sale %d", saleID), err)
	}
	allowed := make([]bool, 0, len(reqs))
	for _, cmd := range cmds {
		switch v := cmd.Val().(type) {
		case int64:
			switch v {
			case -1:
				return nil, notLoaded(saleID)
			case promotedAnswer:
				return nil, g.promoted(ctx, saleID)
			}
		case string:
			for _, c := range []byte(v) {
				allowed = append(allowed, c == '1')
			}
			continue
		}
		return nil, fmt.Errorf("rdb claim sale %d: unexpected script answer %v", saleID, cmd.Val())
	}
	if len(allowed) != len(reqs) {
		return nil, fmt.Errorf("rdb claim sale %d: %d answers for %d requests", saleID, len(allowed), len(reqs))
	}
	return allowed, nil
}

// settleScript: KEYS resv, epoch; ARGV user id, ticket, user id, ticket, ...
// Deletes each user's pending reservation if it has that ticket (a newer
// reservation of the same user stays). Returns how many it deleted.
var settleScript = redis.NewScript(promotedLua(2) + `
local n = 0
for i = 1, #ARGV, 2 do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local sp = string.find(v, ' ', 1, true)
    if sp and string.sub(v, sp + 1) == ARGV[i + 1] then
      redis.call('HDEL', KEYS[1], ARGV[i])
      n = n + 1
    end
  end
end
return n
`)

// Settle forgets the reservations pending with the tickets given; their
// users stay buyers. The chunks of a big batch go in one pipeline.
func (g *Gate) Settle(ctx context.Context, saleID int64, settled []seckill.Settled) error {
	if len(settled) == 0 {
		return nil
	}
	if err := g.fresh(ctx, saleID); err != nil {
		return err
	}
	k := g.keys(saleID)
	keys := []string{k.resv, k.epoch}
	var chunks [][]any
	for i := 0; i < len(settled); i += settleChunk {
		chunk := settled[i:min(i+settleChunk, len(settled))]
		args := make([]any, 0, 2*len(chunk))
		for _, st := range chunk {
			args = append(args, st.UserID, st.Ticket)
		}
		chunks = append(chunks, args)
	}
	var cmds []*redis.Cmd
	run := func(p redis.Pipeliner) error {
		cmds = cmds[:0]
		for _, args := range chunks {
			cmds = append(cmds, settleScript.EvalSha(ctx, p, keys, args...))
		}
		return nil
	}
	_, err := g.c.rdb.Pipelined(ctx, run)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A server that lost its script cache (restarted, failed over):
		// load the script once and send the pipeline again; settling
		// twice is settling once.
		if err = settleScript.Load(ctx, g.c.rdb).Err(); err == nil {
			_, err = g.c.rdb.Pipelined(ctx, run)
		}
	}
	if err != nil {
		return redisErr(fmt.Sprintf("settle sale %d", saleID), err)
	}
	for _, cmd := range cmds {
		if n, _ := cmd.Int64(); n == promotedAnswer {
			return g.promoted(ctx, saleID)
		}
	}
	return nil
}

// Stale lists the sale's unclaimed reservations at least olderThan old by
// the server's clock, scanning the reservation hash in pages so a big one does
// not block the server. The caller's clock plays no part.
func (g *Gate) Stale(ctx context.Context, saleID int64, olderThan time.Duration) ([]seckill.Reservation, error) {
	if err := g.fresh(ctx, saleID); err != nil {
		return nil, err
	}
	// A copy loaded before a promotion is dropped first (its reservations
	// are not the sale's), as the scripts that reserve drop it.
	if err := g.check(ctx, saleID); err != nil {
		return nil, err
	}
	resv := g.keys(saleID).resv
	now, err := g.serverTime(ctx, resv)
	if err != nil {
		return nil, redisErr(fmt.Sprintf("stale sale %d", saleID), err)
	}
	cutoff := now.Add(-olderThan)
	seen := make(map[int64]bool)
	var out []seckill.Reservation
	var cursor uint64
	for {
		kvs, next, err := g.c.rdb.HScan(ctx, resv, cursor, "", 1000).Result()
		if err != nil {
			return nil, redisErr(fmt.Sprintf("stale sale %d", saleID), err)
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			r, claimed, err := decodeReservation(saleID, kvs[i], kvs[i+1])
			if err != nil {
				return nil, err
			}
			// HSCAN may return a field twice while the hash is rehashed.
			// A claimed reservation is the writer's to settle.
			if seen[r.UserID] || claimed {
				continue
			}
			seen[r.UserID] = true
			if !r.At.After(cutoff) {
				out = append(out, r)
			}
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// leftScript: KEYS stock, epoch. Returns {1, units left}, {0, 0} for a
// sale not loaded, or {promotedAnswer, 0} under promotedLua's check: the
// units left of a promoted replica's stale copy are not the sale's.
var leftScript = redis.NewScript(`local function f()
` + promotedLua(2) + `return nil end
if f() then return {-2, 0} end
local n = redis.call('GET', KEYS[1])
if not n then return {0, 0} end
return {1, tonumber(n)}
`)

// Left returns the units left and whether the sale is loaded. A copy of
// the sale on a server promoted since it was loaded (a failover) is
// dropped, as the scripts that reserve drop it, and reads as not loaded:
// read as it was, the admin's stats and the reconciler's look for sales
// to rebuild would take a stale copy for the sale (found by review).
func (g *Gate) Left(ctx context.Context, saleID int64) (int64, bool, error) {
	if err := g.fresh(ctx, saleID); err != nil {
		return 0, false, err
	}
	k := g.keys(saleID)
	v, err := leftScript.Run(ctx, g.c.rdb, []string{k.stock, k.epoch}).Int64Slice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("answered %v", v)
	}
	if err != nil {
		return 0, false, redisErr(fmt.Sprintf("left sale %d", saleID), err)
	}
	switch v[0] {
	case promotedAnswer:
		return 0, false, g.check(ctx, saleID)
	case 0:
		return 0, false, nil
	}
	return v[1], true, nil
}

// pendingScript: KEYS stock, resv, epoch; ARGV user id. Returns {1,
// 1 if the user's reservation is pending else 0}, {0, 0} for a sale not
// loaded, or {promotedAnswer, 0} under promotedLua's check.
var pendingScript = redis.NewScript(`local function f()
` + promotedLua(3) + `return nil end
if f() then return {-2, 0} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
return {1, redis.call('HEXISTS', KEYS[2], ARGV[1])}
`)

// Pending reports whether the user's reservation of the sale is pending
// (in the sale's resv hash, claimed or not). A copy of the sale on a
// promoted replica is not the sale's: it is dropped, and not loaded.
func (g *Gate) Pending(ctx context.Context, saleID, userID int64) (bool, bool, error) {
	if err := g.fresh(ctx, saleID); err != nil {
		return false, false, err
	}
	k := g.keys(saleID)
	v, err := pendingScript.Run(ctx, g.c.rdb, []string{k.stock, k.resv, k.epoch}, userID).Int64Slice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("answered %v", v)
	}
	if err != nil {
		return false, false, redisErr(fmt.Sprintf("pending reservation of user %d in sale %d", userID, saleID), err)
	}
	switch v[0] {
	case promotedAnswer:
		return false, false, g.check(ctx, saleID)
	case 0:
		return false, false, nil
	}
	return v[1] == 1, true, nil
}

// Forget deletes the sale's keys, a Load's claim included (one slot: they
// share its hash tag), and what this client keeps of the sale: every
// instance calls it once per ended sale (checkout.Engine.ForgetEnded), so
// none keeps an entry per sale it ever touched, nor checks them all again
// on each new server.
func (g *Gate) Forget(ctx context.Context, saleID int64) error {
	k := g.keys(saleID)
	err := g.c.rdb.Del(ctx, k.all()...).Err()
	if err == nil {
		g.checked.Delete(saleID) // nothing left to check on a new server
		g.buckets.Delete(saleID)
	}
	return redisErr(fmt.Sprintf("forget sale %d", saleID), err)
}

// Prefix is the prefix of the gate's keys.
func (g *Gate) Prefix() string { return g.prefix }

// LoadedSales lists the sales whose stock is loaded under this gate's
// prefix, on every master. It SCANs the keyspace: for a check at start-up
// (a Redis whose keys were made with another database), not a hot path.
func (g *Gate) LoadedSales(ctx context.Context) ([]int64, error) {
	head := g.prefix + "{sale:"
	var mu sync.Mutex
	var ids []int64
	err := g.c.forEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := n.Scan(ctx, cursor, globEscape(head)+"*}:stock", 1000).Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(k, head), "}:stock"), 10, 64)
				if err == nil {
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
	if err != nil {
		return nil, redisErr("list loaded sales", err)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// Unload deletes every key of this gate's prefix on every master. It is for
// tests and drills, not production: it SCANs the whole keyspace of each
// node, and a sale loaded while it runs may survive it. (A production gate
// is never unloaded; it is lost with Redis and rebuilt by the engine.)
func (g *Gate) Unload(ctx context.Context) error {
	return redisErr("unload", g.c.deleteMatching(ctx, g.prefix+"{sale:"))
}

// serverTime returns the clock of the server holding key's slot.
func (g *Gate) serverTime(ctx context.Context, key string) (time.Time, error) {
	v, err := timeScript.Run(ctx, g.c.rdb, []string{key}).Int64Slice()
	if err != nil {
		return time.Time{}, err
	}
	if len(v) != 2 {
		return time.Time{}, fmt.Errorf("TIME answered %v", v)
	}
	return time.Unix(v[0], v[1]*1000), nil
}

// A resv hash value is "unixnano ticket", written by reserveScript from the
// server's TIME (microseconds, so the last three digits are 0), with a
// "c" in front once claimScript claimed it.

func decodeReservation(saleID int64, field, value string) (r seckill.Reservation, claimed bool, err error) {
	user, err := strconv.ParseInt(field, 10, 64)
	if err != nil {
		return r, false, fmt.Errorf("rdb: sale %d: bad reservation user %q", saleID, field)
	}
	value, claimed = strings.CutPrefix(value, "c")
	at, ticket, _ := strings.Cut(value, " ")
	ns, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return r, false, fmt.Errorf("rdb: sale %d user %d: bad reservation %q", saleID, user, value)
	}
	return seckill.Reservation{SaleID: saleID, UserID: user, Ticket: ticket, At: time.Unix(0, ns)}, claimed, nil
}
