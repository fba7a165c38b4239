package account

import (
	"context"
	"errors"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
	"seckill/sqldb"
)

// TestEnsureAdminEndsSessions: rotating the admin's password at start-up
// ends the sessions opened with the old one, through the session cache
// too; starting again with the same password keeps them (issue 12 item 8).
func TestEnsureAdminEndsSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, Config{}, func(db *sqldb.DB) seckill.SessionStore { return inmem.NewSessionCache(db, time.Hour, 100) })
	if _, err := f.s.EnsureAdmin(ctx, phone, "first password"); err != nil {
		t.Fatal(err)
	}
	old, _ := f.login(t, phone, "first password")
	if _, err := f.s.EnsureAdmin(ctx, phone, "first password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Authenticate(ctx, old); err != nil {
		t.Fatalf("restart with the same password ended the session: %v", err)
	}
	if _, err := f.s.EnsureAdmin(ctx, phone, "second password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Authenticate(ctx, old); seckill.ErrorCode(err) != seckill.EUnauthenticated {
		t.Fatalf("session from before the rotation: %v, want unauthenticated", err)
	}
	f.login(t, phone, "second password")
}

// failingRevoker fails its next fail DeleteUserSessions calls.
type failingRevoker struct {
	*sqldb.DB
	fail int
}

func (f *failingRevoker) DeleteUserSessions(ctx context.Context, user int64) ([][]byte, error) {
	if f.fail > 0 {
		f.fail--
		return nil, errors.New("session store down")
	}
	return f.DB.DeleteUserSessions(ctx, user)
}

// TestEnsureAdminRotationRetried: a rotation whose ending of the old
// sessions fails fails the start-up, and starting again with the new
// password ends them. It used to store the new password first, so the
// second start found the password already rotated and kept every session
// opened with the old one (a thief's, the reason for rotating).
func TestEnsureAdminRotationRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var store *failingRevoker
	f := newFixture(t, Config{}, func(db *sqldb.DB) seckill.SessionStore {
		store = &failingRevoker{DB: db}
		return store
	})
	if _, err := f.s.EnsureAdmin(ctx, phone, "first password"); err != nil {
		t.Fatal(err)
	}
	old, _ := f.login(t, phone, "first password")
	store.fail = 1
	if _, err := f.s.EnsureAdmin(ctx, phone, "second password"); err == nil {
		t.Fatal("rotation succeeded though its sessions could not be ended")
	}
	if _, err := f.s.EnsureAdmin(ctx, phone, "second password"); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if _, err := f.s.Authenticate(ctx, old); seckill.ErrorCode(err) != seckill.EUnauthenticated {
		t.Fatalf("session from before the rotation after the retried start: %v, want unauthenticated", err)
	}
}

// TestLoginRacingRotation: a login that checked the old password while
// the password was being rotated (its hash read before, its session
// written after the rotation ended the sessions) must not keep a session:
// else whoever holds the old password beats any rotation by logging in
// over and over, one login always being in its hash.
func TestLoginRacingRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, Config{}, nil)
	if _, err := f.s.EnsureAdmin(ctx, phone, "first password"); err != nil {
		t.Fatal(err)
	}
	f.s.inSlot = func(context.Context) {
		f.s.inSlot = nil
		if _, err := f.s.EnsureAdmin(ctx, phone, "second password"); err != nil {
			t.Error(err)
		}
	}
	tok, _, _, err := f.s.Login(ctx, phone, "first password")
	if err == nil {
		if _, aerr := f.s.Authenticate(ctx, tok); aerr == nil {
			t.Fatal("a login with the old password that raced the rotation kept its session")
		}
	}
	f.login(t, phone, "second password")
}
