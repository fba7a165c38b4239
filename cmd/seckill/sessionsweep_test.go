package main

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"seckill"
	"seckill/sqldb"
)

// addSessions stores a user with one session that expired an hour more
// than the sweep's grace ago and one that lasts a day, and returns the
// user.
func addSessions(t *testing.T, db *sqldb.DB, phone string) *seckill.User {
	t.Helper()
	ctx := context.Background()
	u := &seckill.User{Phone: phone, Nickname: "n", Role: seckill.RoleBuyer, PasswordHash: "x"}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for name, exp := range map[string]time.Duration{"expired": -sessionSweepGrace - time.Hour, "live": 24 * time.Hour} {
		h := sha256.Sum256([]byte(phone + name))
		if err := db.CreateSession(ctx, seckill.Session{TokenHash: h[:], UserID: u.ID, Role: u.Role, ExpiresAt: time.Now().Add(exp)}); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// waitSessions waits until the user has n sessions in db.
func waitSessions(t *testing.T, db *sqldb.DB, u *seckill.User, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := db.UserSessions(context.Background(), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %s has %d sessions, want %d", u.Phone, len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeDeletesExpiredSessions: `seckill serve` deletes the sessions
// that expired while it was down as it starts, and keeps the live ones.
func TestServeDeletesExpiredSessions(t *testing.T) {
	dir := t.TempDir()
	db, err := sqldb.Open(context.Background(), "sqlite:"+filepath.Join(dir, "seckill.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u := addSessions(t, db, "13800000000")
	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel, m.Config.Ops.Addr = "127.0.0.1:0", dir, "error", "off"
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	defer m.Close()
	waitSessions(t, db, u, 1)
}

// TestSweepSessionsRepeats: the sweep runs again every interval, and
// returns when its context ends.
func TestSweepSessionsRepeats(t *testing.T) {
	db, err := sqldb.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "seckill.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sweepSessions(ctx, db, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	u := addSessions(t, db, "13800000001") // after the first sweep, likely
	waitSessions(t, db, u, 1)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sweepSessions still running after its context ended")
	}
}

// TestSweepSessionsSparesLaggingClocks: a session's expiry is one instant,
// read on several clocks: the sweep judges it on the database's, Redis
// keeps the session's fast copy until it on Redis's (PEXPIREAT), and the
// instance that serves it on its own. Where one of those runs behind the
// database's (two hours here; the engine is built to run on such clocks),
// the sweep deleted from SQL a session still served: a Redis copy then is
// named by no store a revocation asks (account.Tiered's
// DeleteUserSessions lists the durable store's), so a password change or
// a revocation left it serving. Only sessions expired on any plausible
// clock go.
func TestSweepSessionsSparesLaggingClocks(t *testing.T) {
	db, err := sqldb.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "seckill.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	u := &seckill.User{Phone: "13800000002", Nickname: "n", Role: seckill.RoleBuyer, PasswordHash: "x"}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	lagging := time.Now().Add(-2 * time.Hour) // the opening instance's clock
	for name, exp := range map[string]time.Time{
		"lagging": lagging.Add(time.Hour),          // an hour left on its clock
		"long":    time.Now().Add(-48 * time.Hour), // expired on any clock
	} {
		h := sha256.Sum256([]byte(name))
		if err := db.CreateSession(ctx, seckill.Session{TokenHash: h[:], UserID: u.ID, Role: u.Role, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sweepSessions(sctx, db, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	var got [][]byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got, err = db.UserSessions(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if len(got) < 2 || time.Now().After(deadline) {
			break // the first sweep ran
		}
	}
	cancel()
	<-done
	want := sha256.Sum256([]byte("lagging"))
	if len(got) != 1 || string(got[0]) != string(want[:]) {
		t.Fatalf("after the sweep the user has %d sessions, want the lagging instance's live one", len(got))
	}
}
