package account

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"seckill"
	"seckill/internal/contract"
	"seckill/internal/testenv"
	"seckill/rdb"
)

// mapSessions is a plain in-memory SessionStore that can be emptied or
// broken, standing in for Redis.
type mapSessions struct {
	m      map[string]seckill.Session
	broken bool
	reads  int
	// failDeletes makes that many DeleteSession calls fail.
	failDeletes int
}

func newMapSessions() *mapSessions { return &mapSessions{m: map[string]seckill.Session{}} }

func (m *mapSessions) CreateSession(_ context.Context, s seckill.Session) error {
	if m.broken {
		return errors.New("down")
	}
	m.m[string(s.TokenHash)] = s
	return nil
}
func (m *mapSessions) Session(_ context.Context, h []byte) (*seckill.Session, error) {
	m.reads++
	if m.broken {
		return nil, seckill.Errorf(seckill.EBusy, "down")
	}
	s, ok := m.m[string(h)]
	if !ok || !time.Now().Before(s.ExpiresAt) {
		return nil, seckill.Errorf(seckill.ENotFound, "no session")
	}
	return &s, nil
}
func (m *mapSessions) TouchSession(_ context.Context, h []byte, exp time.Time) error {
	if s, ok := m.m[string(h)]; ok {
		s.ExpiresAt = exp
		m.m[string(h)] = s
	}
	return nil
}
func (m *mapSessions) DeleteSession(_ context.Context, h []byte) error {
	if m.failDeletes > 0 {
		m.failDeletes--
		return errors.New("down")
	}
	delete(m.m, string(h))
	return nil
}

func (m *mapSessions) UserSessions(_ context.Context, user int64) ([][]byte, error) {
	var out [][]byte
	for k, s := range m.m {
		if s.UserID == user {
			out = append(out, []byte(k))
		}
	}
	return out, nil
}

func (m *mapSessions) DeleteUserSessions(_ context.Context, user int64) ([][]byte, error) {
	var out [][]byte
	for k, s := range m.m {
		if s.UserID == user {
			out = append(out, []byte(k))
			delete(m.m, k)
		}
	}
	return out, nil
}

func TestTieredContract(t *testing.T) {
	contract.TestSessionStore(t, func(*testing.T) seckill.SessionStore {
		return &Tiered{Fast: newMapSessions(), Durable: newMapSessions()}
	})
}

// newTieredSession returns a Tiered over two map stores holding one
// session of user 7 (token "tok"), created through it.
func newTieredSession(t *testing.T) (fast, durable *mapSessions, tiered *Tiered, s seckill.Session) {
	fast, durable = newMapSessions(), newMapSessions()
	tiered = &Tiered{Fast: fast, Durable: durable}
	s = seckill.Session{TokenHash: HashToken("tok"), UserID: 7, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
	if err := tiered.CreateSession(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return fast, durable, tiered, s
}

// TestTieredSurvivesFastLoss: the fast store restarting empty or failing
// logs nobody out, and a refilled session is read from the fast store.
func TestTieredSurvivesFastLoss(t *testing.T) {
	ctx := context.Background()
	fast, durable, tiered, s := newTieredSession(t)
	fast.m = map[string]seckill.Session{} // restarted empty
	got, err := tiered.Session(ctx, s.TokenHash)
	if err != nil || got.UserID != 7 {
		t.Fatalf("after the fast store lost it: %v, %v", got, err)
	}
	if _, ok := fast.m[string(s.TokenHash)]; !ok {
		t.Fatal("fast store not refilled")
	}
	durable.reads = 0
	if _, err := tiered.Session(ctx, s.TokenHash); err != nil || durable.reads != 0 {
		t.Fatalf("second read went to the durable store (%d reads, %v)", durable.reads, err)
	}
	fast.broken = true
	if got, err := tiered.Session(ctx, s.TokenHash); err != nil || got.UserID != 7 {
		t.Fatalf("with the fast store down: %v, %v", got, err)
	}
	fast.broken = false
	if err := tiered.DeleteSession(ctx, s.TokenHash); err != nil {
		t.Fatal(err)
	}
	if _, err := tiered.Session(ctx, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("deleted session: %v", err)
	}
}

// hookedSessions runs hook once, after its first Session read found the
// session and before it returns it: a logout landing in that gap.
type hookedSessions struct {
	seckill.SessionStore
	hook func()
}

func (h *hookedSessions) Session(ctx context.Context, hash []byte) (*seckill.Session, error) {
	s, err := h.SessionStore.Session(ctx, hash)
	if hook := h.hook; hook != nil && err == nil {
		h.hook = nil
		hook()
	}
	return s, err
}

// TestTieredLogoutRacingRefill: a logout that completes between a fast-store
// miss's read of the durable store and the refill must not be undone by
// the refill (issue 12 item 8).
func TestTieredLogoutRacingRefill(t *testing.T) {
	ctx := context.Background()
	fast := newMapSessions()
	durable := &hookedSessions{SessionStore: newMapSessions()}
	tiered := &Tiered{Fast: fast, Durable: durable}
	s := seckill.Session{TokenHash: HashToken("tok"), UserID: 7, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
	if err := tiered.Durable.CreateSession(ctx, s); err != nil { // in SQL, not in Redis
		t.Fatal(err)
	}
	durable.hook = func() {
		if err := tiered.DeleteSession(ctx, s.TokenHash); err != nil {
			t.Error(err)
		}
	}
	_, _ = tiered.Session(ctx, s.TokenHash) // raced the logout: either answer is fair
	if _, ok := fast.m[string(s.TokenHash)]; ok {
		t.Fatal("the refill copied the logged-out session back into the fast store")
	}
	if _, err := tiered.Session(ctx, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("logged-out session after the race: %v", err)
	}
}

// TestTieredRevocationRetriedAfterFastFailure: when the fast store fails
// while a user's sessions are ended (a password change), the call fails
// and a retry still ends every session in both stores: the durable store
// must not have forgotten which sessions the fast store still serves.
func TestTieredRevocationRetriedAfterFastFailure(t *testing.T) {
	ctx := context.Background()
	fast, durable := newMapSessions(), newMapSessions()
	tiered := &Tiered{Fast: fast, Durable: durable}
	exp := time.Now().Add(time.Hour)
	for _, tok := range []string{"a", "b"} {
		if err := tiered.CreateSession(ctx, seckill.Session{TokenHash: HashToken(tok), UserID: 7, Role: seckill.RoleBuyer, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	fast.failDeletes = 1
	if _, err := tiered.DeleteUserSessions(ctx, 7); err == nil {
		t.Fatal("DeleteUserSessions succeeded with the fast store failing")
	}
	if _, err := tiered.DeleteUserSessions(ctx, 7); err != nil {
		t.Fatalf("retry: %v", err)
	}
	for _, tok := range []string{"a", "b"} {
		if _, err := tiered.Session(ctx, HashToken(tok)); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Errorf("session %s after the retried revocation: %v", tok, err)
		}
	}
}

// TestTieredFailedLogoutLeavesNoZombie: a logout whose deletion fails on
// the fast store must leave the session where the durable store still
// names it, so that ending the user's sessions later (a password change)
// ends it. Deleting from the durable store first left it in the fast
// store alone, where every instance went on serving it for its whole
// lifetime and no revocation could find it.
func TestTieredFailedLogoutLeavesNoZombie(t *testing.T) {
	ctx := context.Background()
	fast, _, tiered, s := newTieredSession(t)
	fast.failDeletes = 1
	if err := tiered.DeleteSession(ctx, s.TokenHash); err == nil {
		t.Fatal("DeleteSession succeeded with the fast store failing")
	}
	if _, err := tiered.DeleteUserSessions(ctx, 7); err != nil { // the password change
		t.Fatal(err)
	}
	if got, err := tiered.Session(ctx, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("session after a failed logout and a password change: %v, %v", got, err)
	}
}

// TestTieredFastStoreBackWithOlderData: a fast store that comes back with
// older data (Redis restarted from an RDB snapshot or an AOF written every
// second, a replica promoted before it had the last DEL) holds again a
// session logged out since. The durable store no longer has it; were the
// fast-store hit believed, every instance would serve it again (the
// broadcast went out before the failover), TouchSession would keep it
// alive in Redis for as long as it is used, and no revocation would find
// it (SQL does not name it). Redis (a server of the test's own, restarted
// from a snapshot) must answer a miss for what it held before the
// restart, so the durable store decides: the logged-out session is
// refused, a live one is served and refilled.
func TestTieredFastStoreBackWithOlderData(t *testing.T) {
	srv := testenv.StartRedis(t)
	ctx := context.Background()
	client, err := rdb.Open(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	durable := newMapSessions()
	tiered := &Tiered{Fast: rdb.NewSessions(client, "t:"), Durable: durable}
	exp := time.Now().Add(time.Hour)
	gone := seckill.Session{TokenHash: HashToken("gone"), UserID: 7, Role: seckill.RoleBuyer, ExpiresAt: exp}
	live := seckill.Session{TokenHash: HashToken("live"), UserID: 8, Role: seckill.RoleBuyer, ExpiresAt: exp}
	for _, s := range []seckill.Session{gone, live} {
		if err := tiered.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Raw().Save(ctx).Err(); err != nil { // the snapshot
		t.Fatal(err)
	}
	if err := tiered.DeleteSession(ctx, gone.TokenHash); err != nil {
		t.Fatal(err)
	}
	srv.Kill() // the failover
	srv.Start()
	if keys, err := srv.Raw().Keys(ctx, "t:*"+hex.EncodeToString(gone.TokenHash)).Result(); err != nil || len(keys) != 1 {
		t.Fatalf("the restarted Redis holds %q, %v; want the snapshot's copy of the logged-out session", keys, err)
	}
	// Meanwhile the client reconnects, and Tiered answers from the
	// durable store alone: wait until Redis answers.
	waitUntil(t, "Redis answering", func() bool {
		_, err := tiered.Fast.Session(ctx, HashToken("probe"))
		return seckill.ErrorCode(err) == seckill.ENotFound
	})
	if got, err := tiered.Session(ctx, gone.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("logged-out session after the fast store came back older: %v, %v", got, err)
	}
	if got, err := tiered.Session(ctx, live.TokenHash); err != nil || got.UserID != 8 {
		t.Fatalf("live session after the fast store came back older: %v, %v", got, err)
	}
	durable.reads = 0
	if got, err := tiered.Session(ctx, live.TokenHash); err != nil || got.UserID != 8 || durable.reads != 0 {
		t.Fatalf("live session not refilled: %v, %v, %d durable reads", got, err, durable.reads)
	}
}

// ctxSessions fails a DeleteSession whose context ended, as Redis's
// client does, and counts the ones done.
type ctxSessions struct {
	*mapSessions
	deletes int
}

func (c *ctxSessions) DeleteSession(ctx context.Context, h []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.deletes++
	return c.mapSessions.DeleteSession(ctx, h)
}

// cancellingSessions ends the caller's context once its deletion is done:
// the request of a logout cancelled right after the durable deletion.
type cancellingSessions struct {
	seckill.SessionStore
	cancel context.CancelFunc
}

func (c *cancellingSessions) DeleteSession(ctx context.Context, h []byte) error {
	defer c.cancel()
	return c.SessionStore.DeleteSession(ctx, h)
}

func (c *cancellingSessions) UserSessions(ctx context.Context, user int64) ([][]byte, error) {
	return c.SessionStore.(seckill.SessionRevoker).UserSessions(ctx, user)
}

func (c *cancellingSessions) DeleteUserSessions(ctx context.Context, user int64) ([][]byte, error) {
	defer c.cancel()
	return c.SessionStore.(seckill.SessionRevoker).DeleteUserSessions(ctx, user)
}

// TestTieredLastPassOutlivesTheCaller: the fast store's pass after the
// durable deletion runs although the caller's context ended in between
// (the logout's request cancelled): it announces the deletion to the
// instances that cached the session from the durable store between the
// passes, which otherwise hear nothing (a minute, on a single Redis).
func TestTieredLastPassOutlivesTheCaller(t *testing.T) {
	for _, all := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		fast := &ctxSessions{mapSessions: newMapSessions()}
		durable := &cancellingSessions{SessionStore: newMapSessions(), cancel: cancel}
		tiered := &Tiered{Fast: fast, Durable: durable}
		s := seckill.Session{TokenHash: HashToken("tok"), UserID: 7, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
		if err := tiered.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		var err error
		if all {
			_, err = tiered.DeleteUserSessions(ctx, 7)
		} else {
			err = tiered.DeleteSession(ctx, s.TokenHash)
		}
		if err != nil || fast.deletes != 2 {
			t.Errorf("all sessions %v: %v, %d fast deletions, want both passes", all, err, fast.deletes)
		}
		cancel()
	}
}
