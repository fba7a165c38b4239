package seckill

import (
	"context"
	"time"
)

// Role is what an account may do.
type Role string

const (
	RoleBuyer Role = "buyer"
	RoleAdmin Role = "admin"
)

// User is an account. PasswordHash is an argon2id PHC string and never leaves
// the server.
type User struct {
	ID           int64     `json:"id"`
	Phone        string    `json:"phone"`
	Nickname     string    `json:"nickname"`
	Role         Role      `json:"role"`
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
}

// UserStore keeps accounts.
type UserStore interface {
	// CreateUser inserts u and sets its ID and CreatedAt. EPhoneTaken if the
	// phone is registered.
	CreateUser(ctx context.Context, u *User) error
	// UpdateUser stores u's nickname, role and password hash. ENotFound if
	// there is no user with u.ID.
	UpdateUser(ctx context.Context, u *User) error
	// UserByID returns the user or ENotFound.
	UserByID(ctx context.Context, id int64) (*User, error)
	// UserByPhone returns the user or ENotFound.
	UserByPhone(ctx context.Context, phone string) (*User, error)
}

// Session is a logged-in token. Only the SHA-256 of the token is stored.
type Session struct {
	TokenHash []byte
	UserID    int64
	Role      Role
	ExpiresAt time.Time
}

// SessionStore keeps sessions durably, so a restart logs nobody out.
type SessionStore interface {
	// CreateSession stores s.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with this token hash, or ENotFound when
	// there is none or it expired.
	Session(ctx context.Context, tokenHash []byte) (*Session, error)
	// TouchSession moves the expiry of a session (sliding expiry). A missing
	// session is not an error.
	TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error
	// DeleteSession removes a session. A missing session is not an error.
	DeleteSession(ctx context.Context, tokenHash []byte) error
}

// SessionRevoker is a SessionStore that can end every session of a user at
// once, as a password or role change must (sessions carry the role).
// Durable stores implement it (they index sessions by user); a cache in
// front implements it by asking the store behind it.
type SessionRevoker interface {
	// DeleteUserSessions removes every session of the user and returns
	// their token hashes, so caches in front can drop them too. No
	// session is not an error.
	DeleteUserSessions(ctx context.Context, userID int64) ([][]byte, error)
	// UserSessions returns the token hashes of every session of the user,
	// expired or not, changing nothing: a cache in front deletes them
	// from itself first, so a revocation that fails there can be retried
	// (the durable store still names them).
	UserSessions(ctx context.Context, userID int64) ([][]byte, error)
}
