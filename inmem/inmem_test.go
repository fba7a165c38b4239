package inmem_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
	"seckill/internal/contract"
)

func TestGate(t *testing.T) {
	contract.TestStockGate(t, func(*testing.T) seckill.StockGate { return inmem.NewGate() })
}

func TestLimiter(t *testing.T) {
	contract.TestLimiter(t, func(_ *testing.T, perSecond float64, burst int) seckill.Limiter {
		return inmem.NewLimiter(perSecond, burst)
	})
}

func TestLimiterDisabled(t *testing.T) {
	l := inmem.NewLimiter(0, 0)
	for i := 0; i < 1000; i++ {
		if ok, _ := l.Allow(context.Background(), "k"); !ok {
			t.Fatal("disabled limiter denied a request")
		}
	}
}

func TestLocker(t *testing.T) {
	contract.TestLocker(t, func(*testing.T) seckill.Locker { return inmem.NewLocker() })
}

func TestCaptchaStore(t *testing.T) {
	contract.TestCaptchaStore(t, func(*testing.T) seckill.CaptchaStore { return inmem.NewCaptchaStore() })
}

// countingSessions is a SessionStore that counts lookups. When hold is
// set, a lookup reads the store, then waits for hold to close before it
// answers (a slow round trip).
type countingSessions struct {
	now     func() time.Time // time.Now when nil
	mu      sync.Mutex
	m       map[string]seckill.Session
	lookups int
	hold    chan struct{}
}

func (c *countingSessions) CreateSession(_ context.Context, s seckill.Session) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[string(s.TokenHash)] = s
	return nil
}
func (c *countingSessions) Session(_ context.Context, h []byte) (*seckill.Session, error) {
	c.mu.Lock()
	c.lookups++
	s, ok := c.m[string(h)]
	hold := c.hold
	c.mu.Unlock()
	if hold != nil {
		<-hold
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	if !ok || !now().Before(s.ExpiresAt) {
		return nil, seckill.Errorf(seckill.ENotFound, "no session")
	}
	return &s, nil
}
func (c *countingSessions) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookups
}
func (c *countingSessions) TouchSession(_ context.Context, h []byte, exp time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[string(h)]; ok {
		s.ExpiresAt = exp
		c.m[string(h)] = s
	}
	return nil
}
func (c *countingSessions) DeleteSession(_ context.Context, h []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, string(h))
	return nil
}

func TestSessionCache(t *testing.T) {
	ctx := context.Background()
	store := &countingSessions{m: map[string]seckill.Session{}}
	c := inmem.NewSessionCache(store, time.Minute, 2)
	s := seckill.Session{TokenHash: []byte("h1"), UserID: 1, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
	if err := c.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		got, err := c.Session(ctx, []byte("h1"))
		if err != nil || got.UserID != 1 {
			t.Fatalf("Session = %v, %v", got, err)
		}
	}
	if store.count() != 1 {
		t.Fatalf("%d store lookups for 5 cached reads, want 1", store.lookups)
	}
	// Touch updates the cached expiry too.
	exp := time.Now().Add(2 * time.Hour)
	if err := c.TouchSession(ctx, []byte("h1"), exp); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Session(ctx, []byte("h1")); !got.ExpiresAt.Equal(exp) {
		t.Fatalf("expiry after touch = %v, want %v", got.ExpiresAt, exp)
	}
	// Logout is seen at once.
	if err := c.DeleteSession(ctx, []byte("h1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Session(ctx, []byte("h1")); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("session after delete: %v", err)
	}
	// The cache stays bounded.
	for i := 0; i < 10; i++ {
		h := []byte{byte(i)}
		_ = c.CreateSession(ctx, seckill.Session{TokenHash: h, UserID: int64(i), ExpiresAt: time.Now().Add(time.Hour)})
		if _, err := c.Session(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
}

// clock is a time that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestSessionCacheExpiry: a session that expires while cached is refused
// from the cache, and a touch after its expiry does not bring it back
// (the store leaves an expired session alone).
func TestSessionCacheExpiry(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	c := inmem.NewSessionCacheClock(inmem.NewStoreClock(clk.Now), time.Hour, 10, clk.Now)
	short := seckill.Session{TokenHash: []byte("short"), UserID: 9, ExpiresAt: clk.Now().Add(time.Minute)}
	_ = c.CreateSession(ctx, short)
	if _, err := c.Session(ctx, short.TokenHash); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Minute)
	if _, err := c.Session(ctx, short.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("expired session served: %v", err)
	}

	s := seckill.Session{TokenHash: []byte("touched"), UserID: 10, ExpiresAt: clk.Now().Add(time.Minute)}
	_ = c.CreateSession(ctx, s)
	if _, err := c.Session(ctx, s.TokenHash); err != nil { // cached
		t.Fatal(err)
	}
	clk.advance(2 * time.Minute)
	if err := c.TouchSession(ctx, s.TokenHash, clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Session(ctx, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("session touched after it expired = %+v, %v; want not found, as the store says", got, err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func TestSessionCacheRevalidates(t *testing.T) {
	ctx := context.Background()
	h := []byte("h1")
	clk := newClock()
	store := &countingSessions{m: map[string]seckill.Session{}, now: clk.Now}
	c := inmem.NewSessionCacheClock(store, 20*time.Millisecond, 100, clk.Now).Revalidate(time.Hour)
	refreshed := make(chan struct{}, 10)
	inmem.AfterRefresh(c, func() { refreshed <- struct{}{} })
	awaitRefresh := func() {
		t.Helper()
		select {
		case <-refreshed:
		case <-time.After(5 * time.Second):
			t.Fatal("the background lookup did not settle")
		}
	}
	_ = c.CreateSession(ctx, seckill.Session{TokenHash: h, UserID: 1, ExpiresAt: clk.Now().Add(time.Hour)})
	get := func() error { _, err := c.Session(ctx, h); return err }
	if err := get(); err != nil || store.count() != 1 {
		t.Fatalf("first lookup: %v, %d store lookups", err, store.count())
	}

	// Past the TTL the cached entry answers at once and a background
	// lookup refreshes it.
	clk.advance(30 * time.Millisecond)
	if err := get(); err != nil {
		t.Fatal(err)
	}
	awaitRefresh()
	if n := store.count(); n != 2 {
		t.Fatalf("%d store lookups, want 2", n)
	}

	// Deleted elsewhere (another instance's logout): the next request
	// past the TTL is still served, its background lookup finds the
	// session gone, and every request after that is refused.
	store.mu.Lock()
	delete(store.m, string(h))
	store.mu.Unlock()
	clk.advance(30 * time.Millisecond)
	if err := get(); err != nil {
		t.Fatalf("stale entry not served: %v", err)
	}
	awaitRefresh()
	if err := get(); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("session deleted elsewhere: %v, want not found", err)
	}

	// A logout here while a background lookup is under way stays a
	// logout, although the lookup read the session before it.
	hold := make(chan struct{})
	_ = c.CreateSession(ctx, seckill.Session{TokenHash: h, UserID: 1, ExpiresAt: clk.Now().Add(time.Hour)})
	if err := get(); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.hold = hold
	store.mu.Unlock()
	clk.advance(30 * time.Millisecond)
	n := store.count()
	if err := get(); err != nil { // starts the held lookup
		t.Fatal(err)
	}
	waitFor(t, "the background lookup started", func() bool { return store.count() == n+1 })
	if err := c.DeleteSession(ctx, h); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.hold = nil
	store.mu.Unlock()
	close(hold)
	awaitRefresh()
	if err := get(); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("session after logout during a refresh: %v", err)
	}
}

func TestLoginGuard(t *testing.T) {
	contract.TestLoginGuard(t, func(_ *testing.T, p seckill.Backoff) seckill.LoginGuard {
		return inmem.NewLoginGuard(p)
	})
}

// hookedStore runs hook once, after its first Session read found the
// session and before it returns it.
type hookedStore struct {
	*inmem.Store
	hook func()
}

func (h *hookedStore) Session(ctx context.Context, hash []byte) (*seckill.Session, error) {
	s, err := h.Store.Session(ctx, hash)
	if hook := h.hook; hook != nil && err == nil {
		h.hook = nil
		hook()
	}
	return s, err
}

// TestSessionCacheLogoutRacingMiss: a logout that completes while a cache
// miss reads the store must not leave the session cached (issue 12 item 8),
// and DeleteUserSessions ends every session of the user, cached or not.
func TestSessionCacheLogoutRacingMiss(t *testing.T) {
	ctx := context.Background()
	store := &hookedStore{Store: inmem.NewStore()}
	c := inmem.NewSessionCache(store, time.Hour, 100)
	sess := seckill.Session{TokenHash: []byte("t1"), UserID: 7, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
	if err := c.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	store.hook = func() {
		if err := c.DeleteSession(ctx, sess.TokenHash); err != nil {
			t.Error(err)
		}
	}
	_, _ = c.Session(ctx, sess.TokenHash)
	if _, err := c.Session(ctx, sess.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("logged-out session after the race: %v", err)
	}

	for i, tok := range []string{"a", "b", "c"} {
		s := seckill.Session{TokenHash: []byte(tok), UserID: int64(8 + i/2), Role: seckill.RoleAdmin, ExpiresAt: time.Now().Add(time.Hour)}
		if err := c.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Session(ctx, s.TokenHash); err != nil { // cached
			t.Fatal(err)
		}
	}
	hashes, err := c.DeleteUserSessions(ctx, 8)
	if err != nil || len(hashes) != 2 {
		t.Fatalf("DeleteUserSessions: %q, %v", hashes, err)
	}
	for _, tok := range []string{"a", "b"} {
		if _, err := c.Session(ctx, []byte(tok)); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Errorf("session %s of the user: %v", tok, err)
		}
	}
	if _, err := c.Session(ctx, []byte("c")); err != nil {
		t.Errorf("another user's session: %v", err)
	}
}
