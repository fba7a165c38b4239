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

// LoginGuard slows password guessing down. It counts the login attempts of
// a key (a phone number, a client address) and, once the key has used its
// free tries, makes it wait before each further one, longer after every
// attempt (see Backoff). An attempt counts as failed until Succeeded takes
// it back, so concurrent guesses cannot all slip through while the first
// ones are still being checked. One implementation keeps the counts in the
// process (inmem), another in Redis, shared by every instance (rdb).
type LoginGuard interface {
	// Attempt records an attempt of key and returns how many attempts key
	// had on record before it (0 for a key with a clean slate). When key
	// must still wait, the attempt is not recorded and wait is how long;
	// the caller refuses it without checking the password.
	Attempt(ctx context.Context, key string) (failures int, wait time.Duration, err error)
	// Succeeded takes back an attempt of key that turned out right (or was
	// never checked). With reset it forgets every attempt of key: the
	// owner of a phone proved the password. A key with nothing on record
	// is not an error.
	Succeeded(ctx context.Context, key string, reset bool) error
}

// Backoff is the policy of a LoginGuard: Free attempts go through at
// once; the attempt after them waits Base after the last one, and the wait
// doubles with every attempt after that, up to Max. A key with no attempt
// for Forget starts over.
type Backoff struct {
	Free   int
	Base   time.Duration
	Max    time.Duration
	Forget time.Duration
}

// Delay is how long after its last attempt a key that has n attempts on
// record must wait before the next one.
func (b Backoff) Delay(n int) time.Duration {
	if n < b.Free || b.Base <= 0 {
		return 0
	}
	shift := n - b.Free
	if shift >= 62 || b.Base > b.Max>>shift {
		return b.Max
	}
	return b.Base << shift
}
