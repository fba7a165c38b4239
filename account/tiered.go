package account

import (
	"context"
	"time"

	"seckill"
)

var _ seckill.SessionStore = (*Tiered)(nil)

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
		_ = t.Fast.CreateSession(ctx, *s) // refill; a failure only costs a later lookup
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

// DeleteSession removes the session from both stores.
func (t *Tiered) DeleteSession(ctx context.Context, tokenHash []byte) error {
	if err := t.Durable.DeleteSession(ctx, tokenHash); err != nil {
		return err
	}
	return t.Fast.DeleteSession(ctx, tokenHash)
}
