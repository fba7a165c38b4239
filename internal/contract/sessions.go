package contract

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"seckill"
)

// SessionUserID is the user every session of TestSessionStore belongs to.
// A store that checks users (SQL, with a foreign key) must accept it; the
// SQL stores run these checks through TestStores instead, with a user they
// created.
const SessionUserID = 4242

// TestSessionStore checks every documented outcome of a SessionStore.
// newStore returns a store holding no sessions of the token hashes the
// suite uses (32 bytes of one repeated value 1…8), cleaned up when the test
// ends.
func TestSessionStore(t *testing.T, newStore func(t *testing.T) seckill.SessionStore) {
	sessionChecks(t, func(t *testing.T) (seckill.SessionStore, int64) { return newStore(t), SessionUserID })
}

// sessionChecks runs the session checks; newStore returns a fresh store and
// the id of a user the sessions may belong to.
func sessionChecks(t *testing.T, newStore func(t *testing.T) (seckill.SessionStore, int64)) {
	ctx := context.Background()
	hash := func(b byte) []byte { return slices.Repeat([]byte{b}, 32) }

	t.Run("CreateAndGet", func(t *testing.T) {
		s, uid := newStore(t)
		want := seckill.Session{TokenHash: hash(1), UserID: uid, Role: seckill.RoleBuyer, ExpiresAt: storeNow().Add(time.Hour)}
		storeNoErr(t, s.CreateSession(ctx, want))
		got, err := s.Session(ctx, hash(1))
		storeNoErr(t, err)
		if diff := cmp.Diff(&want, got, storeCmpTimes); diff != "" {
			t.Errorf("Session (-created +got):\n%s", diff)
		}
	})

	t.Run("Absent", func(t *testing.T) {
		s, _ := newStore(t)
		_, err := s.Session(ctx, hash(2))
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("Expired", func(t *testing.T) {
		s, uid := newStore(t)
		storeNoErr(t, s.CreateSession(ctx, seckill.Session{TokenHash: hash(3), UserID: uid, Role: seckill.RoleBuyer, ExpiresAt: storeNow().Add(-time.Second)}))
		_, err := s.Session(ctx, hash(3))
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("Touch", func(t *testing.T) {
		s, uid := newStore(t)
		storeNoErr(t, s.CreateSession(ctx, seckill.Session{TokenHash: hash(4), UserID: uid, Role: seckill.RoleBuyer, ExpiresAt: storeNow().Add(time.Minute)}))
		later := storeNow().Add(2 * time.Hour)
		storeNoErr(t, s.TouchSession(ctx, hash(4), later))
		got, err := s.Session(ctx, hash(4))
		storeNoErr(t, err)
		if !got.ExpiresAt.Equal(later) {
			t.Errorf("after touch, ExpiresAt = %v, want %v", got.ExpiresAt, later)
		}
		// Moving the expiry into the past ends the session.
		storeNoErr(t, s.TouchSession(ctx, hash(4), storeNow().Add(-time.Second)))
		_, err = s.Session(ctx, hash(4))
		storeWantCode(t, err, seckill.ENotFound)
		// A missing session is not an error.
		storeNoErr(t, s.TouchSession(ctx, hash(5), later))
		_, err = s.Session(ctx, hash(5))
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("Delete", func(t *testing.T) {
		s, uid := newStore(t)
		storeNoErr(t, s.CreateSession(ctx, seckill.Session{TokenHash: hash(6), UserID: uid, Role: seckill.RoleBuyer, ExpiresAt: storeNow().Add(time.Hour)}))
		storeNoErr(t, s.CreateSession(ctx, seckill.Session{TokenHash: hash(7), UserID: uid, Role: seckill.RoleBuyer, ExpiresAt: storeNow().Add(time.Hour)}))
		storeNoErr(t, s.DeleteSession(ctx, hash(6)))
		_, err := s.Session(ctx, hash(6))
		storeWantCode(t, err, seckill.ENotFound)
		// Idempotent, and other sessions of the user stay.
		storeNoErr(t, s.DeleteSession(ctx, hash(6)))
		storeNoErr(t, s.DeleteSession(ctx, hash(8)))
		if _, err := s.Session(ctx, hash(7)); err != nil {
			t.Errorf("the user's other session: %v", err)
		}
	})

	t.Run("DeleteUserSessions", func(t *testing.T) {
		s, uid := newStore(t)
		r, ok := s.(seckill.SessionRevoker)
		if !ok {
			t.Skip("not a SessionRevoker: a cache under account.Tiered, which revokes through the durable store (TestTieredLogoutRacingRefill)")
		}
		storeNoErr(t, s.CreateSession(ctx, seckill.Session{TokenHash: hash(9), UserID: uid, Role: seckill.RoleAdmin, ExpiresAt: storeNow().Add(time.Hour)}))
		storeNoErr(t, s.CreateSession(ctx, seckill.Session{TokenHash: hash(10), UserID: uid, Role: seckill.RoleAdmin, ExpiresAt: storeNow().Add(time.Hour)}))
		listed, err := r.UserSessions(ctx, uid)
		storeNoErr(t, err)
		if len(listed) != 2 {
			t.Errorf("UserSessions returned %d hashes, want 2", len(listed))
		}
		if _, err := s.Session(ctx, hash(9)); err != nil {
			t.Errorf("UserSessions changed a session: %v", err)
		}
		hashes, err := r.DeleteUserSessions(ctx, uid)
		storeNoErr(t, err)
		if len(hashes) != 2 {
			t.Errorf("DeleteUserSessions returned %d hashes, want 2", len(hashes))
		}
		for _, h := range [][]byte{hash(9), hash(10)} {
			_, err := s.Session(ctx, h)
			storeWantCode(t, err, seckill.ENotFound)
		}
		hashes, err = r.DeleteUserSessions(ctx, uid)
		storeNoErr(t, err)
		if len(hashes) != 0 {
			t.Errorf("second DeleteUserSessions returned %d hashes, want 0", len(hashes))
		}
		if listed, err := r.UserSessions(ctx, uid); err != nil || len(listed) != 0 {
			t.Errorf("UserSessions after the deletion: %d hashes, %v", len(listed), err)
		}
	})
}
