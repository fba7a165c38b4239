package account

import (
	"context"
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
