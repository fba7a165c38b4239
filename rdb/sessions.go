package rdb

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.SessionStore = (*Sessions)(nil)

// Sessions keeps sessions in Redis: one hash per token hash holding the user
// id, role and expiry, which Redis deletes when the session expires. The
// expiry is checked on read as well, so a session ends on time even when the
// Redis clock lags. Persistence is Redis's: run it with AOF or RDB if a
// Redis restart must not log everybody out. The engine puts an
// inmem.SessionCache in front of it.
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

// DeleteSession removes a session; a missing session is not an error.
func (s *Sessions) DeleteSession(ctx context.Context, tokenHash []byte) error {
	return redisErr("delete session", s.c.rdb.Del(ctx, s.key(tokenHash)).Err())
}
