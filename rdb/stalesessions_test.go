package rdb

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/account"
	"seckill/inmem"
)

// TestSessionsBackWithOlderData: Redis restarts from a snapshot taken before
// a logout and a revocation, so it holds those sessions again. Neither an
// instance that connects afterwards nor one that was connected before may
// serve them: they read as missing in Redis, and SQL (here the in-process
// store), which no longer has them, decides. A session still live works on,
// refilled from SQL in the new server's epoch; the connected instance's
// revocation feed resets its session cache.
func TestSessionsBackWithOlderData(t *testing.T) {
	srv := newSnapshotRedis(t)
	ctx := context.Background()
	durable := inmem.NewStore()
	type instance struct {
		fast   *Sessions
		tiered *account.Tiered
	}
	open := func() instance {
		t.Helper()
		c := openClient(t, srv.URL())
		fast := NewSessions(c, "t:")
		return instance{fast, &account.Tiered{Fast: fast, Durable: durable}}
	}
	sess := func(tok string, user int64) seckill.Session {
		return seckill.Session{TokenHash: account.HashToken(tok), UserID: user, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
	}
	live, loggedOut, revoked := sess("live", 1), sess("logged-out", 1), sess("revoked", 2)
	// fastSession asks Redis alone, until it answers (the first calls
	// after a restart may meet a connection being re-established).
	fastSession := func(s *Sessions, h []byte) (*seckill.Session, error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := s.Session(ctx, h)
			if seckill.ErrorCode(err) != seckill.EBusy {
				return got, err
			}
			if time.Now().After(deadline) {
				t.Fatalf("Session: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// restartFromSnapshot kills the server and starts it from dump.rdb,
	// checking that it brought back the ended sessions.
	restartFromSnapshot := func() {
		t.Helper()
		srv.Kill()
		srv.Start()
		for _, s := range []seckill.Session{loggedOut, revoked} {
			key := (&Sessions{prefix: "t:"}).keys(s.TokenHash)[0]
			if n, err := srv.Raw().Exists(ctx, key).Result(); err != nil || n != 1 {
				t.Fatalf("after the restart %s: %d, %v; want the snapshot's session", key, n, err)
			}
		}
	}

	a := open()
	f := follow(t, a.fast)
	for _, s := range []seckill.Session{live, loggedOut, revoked} {
		if err := a.tiered.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Raw().Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.tiered.DeleteSession(ctx, loggedOut.TokenHash); err != nil { // logout
		t.Fatal(err)
	}
	if _, err := a.tiered.DeleteUserSessions(ctx, 2); err != nil { // password change
		t.Fatal(err)
	}

	// A new instance, connecting after the restart.
	restartFromSnapshot()
	b := open()
	for _, s := range []seckill.Session{loggedOut, revoked} {
		if got, err := fastSession(b.fast, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("a new instance reads an ended session from the restored Redis: %v, %v", got, err)
		}
		if got, err := b.tiered.Session(ctx, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("a new instance serves an ended session: %v, %v", got, err)
		}
	}
	if got, err := b.tiered.Session(ctx, live.TokenHash); err != nil || got.UserID != 1 {
		t.Fatalf("a new instance, live session: %v, %v", got, err)
	}

	// The instance connected before learns it from its new connections.
	_, resets := f.state()
	restartFromSnapshot()
	waitFor(t, "the session cache reset after the restart", func() bool { _, n := f.state(); return n > resets })
	for _, s := range []seckill.Session{loggedOut, revoked} {
		if got, err := fastSession(a.fast, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("the connected instance reads an ended session from the restored Redis: %v, %v", got, err)
		}
		if got, err := a.tiered.Session(ctx, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("the connected instance serves an ended session: %v, %v", got, err)
		}
		// And it stays ended: the stale copy is gone, not only skipped.
		key := a.fast.keys(s.TokenHash)[0]
		if n, err := srv.Raw().Exists(ctx, key).Result(); err != nil || n != 0 {
			t.Fatalf("%s after the read: %d, %v; want deleted", key, n, err)
		}
	}
	if _, err := fastSession(a.fast, live.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("the live session's copy from before the restart is believed: %v", err)
	}
	if got, err := a.tiered.Session(ctx, live.TokenHash); err != nil || got.UserID != 1 {
		t.Fatalf("the connected instance, live session: %v, %v", got, err)
	}
	// Refilled from SQL in the new epoch: Redis answers alone again, on
	// both instances.
	for _, in := range []instance{a, b} {
		if got, err := fastSession(in.fast, live.TokenHash); err != nil || got.UserID != 1 {
			t.Fatalf("live session refilled in Redis: %v, %v", got, err)
		}
	}
}

// TestSessionsCheckConn: the check a new server's first connection runs
// makes the server's sessions written in another epoch (restored from
// another server's data) read as missing; on a Cluster the groups of the
// other masters answer MOVED and are not a failure.
func TestSessionsCheckConn(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		s := NewSessions(c, testPrefix(t, c))
		sess := seckill.Session{TokenHash: account.HashToken("tok"), UserID: 3, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		var node *redis.Client
		keys := s.keys(sess.TokenHash)
		if cc, ok := c.base.(*redis.ClusterClient); ok {
			var err error
			if node, err = cc.MasterForKey(ctx, keys[0]); err != nil {
				t.Fatal(err)
			}
		} else {
			node = c.base.(*redis.Client)
		}
		// As a restart from another server's snapshot leaves them: the
		// session and its group's epoch both of that server, which had
		// this one's replication ID (a server restarted from its own
		// snapshot keeps it; on a Cluster a script renews an epoch of
		// another replication ID itself).
		info, err := node.Info(ctx, "replication").Result()
		if err != nil {
			t.Fatal(err)
		}
		old := "old " + infoField(info, "master_replid")
		if err := c.rdb.HSet(ctx, keys[0], "s", old).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.rdb.Set(ctx, keys[1], old, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, sess.TokenHash); err != nil {
			t.Fatalf("before the check: %v", err)
		}
		cn := node.Conn()
		defer cn.Close()
		if err := s.checkConn(ctx, cn); err != nil {
			t.Fatalf("checkConn: %v", err)
		}
		if got, err := s.Session(ctx, sess.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("a session of another epoch after the check: %v, %v", got, err)
		}
	})
}
