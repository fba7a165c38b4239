package rdb

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.SessionStore = (*Sessions)(nil)

// Sessions keeps sessions in Redis: one hash per token hash holding the user
// id, role and expiry, which Redis deletes when the session expires. The
// expiry is checked on read as well, so a session ends on time even when the
// Redis clock lags. Persistence is Redis's, but the engine keeps sessions
// in SQL too (account.Tiered), so a Redis restarting empty logs nobody
// out; one restored from a snapshot, or a lagging replica promoted, serves
// again the sessions deleted since (SECURITY.md, Open 4). The engine puts an
// inmem.SessionCache in front of it, which FollowRevocations keeps true to
// the deletions of every instance.
type Sessions struct {
	c      *Client
	prefix string
	now    func() time.Time
}

// NewSessions returns the session store whose keys start with prefix. It
// panics if prefix contains a brace.
func NewSessions(c *Client, prefix string) *Sessions {
	checkPrefix(prefix)
	return &Sessions{c: c, prefix: prefix, now: time.Now}
}

func (s *Sessions) key(tokenHash []byte) string {
	return s.prefix + "session:" + hex.EncodeToString(tokenHash)
}

// CreateSession stores sess until its expiry.
func (s *Sessions) CreateSession(ctx context.Context, sess seckill.Session) error {
	k := s.key(sess.TokenHash)
	exp := sess.ExpiresAt.UnixMilli()
	// MULTI on one key: the hash never exists without its expiry.
	_, err := s.c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, k)
		p.HSet(ctx, k, "u", sess.UserID, "r", string(sess.Role), "e", exp)
		p.PExpireAt(ctx, k, time.UnixMilli(exp)) // in the past: deleted at once
		return nil
	})
	return redisErr("create session", err)
}

// Session returns the session, or ENotFound when there is none or it
// expired.
func (s *Sessions) Session(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	vals, err := s.c.rdb.HMGet(ctx, s.key(tokenHash), "u", "r", "e").Result()
	if err != nil {
		return nil, redisErr("session", err)
	}
	us, _ := vals[0].(string)
	role, _ := vals[1].(string)
	es, _ := vals[2].(string)
	if us == "" || es == "" {
		return nil, seckill.Errorf(seckill.ENotFound, "no such session")
	}
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

// touchScript: KEYS session; ARGV expiry (unix ms). Moves the expiry of an
// existing session (a past one deletes it); a missing session stays missing.
var touchScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`)

// TouchSession moves the expiry of a session; a missing session is not an
// error.
func (s *Sessions) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	err := touchScript.Run(ctx, s.c.rdb, []string{s.key(tokenHash)}, expiresAt.UnixMilli()).Err()
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
	err := deleteScript.Run(ctx, s.c.rdb, []string{s.key(tokenHash)}, s.channel(), tokenHash).Err()
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
// (re)established, its connection failed or went silent — it calls reset,
// which must forget every session cached so far (inmem.SessionCache.Reset);
// the subscription is then made again, after a pause that grows to 2 s
// while Redis stays unreachable. An announcement lost in spite of this
// (a Cluster node cut off from the others' bus) is the cache TTL's to
// bound.
func (s *Sessions) FollowRevocations(ctx context.Context, evict func(tokenHash []byte), reset func()) {
	pause := 50 * time.Millisecond
	for ctx.Err() == nil {
		ps := s.c.base.Subscribe(ctx, s.channel())
		stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // ends a read at once
		if s.follow(ctx, ps, evict, reset) {
			pause = 50 * time.Millisecond
		}
		stop()
		_ = ps.Close()
		reset()
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// follow reads ps until it fails, goes silent, or ctx ends; it reports
// whether the subscription was confirmed.
func (s *Sessions) follow(ctx context.Context, ps *redis.PubSub, evict func([]byte), reset func()) (subscribed bool) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, followPing)
		if err != nil {
			var ne net.Error
			if ctx.Err() == nil && !pinged && errors.As(err, &ne) && ne.Timeout() && ps.Ping(ctx) == nil {
				pinged = true
				continue
			}
			return subscribed
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			// Confirmed, perhaps after go-redis reconnected by itself:
			// whatever was published before may be lost.
			subscribed = true
			reset()
		case *redis.Message:
			evict([]byte(m.Payload))
		}
	}
}
