// Package account registers users, checks passwords and keeps sessions:
// argon2id password hashes computed behind a semaphore, 256-bit random
// session tokens stored only as their SHA-256, and sliding expiry.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
	"runtime"
	"time"
	"unicode/utf8"

	"seckill"
)

// Config tunes the service; zero values take the defaults.
type Config struct {
	SessionTTL time.Duration // session lifetime after last extension; default 24h
	Params     Params        // argon2id cost; default DefaultParams
	Hashers    int           // concurrent hashes; default the number of CPUs
	HashWait   time.Duration // longest wait for a hashing slot before EBusy; default 5s
}

// Service is the account logic over a user store and a session store.
type Service struct {
	users    seckill.UserStore
	sessions seckill.SessionStore
	cfg      Config
	sem      chan struct{}
	dummy    string // hash checked for unknown phones, so timing tells nothing
	now      func() time.Time
	inSlot   func() // test hook: runs in each hashing slot, before the hash
}

// New returns the service.
func New(users seckill.UserStore, sessions seckill.SessionStore, cfg Config) (*Service, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 24 * time.Hour
	}
	if cfg.Params == (Params{}) {
		cfg.Params = DefaultParams
	}
	if cfg.Hashers <= 0 {
		cfg.Hashers = runtime.NumCPU()
	}
	if cfg.HashWait <= 0 {
		cfg.HashWait = 5 * time.Second
	}
	dummy, err := HashPassword("not a real password", cfg.Params)
	if err != nil {
		return nil, err
	}
	return &Service{users: users, sessions: sessions, cfg: cfg, sem: make(chan struct{}, cfg.Hashers), dummy: dummy, now: time.Now}, nil
}

var phoneRE = regexp.MustCompile(`^1[0-9]{10}$`)

// ValidPhone reports whether phone is 11 digits starting with 1.
func ValidPhone(phone string) bool { return phoneRE.MatchString(phone) }

// Limits on account fields.
const (
	MinPassword = 8
	MaxPassword = 128
	MaxNickname = 64
)

// ValidateAccount checks the fields of a new account; EInvalid says which.
func ValidateAccount(phone, password, nickname string) error {
	if !ValidPhone(phone) {
		return seckill.Errorf(seckill.EInvalid, "phone must be 11 digits starting with 1")
	}
	if n := utf8.RuneCountInString(password); n < MinPassword || len(password) > MaxPassword {
		return seckill.Errorf(seckill.EInvalid, "password must be %d to %d characters", MinPassword, MaxPassword)
	}
	if !utf8.ValidString(nickname) || utf8.RuneCountInString(nickname) > MaxNickname {
		return seckill.Errorf(seckill.EInvalid, "nickname must be at most %d characters", MaxNickname)
	}
	return nil
}

// hash runs fn in a hashing slot: at most Hashers run at once, so a login
// storm queues instead of allocating memory-cost × requests. EBusy when no
// slot frees up within HashWait.
func (s *Service) hash(ctx context.Context, fn func() error) error {
	t := time.NewTimer(s.cfg.HashWait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
	case <-t.C:
		return seckill.Errorf(seckill.EBusy, "too many logins at once; retry shortly")
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	if s.inSlot != nil {
		s.inSlot()
	}
	return fn()
}

// Register creates a buyer account. EInvalid for bad fields, EPhoneTaken if
// the phone is registered.
func (s *Service) Register(ctx context.Context, phone, password, nickname string) (*seckill.User, error) {
	if err := ValidateAccount(phone, password, nickname); err != nil {
		return nil, err
	}
	if _, err := s.users.UserByPhone(ctx, phone); err == nil {
		return nil, seckill.Errorf(seckill.EPhoneTaken, "phone %s is already registered", phone)
	}
	u := &seckill.User{Phone: phone, Nickname: nickname, Role: seckill.RoleBuyer}
	err := s.hash(ctx, func() (err error) {
		u.PasswordHash, err = HashPassword(password, s.cfg.Params)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.users.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// EnsureAdmin creates the admin account, or makes an existing account with
// this phone an admin with this password.
func (s *Service) EnsureAdmin(ctx context.Context, phone, password string) (*seckill.User, error) {
	if err := ValidateAccount(phone, password, ""); err != nil {
		return nil, fmt.Errorf("admin account: %w", err)
	}
	hash, err := HashPassword(password, s.cfg.Params)
	if err != nil {
		return nil, err
	}
	u, err := s.users.UserByPhone(ctx, phone)
	switch seckill.ErrorCode(err) {
	case "":
		u.Role, u.PasswordHash = seckill.RoleAdmin, hash
		return u, s.users.UpdateUser(ctx, u)
	case seckill.ENotFound:
		u = &seckill.User{Phone: phone, Nickname: "admin", Role: seckill.RoleAdmin, PasswordHash: hash}
		return u, s.users.CreateUser(ctx, u)
	}
	return nil, err
}

// Login checks the password and opens a session. It returns the token (shown
// to the client once, never stored) and the session. EBadCredentials for an
// unknown phone or wrong password, alike.
func (s *Service) Login(ctx context.Context, phone, password string) (string, *seckill.Session, *seckill.User, error) {
	bad := seckill.Errorf(seckill.EBadCredentials, "wrong phone or password")
	u, err := s.users.UserByPhone(ctx, phone)
	if err != nil && seckill.ErrorCode(err) != seckill.ENotFound {
		return "", nil, nil, err
	}
	hash := s.dummy
	if u != nil {
		hash = u.PasswordHash
	}
	var ok bool
	if err := s.hash(ctx, func() (err error) {
		ok, err = CheckPassword(password, hash)
		return err
	}); err != nil {
		return "", nil, nil, err
	}
	if u == nil || !ok {
		return "", nil, nil, bad
	}
	token, sess, err := s.OpenSession(ctx, u)
	if err != nil {
		return "", nil, nil, err
	}
	return token, sess, u, nil
}

// OpenSession issues a new session for u without checking a password (login,
// and provisioning of test and benchmark users).
func (s *Service) OpenSession(ctx context.Context, u *seckill.User) (string, *seckill.Session, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, fmt.Errorf("token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	sess := seckill.Session{TokenHash: HashToken(token), UserID: u.ID, Role: u.Role, ExpiresAt: s.now().Add(s.cfg.SessionTTL).UTC()}
	if err := s.sessions.CreateSession(ctx, sess); err != nil {
		return "", nil, err
	}
	return token, &sess, nil
}

// HashToken is what the session store keeps of a token.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Authenticate returns the session of token, extending it when a noticeable
// part of its lifetime has passed (sliding expiry without a write per
// request). EUnauthenticated for a missing, unknown or expired token.
func (s *Service) Authenticate(ctx context.Context, token string) (*seckill.Session, error) {
	if token == "" {
		return nil, seckill.Errorf(seckill.EUnauthenticated, "log in first")
	}
	sess, err := s.sessions.Session(ctx, HashToken(token))
	if seckill.ErrorCode(err) == seckill.ENotFound {
		return nil, seckill.Errorf(seckill.EUnauthenticated, "session expired or unknown; log in again")
	}
	if err != nil {
		return nil, err
	}
	// The expiry was set by this clock; a store whose clock lags (or a
	// cached copy) must not have an expired session extended below.
	now := s.now()
	if !now.Before(sess.ExpiresAt) {
		return nil, seckill.Errorf(seckill.EUnauthenticated, "session expired or unknown; log in again")
	}
	if sess.ExpiresAt.Sub(now) < s.cfg.SessionTTL-s.cfg.SessionTTL/24 {
		exp := now.Add(s.cfg.SessionTTL).UTC()
		if err := s.sessions.TouchSession(ctx, sess.TokenHash, exp); err != nil {
			return nil, err
		}
		sess.ExpiresAt = exp
	}
	return sess, nil
}

// Logout ends the session of token.
func (s *Service) Logout(ctx context.Context, token string) error {
	return s.sessions.DeleteSession(ctx, HashToken(token))
}

// User returns the account of a session.
func (s *Service) User(ctx context.Context, id int64) (*seckill.User, error) {
	return s.users.UserByID(ctx, id)
}
