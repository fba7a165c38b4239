package account

import (
	"context"
	"fmt"
	"time"

	"seckill"
)

var (
	_ seckill.SessionStore   = (*Tiered)(nil)
	_ seckill.SessionRevoker = (*Tiered)(nil)
)

// Tiered keeps sessions in a durable store (SQL) and a fast shared one
// (Redis): writes go to both, reads ask the fast one first and fall back to
// the durable one, refilling the fast one. A fast store that restarts empty
// therefore logs nobody out, and the hot path rarely reaches SQL.
type Tiered struct {
	Fast    seckill.SessionStore
	Durable seckill.SessionStore
}

// CreateSession stores s durably, then in the fast store.
func (t *Tiered) CreateSession(ctx context.Context, s seckill.Session) error {
	if err := t.Durable.CreateSession(ctx, s); err != nil {
		return err
	}
	return t.Fast.CreateSession(ctx, s)
}

// Session reads the fast store, then the durable one (ENotFound if neither
// has it). A failing fast store is skipped, not fatal.
func (t *Tiered) Session(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	s, err := t.Fast.Session(ctx, tokenHash)
	if err == nil {
		return s, nil
	}
	s, derr := t.Durable.Session(ctx, tokenHash)
	if derr != nil {
		return nil, derr
	}
	if seckill.ErrorCode(err) == seckill.ENotFound {
		t.refill(ctx, s)
	}
	return s, nil
}

// TouchSession moves the expiry in both stores.
func (t *Tiered) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	if err := t.Durable.TouchSession(ctx, tokenHash, expiresAt); err != nil {
		return err
	}
	return t.Fast.TouchSession(ctx, tokenHash, expiresAt)
}

// DeleteSession removes the session from the fast store, the durable one,
// then the fast one again. The first pass comes first so that a fast store
// failing leaves the session in the durable store too, where a retry or
// a later DeleteUserSessions (which asks the durable store) finds it:
// deleted from the durable store alone, it would live on in the fast one,
// served by every instance and named by no store a revocation asks. The
// last pass deletes a copy a refill racing this call put back (refill).
func (t *Tiered) DeleteSession(ctx context.Context, tokenHash []byte) error {
	if err := t.Fast.DeleteSession(ctx, tokenHash); err != nil {
		return err
	}
	if err := t.Durable.DeleteSession(ctx, tokenHash); err != nil {
		return err
	}
	ctx, cancel := lastPass(ctx)
	defer cancel()
	return t.Fast.DeleteSession(ctx, tokenHash)
}

// lastPass is the context of the fast store's pass after the durable
// deletion succeeded: the caller leaving (a request cancelled) must not
// stop it. That pass deletes what a refill put back and announces the
// deletion again; an instance that cached the session from the durable
// store between the passes (following the broadcast, for up to a minute
// on a single Redis) learns of it only there.
func lastPass(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// refill copies s, just read from the durable store, into the fast one,
// unless it was deleted meanwhile. A logout's last steps delete from the
// durable store, then from the fast one; a refill that raced it could put
// the session back after the last. So the refill reads the durable store
// again after writing: if the session is gone there, the logout's durable
// deletion came before this read, and this refill may have come after its
// last fast one, so it deletes the copy itself. If it is still there, the
// logout's last fast deletion is still to come. Best effort: a failure
// here costs only a later lookup, except that a failing re-read deletes
// the copy to be safe.
func (t *Tiered) refill(ctx context.Context, s *seckill.Session) {
	if t.Fast.CreateSession(ctx, *s) != nil {
		return
	}
	if _, err := t.Durable.Session(ctx, s.TokenHash); err != nil {
		_ = t.Fast.DeleteSession(ctx, s.TokenHash)
	}
}

// DeleteUserSessions ends every session of the user: it deletes the ones
// the durable store (a seckill.SessionRevoker) names from the fast store,
// then from the durable store, then from the fast store those the durable
// deletion returned (sessions opened meanwhile). The first pass comes
// before the durable deletion so that a fast store failing makes the call
// fail with every session still named in the durable store: a retry finds
// them all again. Deleting from the durable store first would leave a
// retry nothing to delete from a fast store that still serves them.
func (t *Tiered) DeleteUserSessions(ctx context.Context, userID int64) ([][]byte, error) {
	r, ok := t.Durable.(seckill.SessionRevoker)
	if !ok {
		return nil, fmt.Errorf("tiered sessions: the durable store cannot end a user's sessions")
	}
	listed, err := r.UserSessions(ctx, userID)
	if err != nil {
		return nil, err
	}
	if err := t.deleteFast(ctx, listed); err != nil {
		return nil, err
	}
	hashes, err := r.DeleteUserSessions(ctx, userID)
	if err != nil {
		return nil, err
	}
	last, cancel := lastPass(ctx)
	defer cancel()
	return hashes, t.deleteFast(last, hashes)
}

// UserSessions asks the durable store, which must be a
// seckill.SessionRevoker.
func (t *Tiered) UserSessions(ctx context.Context, userID int64) ([][]byte, error) {
	r, ok := t.Durable.(seckill.SessionRevoker)
	if !ok {
		return nil, fmt.Errorf("tiered sessions: the durable store cannot list a user's sessions")
	}
	return r.UserSessions(ctx, userID)
}

// deleteFast deletes each session of hashes from the fast store.
func (t *Tiered) deleteFast(ctx context.Context, hashes [][]byte) error {
	for _, h := range hashes {
		if err := t.Fast.DeleteSession(ctx, h); err != nil {
			return err
		}
	}
	return nil
}
