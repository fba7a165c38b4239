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
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
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
	return reread(ctx, db, func(ctx context.Context) (*seckill.Session, error) {
		return queryOne(db.read.QueryRowContext(ctx, db.d.q.session, tokenHash, db.tv(db.now())), scanSession, "session")
	})
}

// TouchSession moves the expiry of a live session (sliding expiry). A
// missing or already expired session is left alone and is not an error.
func (db *DB) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
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
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.d.q.deleteSession, tokenHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// UserSessions returns the token hashes of every session of the user,
// expired or not.
func (db *DB) UserSessions(ctx context.Context, userID int64) ([][]byte, error) {
	return reread(ctx, db, func(ctx context.Context) ([][]byte, error) {
		hashes, err := userSessions(ctx, db.write, db.d.q.userSessions, userID)
		if err != nil {
			return nil, fmt.Errorf("sessions of user %d: %w", userID, err)
		}
		return hashes, nil
	})
}

// DeleteUserSessions removes every session of the user, expired or not,
// and returns their token hashes.
func (db *DB) DeleteUserSessions(ctx context.Context, userID int64) ([][]byte, error) {
	var hashes [][]byte
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if hashes, err = userSessions(ctx, tx, db.d.q.userSessions, userID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.d.q.deleteUserSessions, userID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete sessions of user %d: %w", userID, err)
	}
	return hashes, nil
}

// userSessions reads the token hashes that query (the dialect's
// userSessions) returns for userID through q, a pool or a transaction.
func userSessions(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, userID int64) ([][]byte, error) {
	rows, err := q.QueryContext(ctx, query, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hashes [][]byte
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	return hashes, rows.Err()
}

// sessionDeleteBatch is how many sessions DeleteExpiredSessions deletes
// per transaction: each holds its locks (SQLite's one writer) for a few
// milliseconds, and the writes of requests go between them.
const sessionDeleteBatch = 1000

// DeleteExpiredSessions deletes the sessions that expired at or before
// before, in transactions of at most a batch each, until none is left or
// ctx ends, and returns how many it deleted (also with an error: those
// of the batches that committed). Session already treats them as gone;
// without this they would stay in the table for ever.
func (db *DB) DeleteExpiredSessions(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, db.d.q.deleteExpired, db.tv(before), db.sessionBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("delete expired sessions: %w", err)
		}
		total += n
		if n < int64(db.sessionBatch) {
			return total, nil
		}
	}
}
