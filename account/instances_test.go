package account

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
	"seckill/internal/testenv"
	"seckill/rdb"
	"seckill/sqldb"
)

// instance is one server's account service as `seckill serve` builds it
// with Redis: its own Redis client and session cache over account.Tiered
// (Redis, then SQL), and, when following, the revocation feed into the
// cache.
type instance struct {
	s     *Service
	cache *inmem.SessionCache
	clock *fakeClock
}

// newInstances builds n instances on one SQL database and one Redis (a
// fresh key prefix), each with a session cache of ttl; follow says whether
// they listen to the revocation feed (waiting until they do).
func newInstances(t *testing.T, n int, ttl time.Duration, follow bool) ([]*instance, *sqldb.DB) {
	t.Helper()
	url := testenv.URL(t, "SECKILL_TEST_REDIS")
	db := openDB(t)
	prefix := testenv.Name("accttest") + ":"
	var out []*instance
	for range n {
		ctx, cancel := context.WithCancel(context.Background())
		client, err := rdb.Open(ctx, url)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		fast := rdb.NewSessions(client, prefix)
		clock := newClock()
		cache := inmem.NewSessionCacheClock(&Tiered{Fast: fast, Durable: db}, ttl, 1000, clock.Now)
		done := make(chan struct{})
		var subscribed atomic.Bool
		if follow {
			go func() {
				defer close(done)
				fast.FollowRevocations(ctx, cache.Evict, func(bool) { cache.Reset(); subscribed.Store(true) })
			}()
		} else {
			close(done)
		}
		t.Cleanup(func() { cancel(); <-done; client.Close() })
		if follow {
			waitUntil(t, "the revocation feed subscribed", subscribed.Load)
		}
		s, err := New(db, cache, Config{Params: cheap, SessionTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		s.now = clock.Now
		out = append(out, &instance{s: s, cache: cache, clock: clock})
	}
	return out, db
}

// waitUntil polls cond for up to 10 s: news from another instance travels
// through Redis, which takes the time it takes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func refused(s *Service, token string) func() bool {
	return func() bool {
		_, err := s.Authenticate(context.Background(), token)
		return seckill.ErrorCode(err) == seckill.EUnauthenticated
	}
}

// TestLogoutAcrossInstances: a logout on instance A is refused on
// instance B, which had the session cached for an hour, as soon as the
// revocation broadcast arrives: only the broadcast can have ended it.
func TestLogoutAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	in, _ := newInstances(t, 2, time.Hour, true)
	a, b := in[0], in[1]
	if _, err := a.s.Register(ctx, phone, password, "nick"); err != nil {
		t.Fatal(err)
	}
	token, _, u, err := a.s.Login(ctx, phone, password)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _, err := a.s.Login(ctx, phone, password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.s.EndSessions(context.Background(), u.ID) })
	for _, tok := range []string{token, other} {
		if _, err := b.s.Authenticate(ctx, tok); err != nil { // cached on B now
			t.Fatal(err)
		}
	}
	if err := a.s.Logout(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.Authenticate(ctx, token); seckill.ErrorCode(err) != seckill.EUnauthenticated {
		t.Fatalf("on A after its logout: %v", err)
	}
	waitUntil(t, "B refuses the session logged out on A", refused(b.s, token))
	if _, err := b.s.Authenticate(ctx, other); err != nil {
		t.Fatalf("the user's other session on B: %v", err)
	}
}

// TestPasswordChangeAcrossInstances: a change of password on instance A
// (EnsureAdmin rotating it, which ends every session of the account, as any
// change of password must) is refused on instance B for every session of
// the account, including one B opened itself.
func TestPasswordChangeAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	in, _ := newInstances(t, 2, time.Hour, true)
	a, b := in[0], in[1]
	u, err := a.s.EnsureAdmin(ctx, phone, "first password")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.s.EndSessions(context.Background(), u.ID) })
	onA, _, _, err := a.s.Login(ctx, phone, "first password")
	if err != nil {
		t.Fatal(err)
	}
	onB, _, _, err := b.s.Login(ctx, phone, "first password")
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{onA, onB} {
		if _, err := b.s.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.s.EnsureAdmin(ctx, phone, "second password"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "B refuses the session A opened before the change", refused(b.s, onA))
	waitUntil(t, "B refuses the session B opened before the change", refused(b.s, onB))
	if _, _, _, err := b.s.Login(ctx, phone, "second password"); err != nil {
		t.Fatalf("login with the new password on B: %v", err)
	}
}

// TestRevocationLostBound: an instance that hears no broadcast (here: not
// following; in production, one lost) serves a session logged out
// elsewhere for at most its cache TTL.
func TestRevocationLostBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ttl = 10 * time.Second
	in, _ := newInstances(t, 2, ttl, false)
	a, b := in[0], in[1]
	if _, err := a.s.Register(ctx, phone, password, "nick"); err != nil {
		t.Fatal(err)
	}
	token, _, _, err := a.s.Login(ctx, phone, password)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.s.Authenticate(ctx, token); err != nil {
		t.Fatal(err)
	}
	if err := a.s.Logout(ctx, token); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(ttl - time.Millisecond)
	if _, err := b.s.Authenticate(ctx, token); err != nil {
		t.Fatalf("B before the TTL (answered from its cache, by design): %v", err)
	}
	b.clock.Advance(time.Millisecond)
	if _, err := b.s.Authenticate(ctx, token); seckill.ErrorCode(err) != seckill.EUnauthenticated {
		t.Fatalf("B at the TTL after a logout on A: %v, want unauthenticated", err)
	}
}

// countingStore counts the lookups that reach the store behind a cache.
type countingStore struct {
	seckill.SessionStore
	lookups, touches atomic.Int64
}

func (c *countingStore) Session(ctx context.Context, h []byte) (*seckill.Session, error) {
	c.lookups.Add(1)
	return c.SessionStore.Session(ctx, h)
}

func (c *countingStore) TouchSession(ctx context.Context, h []byte, exp time.Time) error {
	c.touches.Add(1)
	return c.SessionStore.TouchSession(ctx, h, exp)
}

// TestCrowdPaysNoLookup: a buyer's requests, after the first, do not reach
// the session store while the entry is younger than the cache TTL, and
// sliding expiry writes once per twenty-fourth of the session lifetime,
// not per request, through the cache.
func TestCrowdPaysNoLookup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, Config{}, nil)
	store := &countingStore{SessionStore: f.db}
	cache := inmem.NewSessionCacheClock(store, 10*time.Second, 1000, f.clock.Now)
	f.s.sessions = cache
	f.register(t, phone, password)
	token, _ := f.login(t, phone, password)
	for range 100 {
		if _, err := f.s.Authenticate(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.lookups.Load(); n != 0 {
		t.Fatalf("%d store lookups for 100 requests of a session opened here, want 0", n)
	}
	cache.Reset() // as if the session were opened on another instance
	for range 100 {
		if _, err := f.s.Authenticate(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.lookups.Load(); n != 1 {
		t.Fatalf("%d store lookups for 100 requests, want 1", n)
	}
	// Sliding expiry: an hour on (of the 24 h lifetime), a request
	// extends the session once, whatever the number of requests.
	for range 3 {
		f.clock.Advance(time.Hour + time.Minute)
		for range 50 {
			if _, err := f.s.Authenticate(ctx, token); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := store.touches.Load(); n != 3 {
		t.Fatalf("%d touches for 3 hours of requests, want 3", n)
	}
	f.clock.Advance(23 * time.Hour) // the last touch moved the expiry 24 h on
	if _, err := f.s.Authenticate(ctx, token); err != nil {
		t.Fatalf("session extended by the touches: %v", err)
	}
}
