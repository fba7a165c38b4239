package rdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

var _ seckill.CaptchaStore = (*CaptchaStore)(nil)

// CaptchaStore keeps issued captchas in Redis until they are taken or
// expire, so a captcha issued by one instance can be answered on another.
// Taking is one script that checks the user and deletes: single use even
// when several instances race for the same id.
type CaptchaStore struct {
	c      *Client
	prefix string
	now    func() time.Time
}

// NewCaptchaStore returns the store whose keys start with prefix. It panics
// if prefix contains a brace.
func NewCaptchaStore(c *Client, prefix string) *CaptchaStore {
	return NewCaptchaStoreClock(c, prefix, time.Now)
}

// NewCaptchaStoreClock is NewCaptchaStore on the clock now, which must be
// the clock the issuing engine computes a captcha's ExpiresAt on: its
// difference is the life PutCaptcha gives the key.
func NewCaptchaStoreClock(c *Client, prefix string, now func() time.Time) *CaptchaStore {
	checkPrefix(prefix)
	return &CaptchaStore{c: c, prefix: prefix, now: now}
}

type captchaRecord struct {
	Answer    string `json:"a"`
	SaleID    int64  `json:"s"`
	UserID    int64  `json:"u"`
	ExpiresAt int64  `json:"e"` // unix ns
}

func (s *CaptchaStore) key(id string) string { return s.prefix + "captcha:" + id }

// PutCaptcha stores c under id until c.ExpiresAt on the store's clock: the
// key lives for c.ExpiresAt minus now, and Redis expires it, so whichever
// instance takes it, whatever its clock says, it lives that long. An
// already expired captcha is not stored at all (taking it would fail
// anyway).
func (s *CaptchaStore) PutCaptcha(ctx context.Context, id string, c seckill.Captcha) error {
	ttl := c.ExpiresAt.Sub(s.now())
	if ttl < time.Millisecond {
		return redisErr("put captcha", s.c.rdb.Del(ctx, s.key(id)).Err())
	}
	v, err := json.Marshal(captchaRecord{c.Answer, c.SaleID, c.UserID, c.ExpiresAt.UnixNano()})
	if err != nil {
		return err
	}
	return redisErr("put captcha", s.c.rdb.Set(ctx, s.key(id), v, ttl).Err())
}

// takeCaptchaScript: KEYS the captcha; ARGV a user id. Deletes and returns
// the captcha's record if it was issued to that user; nil if there is none
// or it is another user's (which stays, its TTL untouched). User ids are
// far below 2^53, so Lua's numbers hold them exactly.
var takeCaptchaScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
if cjson.decode(v).u ~= tonumber(ARGV[1]) then return false end
redis.call('DEL', KEYS[1])
return v
`)

// TakeCaptcha removes and returns userID's captcha, in one script; ENotFound
// if absent, taken, expired (its key's TTL ran out) or another user's
// (which stays).
func (s *CaptchaStore) TakeCaptcha(ctx context.Context, id string, userID int64) (*seckill.Captcha, error) {
	v, err := takeCaptchaScript.Run(ctx, s.c.rdb, []string{s.key(id)}, userID).Text()
	if errors.Is(err, redis.Nil) {
		return nil, seckill.Errorf(seckill.ENotFound, "captcha expired or already used")
	}
	if err != nil {
		return nil, redisErr("take captcha", err)
	}
	var r captchaRecord
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil, fmt.Errorf("rdb take captcha %q: %w", id, err)
	}
	// No clock is compared here: the key's TTL, set from the issuer's clock
	// at PutCaptcha, is the expiry, and Redis enforces it. This instance's
	// clock may be minutes off the issuer's (a captcha is answered on
	// whichever instance the balancer picks).
	return &seckill.Captcha{Answer: r.Answer, SaleID: r.SaleID, UserID: r.UserID, ExpiresAt: time.Unix(0, r.ExpiresAt)}, nil
}
