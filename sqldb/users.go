package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"seckill"
)

// CreateUser inserts u and sets its ID and CreatedAt. EPhoneTaken if the
// phone is registered.
func (db *DB) CreateUser(ctx context.Context, u *seckill.User) error {
	created := stamp(db.now())
	var id int64
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		id, err = db.insertID(ctx, tx, db.d.q.createUser,
			u.Phone, u.PasswordHash, u.Nickname, string(u.Role), db.tv(created))
		return err
	})
	if errors.Is(err, errConflict) {
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
	created := stamp(db.now())
	byPhone := make(map[string]*seckill.User, len(users))
	for _, u := range users {
		if _, dup := byPhone[u.Phone]; dup {
			return seckill.Errorf(seckill.EPhoneTaken, "phone %s appears twice", u.Phone)
		}
		byPhone[u.Phone] = u
	}
	ids := make(map[string]int64, len(users))
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		const cols = 5
		for chunk := range chunked(users, db.chunks(len(users), cols)) {
			phones, hashes, nicks, roles := make(col[string], len(chunk)), make(col[string], len(chunk)),
				make(col[string], len(chunk)), make(col[string], len(chunk))
			for i, u := range chunk {
				phones[i], hashes[i], nicks[i], roles[i] = u.Phone, u.PasswordHash, u.Nickname, string(u.Role)
			}
			args := db.bulkArgs(len(chunk), phones, hashes, nicks, roles, same{db.tv(created)})
			query := db.d.q.createUsers(len(chunk))
			if !db.d.returning {
				// A taken phone fails the INSERT; the ids are read back.
				if _, err := tx.ExecContext(ctx, query, args...); err != nil {
					if db.d.duplicate(err) {
						return seckill.Errorf(seckill.EPhoneTaken, "a phone of %d is registered", len(chunk))
					}
					return err
				}
				query, args = db.d.q.userIDs(len(chunk)), db.bulkArgs(len(chunk), phones)
			}
			n := 0
			rows, err := tx.QueryContext(ctx, query, args...)
			err = eachRow(rows, err, func(row scanner) error {
				var id int64
				var phone string
				if err := row.Scan(&id, &phone); err != nil {
					return err
				}
				ids[phone] = id
				n++
				return nil
			})
			if err != nil {
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
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.d.q.updateUser, u.Nickname, string(u.Role), u.PasswordHash, u.ID)
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
	return reread(ctx, db, func(ctx context.Context) (*seckill.User, error) {
		return queryOne(db.read.QueryRowContext(ctx, db.d.q.userByID, id), scanUser, "user %d", id)
	})
}

// UserByPhone returns the user or ENotFound.
func (db *DB) UserByPhone(ctx context.Context, phone string) (*seckill.User, error) {
	return reread(ctx, db, func(ctx context.Context) (*seckill.User, error) {
		// The phone stays out of the error, which may be logged.
		return queryOne(db.read.QueryRowContext(ctx, db.d.q.userByPhone, phone), scanUser, "user by phone")
	})
}
