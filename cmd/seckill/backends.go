package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"seckill"
	"seckill/account"
	"seckill/inmem"
	"seckill/rdb"
	"seckill/sqldb"
)

// shared is where the state that instances must agree on lives: the stock
// gate, sessions, rate limits, captchas and the rebuild lock. In this
// process for a single instance; in Redis when several share it.
type shared struct {
	gate     seckill.StockGate
	sessions seckill.SessionStore // durable store, before the in-process cache
	userLim  seckill.Limiter
	ipLim    seckill.Limiter
	// purchaseIPLim is the per-address bucket of purchases: ipLim in
	// process; with Redis, one in this process, so that a purchase that
	// reserves costs one Redis round trip (the gate's) and not two (see
	// httpapi.Config.PurchaseIPLimit).
	purchaseIPLim seckill.Limiter
	captchas      seckill.CaptchaStore
	captchaLim    seckill.Limiter // captchas per user per sale
	// loginPhones and loginIPs are the back-off of failed logins per phone
	// and per client address (account.PhoneBackoff, account.IPBackoff).
	loginPhones, loginIPs seckill.LoginGuard
	// phoneLogins is the bucket of hashed logins per phone
	// (account.PhoneLoginBucket), shared like the back-off.
	phoneLogins seckill.Limiter
	locker      seckill.Locker // nil in process: the gate is this process's alone
	redis       *rdb.Client    // nil in process
	// revoked announces the sessions any instance deleted (nil in
	// process: every deletion passes through this instance's cache).
	revoked *rdb.Sessions
	// stopFollowing ends followRevocations; followed is done when it has.
	stopFollowing context.CancelFunc
	followed      sync.WaitGroup
}

// sessionCache is the in-process cache of the sessions of s, of at most
// size entries. Without Redis every change passes through it
// (soloSessionTTL). With Redis an entry is served at most sessionCacheTTL
// after it was read, and refreshed in the background after
// sessionRefreshAfter; on a single Redis, one read while the revocation
// broadcast was followed (confirmed, and not reset since) is served up to
// nodeSessionTTL and refreshed after nodeSessionRefreshAfter.
func sessionCache(s *shared, size int) *inmem.SessionCache {
	if s.redis == nil {
		return inmem.NewSessionCache(s.sessions, soloSessionTTL, size)
	}
	c := inmem.NewSessionCache(s.sessions, sessionCacheTTL, size).RefreshAfter(sessionRefreshAfter)
	if !s.redis.Cluster() {
		c.LongerWhileFollowed(nodeSessionTTL, nodeSessionRefreshAfter)
	}
	return c
}

// captchaCap is how many captchas one user gets for one sale at once, and
// captchaRefill how fast more come (per second: one every 3 minutes). A
// person who mistypes a few answers never meets the cap; a bot that hopes
// to guess one right, or to hoard them, is held to a handful.
const (
	captchaCap    = 20
	captchaRefill = 1.0 / 180
)

// defaultRedisPrefix begins every Redis key unless --redis-prefix says
// otherwise.
const defaultRedisPrefix = "seckill:"

// openShared picks the backend by configuration: --redis set → Redis
// (single node or Cluster), else in process with sessions kept in SQL.
func (m *Main) openShared(ctx context.Context, sqlSessions seckill.SessionStore) (*shared, error) {
	c := m.Config
	if c.Redis == "" {
		ipLim := inmem.NewLimiter(c.IPRate, c.IPBurst)
		return &shared{
			gate: inmem.NewGate(), sessions: sqlSessions,
			userLim: inmem.NewLimiter(c.UserRate, c.UserBurst), ipLim: ipLim, purchaseIPLim: ipLim,
			// No locker: this process owns the gate, and recovery may drain
			// the queue and reload everything.
			// On the engine's clock, which sets the captchas' expiry.
			captchas:    inmem.NewCaptchaStoreClock(m.now),
			captchaLim:  inmem.NewLimiter(captchaRefill, captchaCap),
			loginPhones: inmem.NewLoginGuard(account.PhoneBackoff),
			loginIPs:    inmem.NewLoginGuard(account.IPBackoff),
			phoneLogins: inmem.NewLimiter(account.PhoneLoginBucket.PerSecond, account.PhoneLoginBucket.Burst),
		}, nil
	}
	prefix := c.RedisPrefix
	if prefix == "" {
		prefix = defaultRedisPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("--redis-prefix %q must not contain braces", prefix)
	}
	var client *rdb.Client
	if err := retryUnreachable(ctx, m.log, "redis", func(ctx context.Context) (err error) {
		client, err = rdb.Open(ctx, c.Redis)
		return err
	}); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	switch evicting, err := client.EvictingNodes(ctx); {
	case err != nil:
		m.log.Info("redis: could not read maxmemory-policy; the gate needs noeviction", "err", err)
	case len(evicting) > 0:
		m.log.Warn("redis: maxmemory-policy is not noeviction: an evicted gate key loses buyers or units (RELIABILITY.md)", "nodes", evicting)
	}
	fast := rdb.NewSessions(client, prefix)
	// The per-address bucket of purchases is this instance's own, so that
	// a purchase costs one Redis round trip (the gate's). The address's
	// other requests here take a token from it too, before Redis's: on
	// one instance, paths, captchas, logins and purchases share one
	// bucket as in embedded mode, and a refusal costs no round trip.
	localIP := inmem.NewLimiter(c.IPRate, c.IPBurst)
	return &shared{
		gate: rdb.NewGate(client, prefix),
		// Sessions live in SQL too: Redis restarting empty logs nobody out.
		sessions: &account.Tiered{Fast: fast, Durable: sqlSessions},
		revoked:  fast,
		userLim:  rdb.NewLimiter(client, prefix+"user:", c.UserRate, c.UserBurst),
		ipLim:    bothLimiters{localIP, rdb.NewLimiter(client, prefix+"ip:", c.IPRate, c.IPBurst)},
		// Kept by each instance: N instances admit an address's purchases
		// up to N times the rate (the per-user bucket and the gate are
		// shared).
		purchaseIPLim: localIP,
		// The key's TTL is the captcha's life on the engine's clock.
		captchas: rdb.NewCaptchaStoreClock(client, prefix, m.now),
		// Shared, so a bot cannot collect a cap's worth on every instance.
		captchaLim: rdb.NewLimiter(client, prefix+"captcha-cap:", captchaRefill, captchaCap),
		// Shared, so guesses spread over instances add up.
		loginPhones: rdb.NewLoginGuard(client, prefix+"login-phone:", account.PhoneBackoff),
		loginIPs:    rdb.NewLoginGuard(client, prefix+"login-ip:", account.IPBackoff),
		// Shared too: per instance, N instances would hash N times as
		// many logins of one phone. The login pays a round trip for each
		// guard already; one more is nothing next to its hash.
		phoneLogins: rdb.NewLimiter(client, prefix+"login-budget:", account.PhoneLoginBucket.PerSecond, account.PhoneLoginBucket.Burst),
		locker:      rdb.NewLocker(client, prefix),
		redis:       client,
	}, nil
}

// checkGateKeys refuses a Redis that holds the stock of sales the
// database does not have: its keys were made with another database (a new
// or recreated one, or another deployment on the same --redis-prefix). A
// new sale would otherwise take over the keys of the old one of its id,
// units, buyers and returned orders included (found by review: the units
// of its unpaid orders never went back on sale). Redis is read before SQL,
// so a sale created meanwhile by another instance, which is in SQL before
// its keys are, is no false alarm.
func (s *shared) checkGateKeys(ctx context.Context, db *sqldb.DB) error {
	g, ok := s.gate.(*rdb.Gate)
	if !ok {
		return nil
	}
	loaded, err := g.LoadedSales(ctx)
	if err != nil || len(loaded) == 0 {
		return err
	}
	sales, err := db.Sales(ctx)
	if err != nil {
		return fmt.Errorf("check the gate's keys: %w", err)
	}
	known := make(map[int64]bool, len(sales))
	for _, sale := range sales {
		known[sale.ID] = true
	}
	var foreign []int64
	for _, id := range loaded {
		if !known[id] {
			foreign = append(foreign, id)
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	return fmt.Errorf("redis holds the stock of sales %v, which this database does not have: its keys were made with another database "+
		"(a new or recreated one, or another deployment using the same --redis-prefix %q); a new sale would take over an old one's units and buyers. "+
		"Give this database a --redis-prefix of its own, or delete the keys %s{sale:*} if their database is gone",
		foreign[:min(len(foreign), 10)], g.Prefix(), g.Prefix())
}

// ping checks that the shared backend answers (for /readyz).
func (s *shared) ping(ctx context.Context) error {
	if s == nil || s.redis == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.redis.Ping(ctx)
}

// followRevocations calls evict with the token hash of every session any
// instance deletes, and reset when some may have been missed, in the
// background until close (see rdb.Sessions.FollowRevocations). Without
// Redis there is nothing to follow.
func (s *shared) followRevocations(evict func(tokenHash []byte), reset func(followed bool)) {
	if s.revoked == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopFollowing = cancel
	s.followed.Add(1)
	go func() {
		defer s.followed.Done()
		s.revoked.FollowRevocations(ctx, evict, reset)
	}()
}

func (s *shared) close() error {
	if s == nil || s.redis == nil {
		return nil
	}
	if s.stopFollowing != nil {
		s.stopFollowing()
		s.followed.Wait()
	}
	return s.redis.Close()
}

// bothLimiters takes a token from first, then from second: a request
// that first refuses never reaches second (in Redis, a round trip saved);
// one that second refuses has spent first's token.
type bothLimiters struct{ first, second seckill.Limiter }

func (b bothLimiters) Allow(ctx context.Context, key string) (bool, error) {
	if ok, err := b.first.Allow(ctx, key); !ok || err != nil {
		return ok, err
	}
	return b.second.Allow(ctx, key)
}
