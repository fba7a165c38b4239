package sqldb_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"seckill"
)

func TestDeleteExpiredSessions(t *testing.T) { testDeleteExpiredSessions(t, freshSQLite) }

// testDeleteExpiredSessions: DeleteExpiredSessions removes every session
// that expired at or before the time given, in batches (three and a bit
// here), and leaves the live ones; a second run finds nothing.
func testDeleteExpiredSessions(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	db.SetSessionDeleteBatch(100)
	u := &seckill.User{Phone: "13800000000", Nickname: "n", Role: seckill.RoleBuyer, PasswordHash: "x"}
	mustOK(t, db.CreateUser(ctx, u))
	before := time.Now().UTC().Truncate(time.Millisecond).Add(time.Hour)
	hash := func(s string) []byte {
		h := sha256.Sum256([]byte(s))
		return h[:]
	}
	create := func(name string, exp time.Time) {
		t.Helper()
		mustOK(t, db.CreateSession(ctx, seckill.Session{TokenHash: hash(name), UserID: u.ID, Role: u.Role, ExpiresAt: exp}))
	}
	const expired = 350
	for i := range expired {
		create(fmt.Sprintf("expired-%d", i), before.Add(-time.Duration(i+1)*time.Minute))
	}
	create("at the time", before)
	live := []string{"live-1", "live-2", "live-3"}
	for i, name := range live {
		create(name, before.Add(time.Duration(i+1)*time.Millisecond))
	}
	n, err := db.DeleteExpiredSessions(ctx, before)
	mustOK(t, err)
	if n != expired+1 {
		t.Errorf("deleted %d sessions, want %d", n, expired+1)
	}
	left, err := db.UserSessions(ctx, u.ID)
	mustOK(t, err)
	if len(left) != len(live) {
		t.Fatalf("%d sessions left, want the %d live ones", len(left), len(live))
	}
	for _, name := range live {
		found := false
		for _, h := range left {
			found = found || bytes.Equal(h, hash(name))
		}
		if !found {
			t.Errorf("live session %s deleted", name)
		}
	}
	if n, err := db.DeleteExpiredSessions(ctx, before); err != nil || n != 0 {
		t.Errorf("second run: %d, %v; want 0, nil", n, err)
	}
}
