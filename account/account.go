// Package account registers users, checks passwords and keeps sessions:
// argon2id password hashes computed behind a semaphore, 256-bit random
// session tokens stored only as their SHA-256, and sliding expiry.
package account

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
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
	// Phones and IPs slow password guessing down (nil: no back-off).
	// Phones is keyed by phone number and cleared by a successful login
	// (PhoneBackoff is its usual policy); IPs by client address, where a
	// successful login takes back only its own attempt, so it is a budget
	// of failed logins per address (IPBackoff).
	Phones seckill.LoginGuard
	IPs    seckill.LoginGuard
	// PhoneLogins is a token bucket per phone number (PhoneLoginBucket is
	// its policy) that every login of a valid phone takes from just before
	// the password is hashed, right password or not (nil: none). The
	// back-off stops guesses but clears on the right password, so without
	// it one account's password, known to an attacker, could be hashed as
	// fast as the hashing slots go, from as many addresses as it has. A
	// refusal is a *WaitError asking for one refill of PhoneLoginBucket.
	PhoneLogins seckill.Limiter
	// TokenKey, when set (at least 16 bytes, the same on every instance),
	// signs the session tokens this service issues, so that one presented
	// can be told issued here without a lookup (SignedToken). A token
	// without a valid signature is looked up as before: a key changed
	// logs no one out.
	TokenKey []byte
}

// PhoneLoginBucket is the policy of Config.PhoneLogins: 10 logins of one
// phone at once, then one every 6 s. A person logs in a few times a day;
// with several devices, or a mistyped password or two, still far below.
var PhoneLoginBucket = seckill.Bucket{PerSecond: 1.0 / 6, Burst: 10}

// PhoneBackoff is the usual policy of Config.Phones: 5 attempts free, then
// a wait of 1 s doubling with every attempt up to 15 minutes; a phone with
// no attempt for a day starts over. A guesser gets about 100 tries a day.
var PhoneBackoff = seckill.Backoff{Free: 5, Base: time.Second, Max: 15 * time.Minute, Forget: 24 * time.Hour}

// IPBackoff is the usual policy of Config.IPs: 30 failed logins free per
// client address, then 1 s doubling up to 10 s between attempts, until the
// address has made no attempt for 10 minutes. It is a budget far below the
// general per-address rate limit; many people behind one address (a
// carrier's NAT) who mistype often share it.
var IPBackoff = seckill.Backoff{Free: 30, Base: time.Second, Max: 10 * time.Second, Forget: 10 * time.Minute}

// WaitError refuses a login attempt made during a back-off, before any
// password was checked. Its code is ERateLimited; Wait is how long until
// the next attempt may come.
type WaitError struct {
	Wait time.Duration
	// Why says what was exceeded ("" : failed logins).
	Why string
}

// Seconds is Wait in whole seconds, rounded up (for Retry-After).
func (e *WaitError) Seconds() int { return int((e.Wait + time.Second - 1) / time.Second) }

func (e *WaitError) Error() string { return e.Unwrap().Error() }

// Unwrap gives the application error, so ErrorCode sees ERateLimited.
func (e *WaitError) Unwrap() error {
	why := e.Why
	if why == "" {
		why = "too many failed logins"
	}
	return seckill.Errorf(seckill.ERateLimited, "%s; try again in %d s", why, e.Seconds())
}

// Service is the account logic over a user store and a session store.
type Service struct {
	users    seckill.UserStore
	sessions seckill.SessionStore
	cfg      Config
	slots    *slots
	dummy    string // hash checked for unknown phones, so timing tells nothing
	now      func() time.Time
	inSlot   func(ctx context.Context) // test hook: runs in each hashing slot, before the hash

	// provisionHash is the password hash of every provisioned account,
	// computed at the first Provision (provision.go).
	provisionHash func() (string, error)
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
	if cfg.TokenKey != nil && len(cfg.TokenKey) < 16 {
		return nil, fmt.Errorf("account: the token key must be at least 16 bytes")
	}
	dummy, err := HashPassword("not a real password", cfg.Params)
	if err != nil {
		return nil, err
	}
	s := &Service{users: users, sessions: sessions, cfg: cfg, slots: newSlots(cfg.Hashers), dummy: dummy, now: time.Now}
	s.provisionHash = sync.OnceValues(func() (string, error) { return unknownPasswordHash(cfg.Params) })
	return s, nil
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
	if strings.ContainsRune(nickname, 0) {
		// PostgreSQL's text refuses it: a 500 after the password's hash.
		return seckill.Errorf(seckill.EInvalid, "nickname must not contain a NUL character")
	}
	return nil
}

// hash runs fn in a hashing slot: at most Hashers run at once, so a login
// storm queues instead of allocating memory-cost × requests, and hashes of
// rankClean go before those of rankSuspect. EBusy when no slot frees up
// within HashWait.
//
// admit, when not nil, runs in the slot before the hash and refuses it
// with its error: what must be spent only by a hash that will run (the
// phone's login budget) is taken there, after every wait that can give up.
func (s *Service) hash(ctx context.Context, rank int, admit, fn func() error) error {
	if err := s.slots.acquire(ctx, rank, s.cfg.HashWait); err != nil {
		return err
	}
	defer s.slots.release()
	if admit != nil {
		if err := admit(); err != nil {
			return err
		}
	}
	if s.inSlot != nil {
		s.inSlot(ctx)
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
	err := s.hash(ctx, rankClean, nil, func() (err error) {
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
// this phone an admin with this password. When that changes the account's
// password or role, every session it had ends (EndSessions): a rotated
// password must lock out whoever held the old one. An admin whose password
// is already this one keeps its sessions. Instances starting together on
// an empty database race to create it: the one that loses finds the
// account the other made and goes on with it.
func (s *Service) EnsureAdmin(ctx context.Context, phone, password string) (*seckill.User, error) {
	if err := ValidateAccount(phone, password, ""); err != nil {
		return nil, fmt.Errorf("admin account: %w", err)
	}
	for attempt := 1; ; attempt++ {
		u, err := s.ensureAdmin(ctx, phone, password)
		if seckill.ErrorCode(err) != seckill.EPhoneTaken || attempt == 3 {
			return u, err
		}
	}
}

// ensureAdmin is one try of EnsureAdmin: EPhoneTaken if the account was
// created by someone else between its look-up and its creation.
func (s *Service) ensureAdmin(ctx context.Context, phone, password string) (*seckill.User, error) {
	u, err := s.users.UserByPhone(ctx, phone)
	if err == nil && u.Role == seckill.RoleAdmin {
		if same, cerr := CheckPassword(password, u.PasswordHash); cerr == nil && same {
			return u, nil
		}
	}
	hash, herr := HashPassword(password, s.cfg.Params)
	if herr != nil {
		return nil, herr
	}
	switch seckill.ErrorCode(err) {
	case "":
		// End the sessions before storing the change as well as after:
		// a failure then fails with the account unchanged, and the next
		// start, still seeing the old password, ends them. Ending them
		// only after, a failed ending was never retried (the next start
		// found the password already rotated). The second ending takes
		// sessions opened meanwhile with the old password.
		if err := s.EndSessions(ctx, u.ID); err != nil {
			return nil, err
		}
		u.Role, u.PasswordHash = seckill.RoleAdmin, hash
		if err := s.users.UpdateUser(ctx, u); err != nil {
			return nil, err
		}
		return u, s.EndSessions(ctx, u.ID)
	case seckill.ENotFound:
		u = &seckill.User{Phone: phone, Nickname: "admin", Role: seckill.RoleAdmin, PasswordHash: hash}
		return u, s.users.CreateUser(ctx, u)
	}
	return nil, err
}

// Login is LoginFrom with no client address: only the phone's back-off
// applies.
func (s *Service) Login(ctx context.Context, phone, password string) (string, *seckill.Session, *seckill.User, error) {
	return s.LoginFrom(ctx, phone, password, "")
}

// LoginFrom checks the password of a login from client address ip and
// opens a session. It returns the token (shown to the client once, never
// stored) and the session. EBadCredentials for an unknown phone or wrong
// password, alike; a *WaitError (ERateLimited) without checking the
// password while the phone or the address is in back-off or the phone's
// budget (Config.PhoneLogins) is spent; EBusy when no hashing slot frees
// up in time.
func (s *Service) LoginFrom(ctx context.Context, phone, password, ip string) (string, *seckill.Session, *seckill.User, error) {
	bad := seckill.Errorf(seckill.EBadCredentials, "wrong phone or password")
	phoneKey := phone
	if !ValidPhone(phone) {
		phoneKey = "" // no account has it: only the address pays for it
	}
	rank, err := s.attempt(ctx, phoneKey, ip)
	if err != nil {
		return "", nil, nil, err
	}
	checked, ok := false, false
	defer func() {
		// Only a wrong password counts against phone and address.
		if !checked || ok {
			s.settle(context.WithoutCancel(ctx), phoneKey, ip, ok)
		}
	}()
	// A malformed phone finds no account, whatever the store's comparison
	// makes of it: it is outside the phone's back-off and budget above,
	// and MySQL's (PAD SPACE) finds "13800000001 " for 13800000001.
	var u *seckill.User
	if phoneKey != "" {
		u, err = s.users.UserByPhone(ctx, phone)
		if err != nil && seckill.ErrorCode(err) != seckill.ENotFound {
			return "", nil, nil, err
		}
	}
	hash := s.dummy
	if u != nil {
		hash = u.PasswordHash
	}
	// The phone's budget is taken in the hashing slot, right before the
	// hash: after both back-offs, so that an attempt either refuses
	// spends none of it, and after every wait that can give up (the
	// user's read, the slot's queue, a client gone), so that an attempt
	// never checked, whose back-off attempt settle takes back, spends
	// none either. Taken earlier, a stranger's logins that time out in
	// the slots' queue drained the owner's budget without growing the
	// back-off. A token taken is a hash run (CheckPassword does not stop
	// for ctx), and a wrong password then counts against the back-off.
	admit := func() error { return s.phoneBudget(ctx, phoneKey) }
	if err := s.hash(ctx, rank, admit, func() (err error) {
		ok, err = CheckPassword(password, hash)
		return err
	}); err != nil {
		return "", nil, nil, err
	}
	checked = true
	if u == nil || !ok {
		ok = false
		return "", nil, nil, bad
	}
	token, sess, err := s.OpenSession(ctx, u)
	if err != nil {
		return "", nil, nil, err
	}
	// The password was checked against the account as read before the
	// hash: a change of password or role (which then ends the account's
	// sessions) may have completed since, before this session existed to
	// be ended. Read the account again now that it does: unchanged, any
	// later change ends this session too; changed, the login loses.
	cur, err := s.users.UserByID(ctx, u.ID)
	if err != nil || cur.PasswordHash != u.PasswordHash || cur.Role != u.Role {
		_ = s.sessions.DeleteSession(context.WithoutCancel(ctx), sess.TokenHash)
		if err != nil {
			return "", nil, nil, err
		}
		ok = false
		return "", nil, nil, bad
	}
	return token, sess, u, nil
}

// attempt records a login attempt with the address's and the phone's
// back-off (either key may be ""). It returns the rank of the attempt's
// hash: rankClean when neither has an attempt on record, else
// rankSuspect. A *WaitError when either must wait; the address is asked
// first, and the phone is not charged for an attempt the address may not
// make.
func (s *Service) attempt(ctx context.Context, phone, ip string) (int, error) {
	rank := rankClean
	if g := s.cfg.IPs; g != nil && ip != "" {
		n, wait, err := g.Attempt(ctx, ip)
		if err != nil {
			return 0, err
		}
		if wait > 0 {
			return 0, &WaitError{Wait: wait}
		}
		if n > 0 {
			rank = rankSuspect
		}
	}
	if g := s.cfg.Phones; g != nil && phone != "" {
		n, wait, err := g.Attempt(ctx, phone)
		if err == nil && wait > 0 {
			err = &WaitError{Wait: wait}
		}
		if err != nil {
			s.settle(context.WithoutCancel(ctx), "", ip, false)
			return 0, err
		}
		if n > 0 {
			rank = rankSuspect
		}
	}
	return rank, nil
}

// phoneBudget takes a token of phone's login bucket (Config.PhoneLogins);
// a *WaitError of one refill when there is none. Nothing to take for ""
// (no account has an invalid phone: only the address pays for it).
func (s *Service) phoneBudget(ctx context.Context, phone string) error {
	if s.cfg.PhoneLogins == nil || phone == "" {
		return nil
	}
	allowed, err := s.cfg.PhoneLogins.Allow(ctx, phone)
	if err != nil {
		return err
	}
	if !allowed {
		refill := time.Duration(float64(time.Second) / PhoneLoginBucket.PerSecond)
		return &WaitError{Wait: refill, Why: "too many logins to this phone"}
	}
	return nil
}

// settle takes back an attempt that was not a wrong password: a success
// clears the phone's record (its owner knows the password), and anything
// else (a success, or an attempt never checked) takes back one attempt.
// Best effort: a guard that fails here leaves the attempt counted.
func (s *Service) settle(ctx context.Context, phone, ip string, success bool) {
	if g := s.cfg.IPs; g != nil && ip != "" {
		_ = g.Succeeded(ctx, ip, false)
	}
	if g := s.cfg.Phones; g != nil && phone != "" {
		_ = g.Succeeded(ctx, phone, success)
	}
}

// OpenSession issues a new session for u without checking a password (login,
// and provisioning of test and benchmark users).
func (s *Service) OpenSession(ctx context.Context, u *seckill.User) (string, *seckill.Session, error) {
	raw := make([]byte, tokenRandom, tokenRandom+tokenTag)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, fmt.Errorf("token: %w", err)
	}
	if s.cfg.TokenKey != nil {
		raw = append(raw, s.tokenTag(raw)...)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	sess := seckill.Session{TokenHash: HashToken(token), UserID: u.ID, Role: u.Role, ExpiresAt: s.now().Add(s.cfg.SessionTTL).UTC()}
	if err := s.sessions.CreateSession(ctx, sess); err != nil {
		return "", nil, err
	}
	return token, &sess, nil
}

// A session token is tokenRandom random bytes, followed with a TokenKey by
// a tag of tokenTag bytes, in unpadded base64url.
const (
	tokenRandom = 32
	tokenTag    = 16
)

// signedTokenLen is the length of a signed token.
var signedTokenLen = base64.RawURLEncoding.EncodedLen(tokenRandom + tokenTag)

// tokenTag is the tag of a token's random bytes under Config.TokenKey.
func (s *Service) tokenTag(random []byte) []byte {
	m := hmac.New(sha256.New, s.cfg.TokenKey)
	m.Write(random)
	return m.Sum(nil)[:tokenTag]
}

// SignedToken reports whether token carries a valid signature under
// Config.TokenKey: this service (or another instance with the same key)
// issued it. It says nothing of whether its session still lasts; it costs
// an HMAC and no lookup.
func (s *Service) SignedToken(token string) bool {
	if s.cfg.TokenKey == nil || len(token) != signedTokenLen {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != tokenRandom+tokenTag {
		return false
	}
	return hmac.Equal(raw[tokenRandom:], s.tokenTag(raw[:tokenRandom]))
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

// knowingSessions is a session store that remembers the tokens it has
// seen (inmem.SessionCache).
type knowingSessions interface {
	Known(tokenHash []byte) bool
}

// KnownToken reports whether token was a session's when the session store
// last read it here, as far as its memory (a cache in front of the
// stores) tells; false when the store keeps nothing in memory. It asks no
// store: for a request that may not cost a lookup unless its token is
// one (httpapi: an address over its budget of unknown tokens).
func (s *Service) KnownToken(token string) bool {
	k, ok := s.sessions.(knowingSessions)
	return ok && token != "" && k.Known(HashToken(token))
}

// SessionOf returns the session of a token hash while it lasts, without
// extending it: EUnauthenticated once it was deleted or expired. For what
// a session opened and must not outlive it (an admin's dashboard socket).
func (s *Service) SessionOf(ctx context.Context, tokenHash []byte) (*seckill.Session, error) {
	sess, err := s.sessions.Session(ctx, tokenHash)
	if seckill.ErrorCode(err) == seckill.ENotFound || err == nil && !s.now().Before(sess.ExpiresAt) {
		return nil, seckill.Errorf(seckill.EUnauthenticated, "session expired or unknown; log in again")
	}
	return sess, err
}

// EndSessions ends every session of the user, as a change of password or
// role must. The session store must be a seckill.SessionRevoker (every
// store of this module is); an internal error otherwise. With Redis each
// deletion is announced to every instance (rdb.Sessions.DeleteSession),
// whose session cache and WebSockets drop the session at once; an
// announcement lost is bounded by the cache's TTL and the sockets' next
// look at their sessions.
func (s *Service) EndSessions(ctx context.Context, userID int64) error {
	r, ok := s.sessions.(seckill.SessionRevoker)
	if !ok {
		return fmt.Errorf("end sessions of user %d: the session store cannot", userID)
	}
	if _, err := r.DeleteUserSessions(ctx, userID); err != nil {
		return fmt.Errorf("end sessions of user %d: %w", userID, err)
	}
	return nil
}

// Logout ends the session of token.
func (s *Service) Logout(ctx context.Context, token string) error {
	return s.sessions.DeleteSession(ctx, HashToken(token))
}

// User returns the account of a session.
func (s *Service) User(ctx context.Context, id int64) (*seckill.User, error) {
	return s.users.UserByID(ctx, id)
}
