package inmem_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// TestSessionCacheKeysDoNotCollide: a token hash of another length than 32
// bytes and the 32-byte hash that is its SHA-256 are two sessions to the
// store, and must be two to the cache: a lookup of one must never answer
// the other's user. A raw token and account.HashToken of it are such a
// pair.
func TestSessionCacheKeysDoNotCollide(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	short := []byte("a raw token, 43 bytes long, not a hash....")
	sum := sha256.Sum256(short)
	for _, tc := range []struct {
		name      string
		shortUser int64 // 0: the store has no session of short
	}{
		{"short hash unknown to the store", 0},
		{"short hash of another user", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &countingSessions{m: map[string]seckill.Session{}}
			c := inmem.NewSessionCache(store, time.Hour, 100)
			if tc.shortUser != 0 {
				if err := store.CreateSession(ctx, seckill.Session{TokenHash: short, UserID: tc.shortUser, Role: seckill.RoleBuyer, ExpiresAt: exp}); err != nil {
					t.Fatal(err)
				}
			}
			// The admin's session, cached by its creation.
			if err := c.CreateSession(ctx, seckill.Session{TokenHash: sum[:], UserID: 1, Role: seckill.RoleAdmin, ExpiresAt: exp}); err != nil {
				t.Fatal(err)
			}
			got, err := c.Session(ctx, short)
			switch {
			case tc.shortUser == 0 && seckill.ErrorCode(err) != seckill.ENotFound:
				t.Fatalf("lookup of a hash the store does not know: %+v, %v; want not found", got, err)
			case tc.shortUser != 0 && (err != nil || got.UserID != tc.shortUser || got.Role != seckill.RoleBuyer):
				t.Fatalf("lookup of user %d's hash: %+v, %v", tc.shortUser, got, err)
			}
		})
	}
}

// TestSessionCacheFarExpiry: a session expiring after 2262 (past what Unix
// nanoseconds hold; --session-ttl accepts up to 292 years) is served from
// the cache like any other, with the ExpiresAt the store gave.
func TestSessionCacheFarExpiry(t *testing.T) {
	ctx := context.Background()
	for _, exp := range []time.Time{
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2700, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		store := &countingSessions{m: map[string]seckill.Session{}}
		c := inmem.NewSessionCache(store, time.Hour, 100)
		h := sha256.Sum256([]byte(exp.String()))
		if err := c.CreateSession(ctx, seckill.Session{TokenHash: h[:], UserID: 1, Role: seckill.RoleBuyer, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		got, err := c.Session(ctx, h[:])
		if err != nil {
			t.Fatal(err)
		}
		if !got.ExpiresAt.Equal(exp) {
			t.Errorf("expiry %v: the cache answers %v", exp, got.ExpiresAt)
		}
		if n := store.count(); n != 0 {
			t.Errorf("expiry %v: %d store lookups for a session the cache was given", exp, n)
		}
	}
}
