package account

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"seckill"
	"seckill/inmem"
	"seckill/sqldb"
)

// cheap keeps argon2id fast in tests; DefaultParams is exercised once.
var cheap = Params{Memory: 64, Time: 1, Threads: 1}

const (
	phone    = "13800000000"
	password = "correct horse"
)

// fakeClock is the service's clock in tests; safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	// Whole milliseconds, as the SQL store keeps them, so expiries read back
	// exactly; close to the real time, because the store judges expiry by it.
	return &fakeClock{t: time.Now().UTC().Truncate(time.Millisecond)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingSessions counts the writes that go through to a SessionStore.
type countingSessions struct {
	seckill.SessionStore
	touches atomic.Int64
}

func (c *countingSessions) TouchSession(ctx context.Context, tokenHash []byte, expiresAt time.Time) error {
	c.touches.Add(1)
	return c.SessionStore.TouchSession(ctx, tokenHash, expiresAt)
}

func openDB(t *testing.T) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), "sqlite:"+t.TempDir()+"/db")
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is a service over a fresh SQLite database with a fake clock.
type fixture struct {
	s     *Service
	db    *sqldb.DB
	clock *fakeClock
}

// newFixture builds the service; cfg.Params defaults to cheap, and sessions,
// when non-nil, wraps the database as the session store.
func newFixture(t *testing.T, cfg Config, sessions func(*sqldb.DB) seckill.SessionStore) *fixture {
	t.Helper()
	if cfg.Params == (Params{}) {
		cfg.Params = cheap
	}
	db := openDB(t)
	var ss seckill.SessionStore = db
	if sessions != nil {
		ss = sessions(db)
	}
	s, err := New(db, ss, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clock := newClock()
	s.now = clock.Now
	return &fixture{s: s, db: db, clock: clock}
}

// hold takes a hashing slot; slots.release gives it back.
func (f *fixture) hold(t *testing.T) {
	t.Helper()
	if err := f.s.slots.acquire(context.Background(), rankClean, time.Minute); err != nil {
		t.Fatalf("hold a slot: %v", err)
	}
}

func (f *fixture) register(t *testing.T, phone, password string) *seckill.User {
	t.Helper()
	u, err := f.s.Register(context.Background(), phone, password, "nick")
	if err != nil {
		t.Fatalf("Register(%s): %v", phone, err)
	}
	return u
}

func (f *fixture) login(t *testing.T, phone, password string) (string, *seckill.Session) {
	t.Helper()
	token, sess, _, err := f.s.Login(context.Background(), phone, password)
	if err != nil {
		t.Fatalf("Login(%s): %v", phone, err)
	}
	return token, sess
}

// storedSession reads the session of token straight from the database.
func (f *fixture) storedSession(t *testing.T, token string) *seckill.Session {
	t.Helper()
	sess, err := f.db.Session(context.Background(), HashToken(token))
	if err != nil {
		t.Fatalf("stored session: %v", err)
	}
	return sess
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := seckill.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (err %v), want %q", got, err, code)
	}
}

// checkPassword calls CheckPassword and turns a panic into a test failure.
func checkPassword(t *testing.T, password, hash string) (ok bool, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("CheckPassword(%q) panicked: %v", hash, r)
			ok, err = false, fmt.Errorf("panic: %v", r)
		}
	}()
	return CheckPassword(password, hash)
}

func hashPassword(t *testing.T, password string, p Params) string {
	t.Helper()
	h, err := HashPassword(password, p)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	return h
}

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$`)

func TestHashPasswordFormat(t *testing.T) {
	t.Parallel()
	h := hashPassword(t, password, cheap)
	m := phcRE.FindStringSubmatch(h)
	if m == nil {
		t.Fatalf("hash %q is not $argon2id$v=19$m=..,t=..,p=..$salt$key with a 16-byte salt and 32-byte key", h)
	}
	if got, want := m[1]+","+m[2]+","+m[3], "64,1,1"; got != want {
		t.Errorf("params m,t,p = %s, want %s", got, want)
	}
	// The key is argon2id over the recorded salt, not just any 32 bytes.
	salt, err := base64.RawStdEncoding.DecodeString(m[4])
	if err != nil {
		t.Fatal(err)
	}
	key, _ := base64.RawStdEncoding.DecodeString(m[5])
	if want := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32); !bytes.Equal(key, want) {
		t.Errorf("key is not argon2id(password, salt)")
	}
	if strings.Contains(h, password) {
		t.Errorf("hash %q contains the password", h)
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{password, "", "пароль-密码-🔑", strings.Repeat("x", MaxPassword)} {
		h := hashPassword(t, pw, cheap)
		if ok, err := checkPassword(t, pw, h); err != nil || !ok {
			t.Errorf("CheckPassword(%q, own hash) = %v, %v; want true", pw, ok, err)
		}
		for _, wrong := range []string{pw + "x", strings.ToUpper(pw) + "!", "nope"} {
			if ok, err := checkPassword(t, wrong, h); err != nil || ok {
				t.Errorf("CheckPassword(%q, hash of %q) = %v, %v; want false, nil", wrong, pw, ok, err)
			}
		}
	}
}

func TestHashPasswordSalted(t *testing.T) {
	t.Parallel()
	a, b := hashPassword(t, password, cheap), hashPassword(t, password, cheap)
	if a == b {
		t.Fatalf("two hashes of the same password are equal: %s", a)
	}
	if strings.Split(a, "$")[4] == strings.Split(b, "$")[4] {
		t.Errorf("two hashes share a salt")
	}
}

// Not parallel: it changes DefaultParams (parallel tests run after it).
func TestCheckPasswordUsesRecordedParams(t *testing.T) {
	saved := DefaultParams
	t.Cleanup(func() { DefaultParams = saved })

	hashes := map[Params]string{}
	for _, p := range []Params{cheap, {Memory: 128, Time: 2, Threads: 2}, {Memory: 256, Time: 3, Threads: 4}} {
		hashes[p] = hashPassword(t, password, p)
	}
	for _, dp := range []Params{saved, cheap, {Memory: 8, Time: 5, Threads: 3}} {
		DefaultParams = dp
		for p, h := range hashes {
			if ok, err := checkPassword(t, password, h); err != nil || !ok {
				t.Errorf("DefaultParams %+v: hash under %+v: CheckPassword = %v, %v; want true", dp, p, ok, err)
			}
		}
	}
}

func TestDefaultParams(t *testing.T) {
	t.Parallel()
	h := hashPassword(t, password, DefaultParams)
	if want := "$argon2id$v=19$m=19456,t=2,p=1$"; !strings.HasPrefix(h, want) {
		t.Errorf("hash %q does not start with %q", h, want)
	}
	if ok, err := checkPassword(t, password, h); err != nil || !ok {
		t.Errorf("CheckPassword = %v, %v; want true", ok, err)
	}

	// New fills in every default, DefaultParams among them.
	db := openDB(t)
	s, err := New(db, db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{SessionTTL: 24 * time.Hour, Params: DefaultParams, Hashers: runtime.NumCPU(), HashWait: 5 * time.Second}
	if !reflect.DeepEqual(s.cfg, want) {
		t.Errorf("defaults = %+v, want %+v", s.cfg, want)
	}
	if s.slots.n != want.Hashers {
		t.Errorf("%d hashing slots, want %d", s.slots.n, want.Hashers)
	}
	if !strings.HasPrefix(s.dummy, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("dummy hash %q is not under DefaultParams", s.dummy)
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	t.Parallel()
	good := hashPassword(t, password, cheap)
	parts := strings.Split(good, "$") // "", alg, version, params, salt, key
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	tests := []struct{ name, hash string }{
		{"empty", ""},
		{"plain text", password},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"too few parts", strings.Join(parts[:5], "$")},
		{"too many parts", good + "$extra"},
		{"no leading dollar", strings.TrimPrefix(good, "$")},
		{"argon2i", with(1, "argon2i")},
		{"argon2d", with(1, "argon2d")},
		{"algorithm case", with(1, "Argon2id")},
		{"old version", with(2, "v=16")},
		{"future version", with(2, "v=20")},
		{"version not a number", with(2, "v=x")},
		{"version without v=", with(2, "19")},
		{"empty version", with(2, "")},
		{"params missing p", with(3, "m=64,t=1")},
		{"params reordered", with(3, "t=1,m=64,p=1")},
		{"params not numbers", with(3, "m=x,t=1,p=1")},
		{"params negative", with(3, "m=-64,t=1,p=1")},
		{"threads overflow uint8", with(3, "m=64,t=1,p=256")},
		{"memory overflow uint32", with(3, "m=4294967296,t=1,p=1")},
		{"zero time", with(3, "m=64,t=0,p=1")},
		{"zero threads", with(3, "m=64,t=1,p=0")},
		{"empty params", with(3, "")},
		{"salt not base64", with(4, "not*base64!")},
		{"salt padded", with(4, parts[4]+"==")},
		{"key not base64", with(5, "@@@@")},
		{"key padded", with(5, parts[5]+"=")},
		{"key empty", with(5, "")},
		{"key too short", with(5, "AAA")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := checkPassword(t, password, tt.hash)
			if err == nil {
				t.Errorf("CheckPassword(%q) = %v, nil; want an error", tt.hash, ok)
			}
			if ok {
				t.Errorf("CheckPassword(%q) accepted the password", tt.hash)
			}
		})
	}
}

func TestValidPhone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		phone string
		want  bool
	}{
		{"13800000000", true},
		{"10000000000", true},
		{"19999999999", true},
		{"", false},
		{"1", false},
		{"1380000000", false},    // 10 digits
		{"138000000000", false},  // 12 digits
		{"23800000000", false},   // starts with 2
		{"03800000000", false},   // starts with 0
		{"1380000000a", false},   // letter
		{"138-0000-000", false},  // separators
		{" 13800000000", false},  // leading space
		{"13800000000 ", false},  // trailing space
		{"13800000000\n", false}, // trailing newline ($ is end of text in Go)
		{"+8613800000000", false},
		{"１３８００００００００", false}, // full-width digits
		{"1٣800000000", false}, // Arabic-Indic digit
	}
	for _, tt := range tests {
		if got := ValidPhone(tt.phone); got != tt.want {
			t.Errorf("ValidPhone(%q) = %v, want %v", tt.phone, got, tt.want)
		}
	}
}

func TestValidateAccount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                      string
		phone, password, nickname string
		ok                        bool
	}{
		{"valid", phone, password, "Alice", true},
		{"empty nickname", phone, password, "", true},
		{"bad phone", "1380000000", password, "", false},
		{"empty phone", "", password, "", false},
		{"password 7 chars", phone, "1234567", "", false},
		{"password 8 chars", phone, "12345678", "", true},
		{"empty password", phone, "", "", false},
		{"password 8 runes, 24 bytes", phone, strings.Repeat("密", 8), "", true},
		{"password 7 runes, 21 bytes", phone, strings.Repeat("密", 7), "", false},
		{"password 128 bytes", phone, strings.Repeat("x", 128), "", true},
		{"password 129 bytes", phone, strings.Repeat("x", 129), "", false},
		{"password 43 runes, 129 bytes", phone, strings.Repeat("密", 43), "", false},
		{"password 42 runes, 126 bytes", phone, strings.Repeat("密", 42), "", true},
		{"nickname 64 runes", phone, password, strings.Repeat("张", 64), true},
		{"nickname 65 runes", phone, password, strings.Repeat("张", 65), false},
		{"nickname 65 ASCII", phone, password, strings.Repeat("a", 65), false},
		{"nickname invalid UTF-8", phone, password, "bad\xffname", false},
		{"nickname truncated rune", phone, password, "\xe5\xbc", false},
		{"nickname with NUL", phone, password, "li\x00lei", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateAccount(tt.phone, tt.password, tt.nickname)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidateAccount: %v, want nil", err)
				}
				return
			}
			wantCode(t, err, seckill.EInvalid)
		})
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	ctx := context.Background()
	u, err := f.s.Register(ctx, phone, password, "Alice")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if u.ID == 0 || u.Phone != phone || u.Nickname != "Alice" || u.Role != seckill.RoleBuyer {
		t.Errorf("Register returned %+v, want a buyer with an ID", u)
	}
	stored, err := f.db.UserByPhone(ctx, phone)
	if err != nil {
		t.Fatal(err)
	}
	if stored.ID != u.ID || stored.Role != seckill.RoleBuyer || stored.Nickname != "Alice" {
		t.Errorf("stored %+v, want id %d, buyer, Alice", stored, u.ID)
	}
	if !phcRE.MatchString(stored.PasswordHash) || strings.Contains(stored.PasswordHash, password) {
		t.Errorf("stored password hash %q is not an argon2id PHC string free of the password", stored.PasswordHash)
	}
	if ok, err := checkPassword(t, password, stored.PasswordHash); err != nil || !ok {
		t.Errorf("stored hash does not check: %v, %v", ok, err)
	}
	got, err := f.s.User(ctx, u.ID)
	if err != nil || got.Phone != phone {
		t.Errorf("User(%d) = %+v, %v", u.ID, got, err)
	}
	_, err = f.s.User(ctx, u.ID+1000)
	wantCode(t, err, seckill.ENotFound)
}

func TestRegisterInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	tests := []struct{ name, phone, password, nickname string }{
		{"phone", "2380000000", password, ""},
		{"short password", phone, "short", ""},
		{"long password", phone, strings.Repeat("p", MaxPassword+1), ""},
		{"long nickname", phone, password, strings.Repeat("n", MaxNickname+1)},
		{"invalid nickname", phone, password, "\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.s.Register(context.Background(), tt.phone, tt.password, tt.nickname)
			wantCode(t, err, seckill.EInvalid)
			if u != nil {
				t.Errorf("returned user %+v with the error", u)
			}
		})
	}
	if _, err := f.db.UserByPhone(context.Background(), phone); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Errorf("an invalid registration stored a user: %v", err)
	}
}

func TestRegisterPhoneTaken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	first := f.register(t, phone, password)
	_, err := f.s.Register(context.Background(), phone, "another password", "Mallory")
	wantCode(t, err, seckill.EPhoneTaken)
	// The first account is untouched: its password still works.
	_, sess := f.login(t, phone, password)
	if sess.UserID != first.ID {
		t.Errorf("session for user %d, want %d", sess.UserID, first.ID)
	}
}

func TestRegisterConcurrentSamePhone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Hashers: 4, HashWait: time.Minute}, nil)
	const n = 10
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
		ids  = make([]int64, n)
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			u, err := f.s.Register(context.Background(), phone, fmt.Sprintf("password-%d", i), "")
			errs[i] = err
			if u != nil {
				ids[i] = u.ID
			}
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch seckill.ErrorCode(err) {
		case "":
			if winner >= 0 {
				t.Errorf("registrations %d and %d both succeeded", winner, i)
			}
			winner = i
		case seckill.EPhoneTaken:
		default:
			t.Errorf("registration %d: %v, want success or %s", i, err, seckill.EPhoneTaken)
		}
	}
	if winner < 0 {
		t.Fatal("no registration succeeded")
	}
	stored, err := f.db.UserByPhone(context.Background(), phone)
	if err != nil {
		t.Fatal(err)
	}
	if stored.ID != ids[winner] {
		t.Errorf("stored user %d, winner got %d", stored.ID, ids[winner])
	}
	// The stored password is the winner's.
	f.login(t, phone, fmt.Sprintf("password-%d", winner))
}

func TestLogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{SessionTTL: 2 * time.Hour}, nil)
	u := f.register(t, phone, password)
	token, sess, gotUser, err := f.s.Login(context.Background(), phone, password)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if len(token) != 43 {
		t.Errorf("token %q has %d chars, want 43", token, len(token))
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 32 {
		t.Errorf("token %q is not 32 bytes of unpadded base64url: %d bytes, %v", token, len(raw), err)
	}
	if gotUser == nil || gotUser.ID != u.ID {
		t.Errorf("Login user = %+v, want id %d", gotUser, u.ID)
	}
	want := seckill.Session{TokenHash: HashToken(token), UserID: u.ID, Role: seckill.RoleBuyer, ExpiresAt: f.clock.Now().Add(2 * time.Hour)}
	if !bytes.Equal(sess.TokenHash, want.TokenHash) || sess.UserID != want.UserID || sess.Role != want.Role || !sess.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("Login session = %+v, want %+v", sess, want)
	}

	stored := f.storedSession(t, token)
	if !bytes.Equal(stored.TokenHash, want.TokenHash) || stored.UserID != u.ID || !stored.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("stored session = %+v, want %+v", stored, want)
	}
	if bytes.Contains(stored.TokenHash, []byte(token)) || bytes.Contains(stored.TokenHash, raw) {
		t.Errorf("stored session holds the token itself")
	}
	if _, err := f.db.Session(context.Background(), []byte(token)); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Errorf("a session is stored under the raw token: %v", err)
	}

	// Every login is a new session.
	token2, _ := f.login(t, phone, password)
	if token2 == token {
		t.Errorf("two logins returned the same token")
	}
}

func TestLoginBadCredentials(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	f.register(t, phone, password)
	tests := []struct{ name, phone, password string }{
		{"wrong password", phone, password + "!"},
		{"empty password", phone, ""},
		{"unknown phone", "13900000000", password},
		{"invalid phone", "nope", password},
	}
	var msgs []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, sess, u, err := f.s.Login(context.Background(), tt.phone, tt.password)
			wantCode(t, err, seckill.EBadCredentials)
			if token != "" || sess != nil || u != nil {
				t.Errorf("Login returned %q, %v, %v with the error", token, sess, u)
			}
			msgs = append(msgs, seckill.ErrorMessage(err))
		})
	}
	// The message does not tell which phones are registered.
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Errorf("messages differ: %q vs %q", m, msgs[0])
		}
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	u := f.register(t, phone, password)
	token, _ := f.login(t, phone, password)

	sess, err := f.s.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if sess.UserID != u.ID || sess.Role != seckill.RoleBuyer {
		t.Errorf("session %+v, want user %d buyer", sess, u.ID)
	}

	tampered := []byte(token)
	tampered[0] ^= 1
	for name, tok := range map[string]string{
		"empty":            "",
		"unknown":          strings.Repeat("A", 43),
		"tampered":         string(tampered),
		"token hash":       base64.RawURLEncoding.EncodeToString(HashToken(token)),
		"token with space": token + " ",
	} {
		t.Run(name, func(t *testing.T) {
			sess, err := f.s.Authenticate(context.Background(), tok)
			wantCode(t, err, seckill.EUnauthenticated)
			if sess != nil {
				t.Errorf("session %+v with the error", sess)
			}
		})
	}
}

func TestAuthenticateExpired(t *testing.T) {
	t.Parallel()
	const ttl = 24 * time.Hour
	tests := []struct {
		name    string
		advance time.Duration
		ok      bool
	}{
		{"just before expiry", ttl - time.Millisecond, true},
		{"at expiry", ttl, false},
		{"past expiry", ttl + time.Second, false},
		{"long past expiry", 30 * ttl, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			counting := &countingSessions{}
			f := newFixture(t, Config{SessionTTL: ttl}, func(db *sqldb.DB) seckill.SessionStore {
				counting.SessionStore = db
				return counting
			})
			f.register(t, phone, password)
			token, sess := f.login(t, phone, password)
			f.clock.Advance(tt.advance)
			_, err := f.s.Authenticate(context.Background(), token)
			if tt.ok {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				return
			}
			wantCode(t, err, seckill.EUnauthenticated)
			// The store's own clock has not reached the expiry, yet the
			// service must not bring the session back to life.
			if n := counting.touches.Load(); n != 0 {
				t.Errorf("%d touches of an expired session", n)
			}
			if got := f.storedSession(t, token).ExpiresAt; !got.Equal(sess.ExpiresAt) {
				t.Errorf("expired session's expiry moved from %v to %v", sess.ExpiresAt, got)
			}
		})
	}
}

// The store judges expiry by its own clock too.
func TestAuthenticateExpiredInStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{SessionTTL: time.Hour}, nil)
	f.register(t, phone, password)
	f.clock.Advance(-2 * time.Hour) // the session expired an hour ago in real time
	token, _ := f.login(t, phone, password)
	_, err := f.s.Authenticate(context.Background(), token)
	wantCode(t, err, seckill.EUnauthenticated)
}

func TestAuthenticateSlidingExpiry(t *testing.T) {
	t.Parallel()
	const ttl = 24 * time.Hour
	step := ttl / 24
	setups := map[string]func(*sqldb.DB) seckill.SessionStore{
		"sqldb":              func(db *sqldb.DB) seckill.SessionStore { return db },
		"session cache":      func(db *sqldb.DB) seckill.SessionStore { return inmem.NewSessionCache(db, time.Minute, 100) },
		"session cache tiny": func(db *sqldb.DB) seckill.SessionStore { return inmem.NewSessionCache(db, time.Minute, 1) },
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			counting := &countingSessions{}
			f := newFixture(t, Config{SessionTTL: ttl}, func(db *sqldb.DB) seckill.SessionStore {
				counting.SessionStore = setup(db)
				return counting
			})
			ctx := context.Background()
			f.register(t, phone, password)
			token, sess := f.login(t, phone, password)
			created, loginAt := sess.ExpiresAt, f.clock.Now()

			// Up to and including TTL/24 after the last extension: no write.
			for _, at := range []time.Duration{0, time.Second, step / 2, step} {
				f.clock.Set(loginAt.Add(at))
				got, err := f.s.Authenticate(ctx, token)
				if err != nil {
					t.Fatalf("Authenticate after %v: %v", at, err)
				}
				if !got.ExpiresAt.Equal(created) {
					t.Errorf("after %v: expiry %v, want unchanged %v", at, got.ExpiresAt, created)
				}
			}
			if n := counting.touches.Load(); n != 0 {
				t.Fatalf("%d session writes within TTL/24, want 0", n)
			}
			if got := f.storedSession(t, token).ExpiresAt; !got.Equal(created) {
				t.Errorf("stored expiry moved to %v without a touch", got)
			}

			// Past TTL/24: the expiry moves to now+TTL, once.
			f.clock.Advance(time.Millisecond)
			want := f.clock.Now().Add(ttl)
			got, err := f.s.Authenticate(ctx, token)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if !got.ExpiresAt.Equal(want) {
				t.Errorf("returned expiry %v, want %v", got.ExpiresAt, want)
			}
			if stored := f.storedSession(t, token).ExpiresAt; !stored.Equal(want) {
				t.Errorf("stored expiry %v, want %v", stored, want)
			}
			if n := counting.touches.Load(); n != 1 {
				t.Errorf("%d session writes, want 1", n)
			}
			// The next request reads the new expiry (also from a cache) and
			// does not write again.
			got, err = f.s.Authenticate(ctx, token)
			if err != nil || !got.ExpiresAt.Equal(want) {
				t.Errorf("Authenticate again = %v, %v; want expiry %v", got, err, want)
			}
			if n := counting.touches.Load(); n != 1 {
				t.Errorf("%d session writes after a second request, want 1", n)
			}

			// Kept alive by use, the session outlives its first expiry.
			for range 30 {
				f.clock.Advance(2 * step)
				if _, err := f.s.Authenticate(ctx, token); err != nil {
					t.Fatalf("Authenticate %v after login: %v", f.clock.Now().Sub(loginAt), err)
				}
			}
			if !f.clock.Now().After(created) {
				t.Fatalf("test did not pass the original expiry")
			}
		})
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	setups := map[string]func(*sqldb.DB) seckill.SessionStore{
		"sqldb":         func(db *sqldb.DB) seckill.SessionStore { return db },
		"session cache": func(db *sqldb.DB) seckill.SessionStore { return inmem.NewSessionCache(db, time.Hour, 100) },
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, setup)
			ctx := context.Background()
			f.register(t, phone, password)
			token, _ := f.login(t, phone, password)
			other, _ := f.login(t, phone, password)
			if _, err := f.s.Authenticate(ctx, token); err != nil { // warm a cache
				t.Fatal(err)
			}

			if err := f.s.Logout(ctx, token); err != nil {
				t.Fatalf("Logout: %v", err)
			}
			_, err := f.s.Authenticate(ctx, token)
			wantCode(t, err, seckill.EUnauthenticated)
			if _, err := f.db.Session(ctx, HashToken(token)); seckill.ErrorCode(err) != seckill.ENotFound {
				t.Errorf("session still stored after logout: %v", err)
			}
			if _, err := f.s.Authenticate(ctx, other); err != nil {
				t.Errorf("logout ended another session of the same user: %v", err)
			}

			for name, tok := range map[string]string{"again": token, "unknown": strings.Repeat("B", 43), "empty": ""} {
				if err := f.s.Logout(ctx, tok); err != nil {
					t.Errorf("Logout(%s) = %v, want nil", name, err)
				}
			}
		})
	}
}

func TestEnsureAdminCreates(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	ctx := context.Background()
	u, err := f.s.EnsureAdmin(ctx, phone, password)
	if err != nil {
		t.Fatalf("EnsureAdmin: %v", err)
	}
	if u.ID == 0 || u.Role != seckill.RoleAdmin || u.Phone != phone {
		t.Errorf("EnsureAdmin = %+v, want a stored admin", u)
	}
	stored, err := f.db.UserByPhone(ctx, phone)
	if err != nil {
		t.Fatal(err)
	}
	if stored.ID != u.ID || stored.Role != seckill.RoleAdmin || !phcRE.MatchString(stored.PasswordHash) {
		t.Errorf("stored %+v, want admin %d with an argon2id hash", stored, u.ID)
	}
	_, sess := f.login(t, phone, password)
	if sess.Role != seckill.RoleAdmin {
		t.Errorf("admin session role %q", sess.Role)
	}

	// Start-up runs it every time: idempotent.
	again, err := f.s.EnsureAdmin(ctx, phone, password)
	if err != nil || again.ID != u.ID {
		t.Errorf("second EnsureAdmin = %+v, %v; want the same user %d", again, err, u.ID)
	}
	f.login(t, phone, password)
}

// racingCreator is a user store on which another instance creates the
// admin between this one's look-up and its creation: the first look-up
// finds nothing, and the other's account is stored just before this
// instance's own creation.
type racingCreator struct {
	seckill.UserStore
	other *seckill.User
	raced bool
}

func (r *racingCreator) UserByPhone(ctx context.Context, phone string) (*seckill.User, error) {
	if !r.raced {
		return nil, seckill.Errorf(seckill.ENotFound, "no user %s yet", phone)
	}
	return r.UserStore.UserByPhone(ctx, phone)
}

func (r *racingCreator) CreateUser(ctx context.Context, u *seckill.User) error {
	if !r.raced {
		r.raced = true
		if err := r.UserStore.CreateUser(ctx, r.other); err != nil {
			return err
		}
	}
	return r.UserStore.CreateUser(ctx, u)
}

// TestEnsureAdminRacingInstance: instances starting together on an empty
// database both create the admin; the one that loses the race takes the
// account the other made, rather than failing its start (phone_taken, as
// seen with two instances on MariaDB).
func TestEnsureAdminRacingInstance(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	ctx := context.Background()
	hash, err := HashPassword(password, cheap)
	if err != nil {
		t.Fatal(err)
	}
	race := &racingCreator{UserStore: f.db, other: &seckill.User{Phone: phone, Nickname: "admin", Role: seckill.RoleAdmin, PasswordHash: hash}}
	f.s.users = race
	u, err := f.s.EnsureAdmin(ctx, phone, password)
	if err != nil {
		t.Fatalf("EnsureAdmin after another instance created the admin: %v", err)
	}
	if !race.raced || u.ID != race.other.ID || u.Role != seckill.RoleAdmin {
		t.Errorf("EnsureAdmin = %+v (raced %v), want the other instance's admin %d", u, race.raced, race.other.ID)
	}
	f.login(t, phone, password)
}

func TestEnsureAdminPromotes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	ctx := context.Background()
	const oldPassword, newPassword = "buyer password", "admin password"
	buyer, err := f.s.Register(ctx, phone, oldPassword, "Bob")
	if err != nil {
		t.Fatal(err)
	}
	buyerToken, _ := f.login(t, phone, oldPassword)

	u, err := f.s.EnsureAdmin(ctx, phone, newPassword)
	if err != nil {
		t.Fatalf("EnsureAdmin: %v", err)
	}
	if u.ID != buyer.ID || u.Role != seckill.RoleAdmin {
		t.Errorf("EnsureAdmin = %+v, want user %d as admin", u, buyer.ID)
	}
	stored, err := f.db.UserByID(ctx, buyer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Role != seckill.RoleAdmin || stored.Nickname != "Bob" {
		t.Errorf("stored %+v, want admin Bob", stored)
	}

	_, sess := f.login(t, phone, newPassword)
	if sess.Role != seckill.RoleAdmin || sess.UserID != buyer.ID {
		t.Errorf("session %+v, want admin %d", sess, buyer.ID)
	}
	_, _, _, err = f.s.Login(ctx, phone, oldPassword)
	wantCode(t, err, seckill.EBadCredentials)

	// A session opened as a buyer does not gain the admin role.
	old, err := f.s.Authenticate(ctx, buyerToken)
	if err == nil && old.Role == seckill.RoleAdmin {
		t.Errorf("a buyer session became admin")
	}
}

func TestEnsureAdminInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	tests := []struct{ name, phone, password string }{
		{"empty phone", "", password},
		{"bad phone", "admin", password},
		{"short password", phone, "admin"},
		{"empty password", phone, ""},
		{"long password", phone, strings.Repeat("a", MaxPassword+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.s.EnsureAdmin(context.Background(), tt.phone, tt.password)
			wantCode(t, err, seckill.EInvalid)
			if u != nil {
				t.Errorf("user %+v with the error", u)
			}
		})
	}
	if _, err := f.db.UserByPhone(context.Background(), phone); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Errorf("an invalid EnsureAdmin stored a user: %v", err)
	}
}

func TestHashSlotBusy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Hashers: 1, HashWait: 50 * time.Millisecond}, nil)
	ctx := context.Background()
	f.register(t, phone, password)

	f.hold(t) // the only slot
	_, _, _, err := f.s.Login(ctx, phone, password)
	wantCode(t, err, seckill.EBusy)
	_, _, _, err = f.s.Login(ctx, "13900000000", password) // unknown phones hash too
	wantCode(t, err, seckill.EBusy)
	_, err = f.s.Register(ctx, "13700000000", password, "")
	wantCode(t, err, seckill.EBusy)
	if _, err := f.db.UserByPhone(ctx, "13700000000"); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Errorf("a busy registration stored a user: %v", err)
	}

	// A cancelled request stops waiting with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, _, err = f.s.Login(cctx, phone, password)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Login with a cancelled context = %v, want context.Canceled", err)
	}

	f.s.slots.release()
	f.login(t, phone, password)
	if n := f.s.slots.held(); n != 0 {
		t.Errorf("%d slots still held after login", n)
	}
}

func TestHashSlotsBoundConcurrency(t *testing.T) {
	t.Parallel()
	const hashers, logins = 2, 8
	f := newFixture(t, Config{Hashers: hashers, HashWait: time.Minute}, nil)
	ctx := context.Background()
	phones := make([]string, logins)
	for i := range phones {
		phones[i] = fmt.Sprintf("1380000%04d", i)
		f.register(t, phones[i], password)
	}

	var cur, peak, calls atomic.Int64
	f.s.inSlot = func(context.Context) {
		calls.Add(1)
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(5 * time.Millisecond) // widen the window for overlap
		cur.Add(-1)
	}

	var wg sync.WaitGroup
	errs := make([]error, logins)
	start := make(chan struct{})
	for i := range logins {
		wg.Go(func() {
			<-start
			_, _, _, errs[i] = f.s.Login(ctx, phones[i], password)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("login %d: %v", i, err)
		}
	}
	if n := calls.Load(); n != logins {
		t.Errorf("%d hashes in a slot, want one per login (%d)", n, logins)
	}
	if p := peak.Load(); p > hashers {
		t.Errorf("%d hashes at once, want at most %d", p, hashers)
	} else {
		t.Logf("peak concurrent hashes: %d of %d", p, hashers)
	}
	if n := f.s.slots.held(); n != 0 {
		t.Errorf("%d slots still held", n)
	}
}

// TestBusyDoesNotHash checks that the hashing itself, not just the wait,
// sits behind the slot: argon2id allocates its memory cost, so a request
// turned away as busy must allocate far less. Not parallel, to keep other
// tests' allocations out of the count.
func TestBusyDoesNotHash(t *testing.T) {
	const memKiB = 32 * 1024
	f := newFixture(t, Config{Params: Params{Memory: memKiB, Time: 1, Threads: 1}, Hashers: 1, HashWait: 10 * time.Millisecond}, nil)
	ctx := context.Background()
	f.register(t, phone, password)

	allocated := func(fn func()) uint64 {
		t.Helper()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	if n := allocated(func() { f.login(t, phone, password) }); n < memKiB*1024 {
		t.Fatalf("a login allocated %d bytes, less than the %d KiB memory cost: cannot tell hashing by allocation", n, memKiB)
	}

	f.hold(t)
	defer f.s.slots.release()
	n := allocated(func() {
		_, _, _, err := f.s.Login(ctx, phone, password)
		wantCode(t, err, seckill.EBusy)
		_, _, _, err = f.s.Login(ctx, "13900000000", password)
		wantCode(t, err, seckill.EBusy)
		_, err = f.s.Register(ctx, "13700000000", password, "")
		wantCode(t, err, seckill.EBusy)
	})
	if n > memKiB*1024/4 {
		t.Errorf("busy requests allocated %d bytes: they hashed without a slot", n)
	}
}

func TestCheckPasswordMemoryBound(t *testing.T) {
	if _, err := CheckPassword("x", "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"); err == nil {
		t.Fatal("a 4 TiB memory cost was accepted")
	}
}

// TestSignedTokens: with a token key, every session token carries a tag
// that SignedToken checks without a lookup; one altered, made under
// another key or without a key, or of another length, is not signed. A
// key shorter than 16 bytes is refused.
func TestSignedTokens(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	key := []byte("0123456789abcdef")
	s, err := New(db, db, Config{Params: Params{Memory: 64, Time: 1, Threads: 1}, TokenKey: key})
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(db, db, Config{Params: Params{Memory: 64, Time: 1, Threads: 1}, TokenKey: []byte("fedcba9876543210")})
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := New(db, db, Config{Params: Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	u := &seckill.User{ID: 1, Role: seckill.RoleBuyer}
	open := func(s *Service) string {
		tok, _, err := s.OpenSession(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := open(s)
	if !s.SignedToken(tok) {
		t.Fatalf("a token the service issued is not signed: %q", tok)
	}
	if sess, err := s.Authenticate(ctx, tok); err != nil || sess.UserID != 1 {
		t.Fatalf("a signed token's session: %+v, %v", sess, err)
	}
	for name, bad := range map[string]string{
		"another key's":      open(other),
		"issued without key": open(unsigned),
		"altered":            tok[:10] + string(tok[10]^1) + tok[11:],
		"truncated":          tok[:len(tok)-1],
		"longer":             tok + "A",
		"not base64":         strings.Repeat("!", len(tok)),
		"empty":              "",
	} {
		if s.SignedToken(bad) {
			t.Errorf("%s token %q is taken for signed", name, bad)
		}
	}
	if unsigned.SignedToken(tok) {
		t.Error("a service without a key takes a token for signed")
	}
	// A token signed under a key since changed is still a session.
	if sess, err := other.Authenticate(ctx, tok); err != nil || sess.UserID != 1 {
		t.Errorf("a token under another key: %+v, %v; want its session", sess, err)
	}
	if _, err := New(db, db, Config{TokenKey: []byte("short")}); err == nil {
		t.Error("a 5-byte token key accepted")
	}
}
