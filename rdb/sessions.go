package rdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.SessionStore = (*Sessions)(nil)

// Sessions keeps sessions in Redis: one hash per token hash holding the user
// id, role, expiry and epoch, which Redis deletes when the session expires.
// The expiry is checked on read as well, so a session ends on time even
// when the Redis clock lags. The engine keeps sessions in SQL too
// (account.Tiered), so a Redis restarting empty logs nobody out, and puts
// an inmem.SessionCache in front, which FollowRevocations keeps true to
// the deletions of every instance.
//
// A Redis that comes back with older data (restarted from an RDB snapshot
// or an AOF written every second, or a replica promoted before it had the
// last DEL) holds again the sessions deleted since. So each session records
// the epoch it was written in, and is believed only in the epoch it was
// written in: an epoch key (one per group of sessions, in their hash slot)
// holds the identity of the server holding it — its run_id and replication
// ID, the identity Client.onConnect checks — and every client rewrites it
// over its first connection to a server it had not seen, before that
// connection carries anything else. A session written before a restart or
// a failover then reads as missing (and is deleted), so account.Tiered asks
// SQL, which is authoritative, and writes it back in the new epoch; a
// session deleted since stays deleted. A lookup stays one script reading
// two keys, no INFO; a restart that lost nothing costs a refill from SQL
// per session used.
type Sessions struct {
	c      *Client
	prefix string
	now    func() time.Time

	checked atomic.Uint64 // Client.gen when the epochs were last rewritten (notChecked: never)
	checkMu sync.Mutex    // one rewrite at a time

	mu    sync.Mutex
	feeds map[*feedConn]struct{} // FollowRevocations' confirmed subscriptions
}

// feedConn is one confirmed subscription of FollowRevocations: a new server
// cancels it (it subscribes again) after calling reset.
type feedConn struct {
	cancel context.CancelFunc
	reset  func(followed bool)
}

// NewSessions returns the session store whose keys start with prefix. It
// panics if prefix contains a brace.
func NewSessions(c *Client, prefix string) *Sessions {
	checkPrefix(prefix)
	s := &Sessions{c: c, prefix: prefix, now: time.Now, feeds: make(map[*feedConn]struct{})}
	s.checked.Store(notChecked)
	c.watch(s.checkConn)
	return s
}

// epochPromotedLua starts a script whose KEYS[2] is a group's epoch: a
// server promoted (a replica by a failover, or an old master failing back,
// on a Cluster or by REPLICAOF or FAILOVER on a single Redis) keeps the
// connections clients opened before, so no
// Client.onConnect rewrites its epochs, and its copy of the sessions may
// hold again one deleted on the master before it. Every promotion gives
// the server a new replication ID: an epoch naming another is made this
// server's identity, so the group's sessions written before read as
// missing (account.Tiered asks SQL). Like the gate's check (promotedLua),
// it costs an INFO.
const epochPromotedLua = `
do
  local ep0 = redis.call('GET', KEYS[2])
  local rid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  if ep0 and string.match(ep0, ' (%x+)$') ~= rid then
    redis.call('SET', KEYS[2], string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') .. ' ' .. rid)
  end
end
`

// sessionGroups is how many epoch keys a prefix has: a session belongs to
// the group of the first byte of its token hash, whose hash tag it shares
// with the group's epoch key, so a script reads both in one slot and a
// Redis Cluster still spreads the sessions over 256 slots.
const sessionGroups = 256

func (s *Sessions) tag(group byte) string {
	return s.prefix + "{session:" + hex.EncodeToString([]byte{group}) + "}:"
}

// keys returns the session's key and its group's epoch key.
func (s *Sessions) keys(tokenHash []byte) []string {
	var g byte
	if len(tokenHash) > 0 {
		g = tokenHash[0]
	}
	t := s.tag(g)
	return []string{t + hex.EncodeToString(tokenHash), t + "epoch"}
}

// serverIDLua sets id to the identity of the server running the script:
// "run_id master_replid", as Client.onConnect reads it.
const serverIDLua = runIDLua + `id = id .. ' ' .. string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
`

// epochSrc: KEYS epoch. Makes the epoch the identity of this server.
const epochSrc = serverIDLua + `
if redis.call('GET', KEYS[1]) ~= id then redis.call('SET', KEYS[1], id) end
return 1
`

// epochArgs are the EVAL arguments rewriting every group's epoch.
func (s *Sessions) epochArgs() [][]any {
	out := make([][]any, sessionGroups)
	for g := range sessionGroups {
		out[g] = []any{"eval", epochSrc, 1, s.tag(byte(g)) + "epoch"}
	}
	return out
}

// checkConn runs over cn, a new connection to a server this client had not
// seen, before cn carries anything else: it makes that server's epochs its
// identity, so the sessions it holds from before (a restart from old data,
// a failover) read as missing, and makes the revocation feeds forget every
// session cached and subscribe again (to this server, perhaps). On a
// Cluster the groups of other masters answer MOVED and are left to their
// own masters' connections.
func (s *Sessions) checkConn(ctx context.Context, cn *redis.Conn) error {
	cmds, err := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, args := range s.epochArgs() {
			p.Do(ctx, args...)
		}
		return nil
	})
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !redis.HasErrorPrefix(err, "MOVED") && !redis.HasErrorPrefix(err, "ASK") {
			return fmt.Errorf("rdb: session epochs on a new server: %w", err)
		}
	}
	if len(cmds) == 0 && err != nil {
		return err
	}
	s.mu.Lock()
	feeds := make([]*feedConn, 0, len(s.feeds))
	for f := range s.feeds {
		feeds = append(feeds, f)
	}
	s.mu.Unlock()
	for _, f := range feeds {
		f.reset(false)
		f.cancel()
	}
	return nil
}

// fresh makes sure the epochs were rewritten since this client last reached
// a server it had not seen: checkConn does it over the connection, but a
// store made after the client connected has not run there yet. The usual
// case is two atomic loads.
func (s *Sessions) fresh(ctx context.Context) error {
	if s.checked.Load() == s.c.gen.Load() {
		return nil
	}
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	gen := s.c.gen.Load()
	if s.checked.Load() == gen {
		return nil
	}
	_, err := s.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, args := range s.epochArgs() {
			p.Do(ctx, args...)
		}
		return nil
	})
	if err != nil {
		return redisErr("session epochs", err)
	}
	s.checked.Store(gen)
	return nil
}

// createScript: KEYS session, epoch; ARGV user id, role, expiry (unix ms).
// Writes the session in the current epoch (which is the server's identity
// when the epoch key is missing, e.g. evicted).
var createScript = redis.NewScript(epochPromotedLua + `
local ep = redis.call('GET', KEYS[2])
if not ep then
` + serverIDLua + `
  ep = id
  redis.call('SET', KEYS[2], ep)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'r', ARGV[2], 'e', ARGV[3], 's', ep)
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
`)

// CreateSession stores sess until its expiry.
func (s *Sessions) CreateSession(ctx context.Context, sess seckill.Session) error {
	if err := s.fresh(ctx); err != nil {
		return err
	}
	// An expiry in the past deletes the session at once.
	err := createScript.Run(ctx, s.c.rdb, s.keys(sess.TokenHash), sess.UserID, string(sess.Role), sess.ExpiresAt.UnixMilli()).Err()
	return redisErr("create session", err)
}

// getScript: KEYS session, epoch. Returns {user id, role, expiry} of a
// session written in the current epoch; deletes one written in another (it
// may have been deleted since) and returns nil, as for a missing one.
var getScript = redis.NewScript(epochPromotedLua + `
local v = redis.call('HMGET', KEYS[1], 'u', 'r', 'e', 's')
if not v[1] then return false end
local ep = redis.call('GET', KEYS[2])
if not ep or v[4] ~= ep then
  redis.call('DEL', KEYS[1])
  return false
end
return {v[1], v[2], v[3]}
`)

// Session returns the session, or ENotFound when there is none, it
// expired, or it was written before the server restarted or failed over.
func (s *Sessions) Session(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	if err := s.fresh(ctx); err != nil {
		return nil, err
	}
	vals, err := getScript.Run(ctx, s.c.rdb, s.keys(tokenHash)).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, seckill.Errorf(seckill.ENotFound, "no such session")
	}
	if err != nil {
		return nil, redisErr("session", err)
	}
	if len(vals) != 3 {
		return nil, fmt.Errorf("rdb session: bad reply %q", vals)
	}
	us, _ := vals[0].(string)
	role, _ := vals[1].(string)
	es, _ := vals[2].(string)
	user, err1 := strconv.ParseInt(us, 10, 64)
	exp, err2 := strconv.ParseInt(es, 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("rdb session: bad record u=%q e=%q", us, es)
	}
	expires := time.UnixMilli(exp)
	if !s.now().Before(expires) {
		return nil, seckill.Errorf(seckill.ENotFound, "session expired")
	}
	return &seckill.Session{
		TokenHash: append([]byte(nil), tokenHash...),
		UserID:    user,
		Role:      seckill.Role(role),
		ExpiresAt: expires,
	}, nil
}

// touchScript: KEYS session, epoch; ARGV expiry (unix ms). Moves the
// expiry of a session of the current epoch (a past one deletes it); a
// missing session stays missing, one of another epoch is deleted.
var touchScript = redis.NewScript(epochPromotedLua + `
local s = redis.call('HGET', KEYS[1], 's')
if not s then return 0 end
if s ~= redis.call('GET', KEYS[2]) then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`)

// TouchSession moves the expiry of a session; a missing session is not an
// error.
func (s *Sessions) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	if err := s.fresh(ctx); err != nil {
		return err
	}
	err := touchScript.Run(ctx, s.c.rdb, s.keys(tokenHash), expiresAt.UnixMilli()).Err()
	return redisErr("touch session", err)
}

// deleteScript: KEYS session; ARGV revocation channel, token hash. Deletes
// the session and announces it in one step, so no deletion goes
// unannounced (a PUBLISH in a script reaches every node of a Cluster).
var deleteScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// DeleteSession removes a session and announces its token hash to every
// instance's FollowRevocations; a missing session is not an error (and is
// announced too: an instance may still have it cached).
func (s *Sessions) DeleteSession(ctx context.Context, tokenHash []byte) error {
	err := deleteScript.Run(ctx, s.c.rdb, s.keys(tokenHash)[:1], s.channel(), tokenHash).Err()
	return redisErr("delete session", err)
}

// channel is where deletions of sessions are announced.
func (s *Sessions) channel() string { return s.prefix + "sessions:revoked" }

// followPing is how long the revocation feed may stay silent before it is
// asked for a PONG; a feed that stays silent twice running is dropped and
// subscribed again. A connection that died without a word (a cut cable,
// a frozen Redis) is so noticed within two of them.
const followPing = 2 * time.Second

// FollowRevocations calls evict with the token hash of every session any
// instance deletes (DeleteSession, so logout and DeleteUserSessions
// through account.Tiered), until ctx ends. Redis pub/sub delivers at most
// once: whenever announcements may have been missed — the subscription is
// (re)established, its connection failed or went silent, or the client
// reached a server it had not seen (a restart, perhaps from older data, or
// a failover; see checkConn) — it calls reset, which must forget every
// session cached so far (inmem.SessionCache.Reset); the subscription is
// then made again, after a pause that grows to 2 s while Redis stays
// unreachable. reset's followed is true once the subscription is
// confirmed and has heard a canary published through the command path
// (from then on every announcement arrives, until the next reset; see
// follow), false when the feed is down or may have missed some. An
// announcement lost in spite of this (a Cluster node cut off from the
// others' bus) is the cache TTL's to bound.
func (s *Sessions) FollowRevocations(ctx context.Context, evict func(tokenHash []byte), reset func(followed bool)) {
	pause := 50 * time.Millisecond
	for ctx.Err() == nil {
		sub, cancel := context.WithCancel(ctx)
		ps := s.c.base.Subscribe(sub, s.channel())
		stop := context.AfterFunc(sub, func() { _ = ps.Close() }) // ends a read at once
		f := &feedConn{cancel: cancel, reset: reset}
		if s.follow(sub, ps, f, evict) {
			pause = 50 * time.Millisecond
		}
		s.mu.Lock()
		delete(s.feeds, f)
		s.mu.Unlock()
		stop()
		cancel()
		_ = ps.Close()
		reset(false)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// canaryPrefix starts the payload of a canary: a message the feed
// publishes on its own channel through the command path, never a token
// hash to evict.
const canaryPrefix = "canary:"

// follow reads ps until it fails, goes silent, or ctx ends; it reports
// whether the subscription was confirmed. Once it is, a new server ends it
// (checkConn cancels ctx through f).
//
// A confirmed subscription resets (not followed), then publishes a canary
// through the command path, where DeleteSession announces, and reports
// the feed followed (reset(true)) only when the canary comes back on ps:
// a subscription confirmed by a server that the commands no longer reach
// (one still in flight when the client met a new server, a stale address)
// is never followed. A canary goes every followPing; one that is not back
// within 2 × followPing (the feed's connection silent or dead, or
// listening on another server) ends the feed.
func (s *Sessions) follow(ctx context.Context, ps *redis.PubSub, f *feedConn, evict func([]byte)) (subscribed bool) {
	var (
		followed bool
		canary   string    // the canary on its way; "" when none is
		sent     time.Time // when the last canary went
		waited   bool      // a receive timed out before the subscription was confirmed
	)
	send := func() {
		var b [12]byte
		_, _ = rand.Read(b[:])
		canary, sent = canaryPrefix+hex.EncodeToString(b[:]), time.Now()
		pctx, cancel := context.WithTimeout(ctx, followPing)
		// A publish that fails leaves the canary late, which ends the feed.
		_ = s.c.rdb.Publish(pctx, s.channel(), canary).Err()
		cancel()
	}
	for {
		if subscribed {
			switch {
			case canary != "" && time.Since(sent) >= 2*followPing:
				return subscribed
			case canary == "" && time.Since(sent) >= followPing:
				send()
			}
		}
		msg, err := ps.ReceiveTimeout(ctx, followPing)
		if err != nil {
			var ne net.Error
			if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() && (subscribed || !waited) {
				// Once subscribed, the canary's deadline decides; before,
				// a second silent followPing ends the feed.
				waited = !subscribed
				continue
			}
			return subscribed
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				// The server ended it: subscribe again.
				return subscribed
			}
			// Confirmed, perhaps after go-redis reconnected by itself:
			// whatever was published before may be lost.
			subscribed, followed = true, false
			s.mu.Lock()
			s.feeds[f] = struct{}{}
			s.mu.Unlock()
			f.reset(false)
			send()
		case *redis.Message:
			if strings.HasPrefix(m.Payload, canaryPrefix) {
				if m.Payload == canary {
					canary = ""
					if !followed {
						followed = true
						f.reset(true)
					}
				}
				continue
			}
			evict([]byte(m.Payload))
		}
	}
}
