package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"seckill"
)

// CreateSession stores s.
func (db *DB) CreateSession(ctx context.Context, s seckill.Session) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.d.q.createSession,
			s.TokenHash, s.UserID, string(s.Role), db.tv(s.ExpiresAt), db.tv(db.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// Session returns the session with this token hash, or ENotFound when there
// is none or it expired (ExpiresAt at or before now).
func (db *DB) Session(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	return queryOne(db.read.QueryRowContext(ctx, db.d.q.session, tokenHash, db.tv(db.now())), scanSession, "session")
}

// TouchSession moves the expiry of a live session (sliding expiry). A
// missing or already expired session is left alone and is not an error.
func (db *DB) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.d.q.touchSession, db.tv(expiresAt), tokenHash, db.tv(db.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession removes a session. A missing session is not an error.
func (db *DB) DeleteSession(ctx context.Context, tokenHash []byte) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.d.q.deleteSession, tokenHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
