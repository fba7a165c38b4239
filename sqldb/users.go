package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"seckill"
)

// CreateUser inserts u and sets its ID and CreatedAt. EPhoneTaken if the
// phone is registered.
func (db *DB) CreateUser(ctx context.Context, u *seckill.User) error {
	created := fromMS(ms(db.now()))
	var id int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, db.d.q.createUser,
			u.Phone, u.PasswordHash, u.Nickname, u.Role, ms(created)).Scan(&id)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return seckill.Errorf(seckill.EPhoneTaken, "phone %s is registered", u.Phone)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	u.ID, u.CreatedAt = id, created
	return nil
}

// CreateUsers inserts users in one transaction and sets their IDs and
// CreatedAt; it provisions the thousands of accounts of a test or a
// benchmark. EPhoneTaken, with nothing inserted, if any phone is registered
// or appears twice.
func (db *DB) CreateUsers(ctx context.Context, users []*seckill.User) error {
	if len(users) == 0 {
		return nil
	}
	created := fromMS(ms(db.now()))
	byPhone := make(map[string]*seckill.User, len(users))
	for _, u := range users {
		if _, dup := byPhone[u.Phone]; dup {
			return seckill.Errorf(seckill.EPhoneTaken, "phone %s appears twice", u.Phone)
		}
		byPhone[u.Phone] = u
	}
	ids := make(map[string]int64, len(users))
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		const cols = 5
		for chunk := range slices.Chunk(users, db.d.maxParams/cols) {
			args := make([]any, 0, len(chunk)*cols)
			for _, u := range chunk {
				args = append(args, u.Phone, u.PasswordHash, u.Nickname, u.Role, ms(created))
			}
			rows, err := tx.QueryContext(ctx, db.d.q.createUsers(len(chunk)), args...)
			if err != nil {
				return err
			}
			n := 0
			for rows.Next() {
				var id int64
				var phone string
				if err := rows.Scan(&id, &phone); err != nil {
					rows.Close()
					return err
				}
				ids[phone] = id
				n++
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if n < len(chunk) {
				return seckill.Errorf(seckill.EPhoneTaken, "%d of %d phones are registered", len(chunk)-n, len(chunk))
			}
		}
		return nil
	})
	if seckill.ErrorCode(err) == seckill.EPhoneTaken {
		return err
	}
	if err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	for _, u := range users {
		u.ID, u.CreatedAt = ids[u.Phone], created
	}
	return nil
}

// UpdateUser stores u's nickname, role and password hash. ENotFound if
// there is no user with u.ID.
func (db *DB) UpdateUser(ctx context.Context, u *seckill.User) error {
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.d.q.updateUser, u.Nickname, u.Role, u.PasswordHash, u.ID)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("update user %d: %w", u.ID, err)
	}
	if n == 0 {
		return seckill.Errorf(seckill.ENotFound, "no user %d", u.ID)
	}
	return nil
}

// UserByID returns the user or ENotFound.
func (db *DB) UserByID(ctx context.Context, id int64) (*seckill.User, error) {
	u, err := scanUser(db.read.QueryRowContext(ctx, db.d.q.userByID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, seckill.Errorf(seckill.ENotFound, "no user %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("user %d: %w", id, err)
	}
	return u, nil
}

// UserByPhone returns the user or ENotFound.
func (db *DB) UserByPhone(ctx context.Context, phone string) (*seckill.User, error) {
	u, err := scanUser(db.read.QueryRowContext(ctx, db.d.q.userByPhone, phone))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, seckill.Errorf(seckill.ENotFound, "no user with phone %s", phone)
	}
	if err != nil {
		return nil, fmt.Errorf("user by phone: %w", err)
	}
	return u, nil
}
