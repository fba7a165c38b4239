package account

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// wantWait checks that err is a back-off refusal asking to wait want.
func wantWait(t *testing.T, err error, want time.Duration) {
	t.Helper()
	var we *WaitError
	if !errors.As(err, &we) || seckill.ErrorCode(err) != seckill.ERateLimited {
		t.Fatalf("error %v (code %q), want a WaitError of %v", err, seckill.ErrorCode(err), want)
	}
	if we.Wait != want {
		t.Fatalf("wait %v, want %v", we.Wait, want)
	}
}

// padSpace is a user store that compares phones as MySQL and MariaDB do
// in the users table (utf8mb4_bin is a PAD SPACE collation: trailing
// spaces are ignored, so '13800000001 ' finds '13800000001').
type padSpace struct{ seckill.UserStore }

func (p padSpace) UserByPhone(ctx context.Context, phone string) (*seckill.User, error) {
	return p.UserStore.UserByPhone(ctx, strings.TrimRight(phone, " "))
}

// TestLoginMalformedPhoneFindsNoAccount: a phone that is not a valid
// phone number is kept out of the per-phone back-off and budget (no
// account has it), so it must not reach an account either. It used to be
// looked up all the same, and on MySQL "13800000001 " is the account of
// 13800000001: an attacker guessed that account's password (the admin's)
// with trailing spaces, past its back-off and its budget, limited only
// per address.
func TestLoginMalformedPhoneFindsNoAccount(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	f.s.cfg.Phones = inmem.NewLoginGuardClock(PhoneBackoff, f.clock.Now)
	ctx := context.Background()
	f.register(t, phone, password)
	f.s.users = padSpace{f.s.users}
	for range PhoneBackoff.Free {
		_, _, _, err := f.s.LoginFrom(ctx, phone, "wrong password", "10.0.0.66")
		wantCode(t, err, seckill.EBadCredentials)
	}
	_, _, _, err := f.s.LoginFrom(ctx, phone, "wrong password", "10.0.0.66")
	wantWait(t, err, time.Second)
	for i, p := range []string{phone + " ", phone + "   "} {
		_, _, _, err := f.s.LoginFrom(ctx, p, password, fmt.Sprintf("10.0.1.%d", i))
		wantCode(t, err, seckill.EBadCredentials)
	}
	// The account itself is still behind its back-off.
	_, _, _, err = f.s.LoginFrom(ctx, phone, password, "10.0.0.7")
	wantWait(t, err, time.Second)
}

// TestLoginBackoff checks the back-off of one phone: free tries, then
// refusals without hashing whose wait doubles, and a clean slate after the
// right password.
func TestLoginBackoff(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	f.s.cfg.Phones = inmem.NewLoginGuardClock(PhoneBackoff, f.clock.Now)
	ctx := context.Background()
	f.register(t, phone, password)
	var hashes atomic.Int64
	f.s.inSlot = func(context.Context) { hashes.Add(1) }
	guess := func() error {
		t.Helper()
		_, _, _, err := f.s.LoginFrom(ctx, phone, "wrong password", "10.0.0.66")
		return err
	}

	for i := range PhoneBackoff.Free {
		wantCode(t, guess(), seckill.EBadCredentials)
		if n := hashes.Load(); n != int64(i+1) {
			t.Fatalf("%d hashes after %d guesses", n, i+1)
		}
	}
	for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		before := hashes.Load()
		wantWait(t, guess(), wait)
		f.clock.Advance(wait / 2)
		wantWait(t, guess(), wait/2) // refused attempts do not count
		if n := hashes.Load(); n != before {
			t.Fatalf("refused guesses hashed %d times", n-before)
		}
		f.clock.Advance(wait / 2)
		wantCode(t, guess(), seckill.EBadCredentials)
	}
	// The right password during the back-off is refused too: nobody may
	// tell which password would have been right.
	_, _, _, err := f.s.LoginFrom(ctx, phone, password, "10.0.0.7")
	wantWait(t, err, 16*time.Second)

	f.clock.Advance(16 * time.Second)
	if _, _, _, err := f.s.LoginFrom(ctx, phone, password, "10.0.0.7"); err != nil {
		t.Fatalf("login after the wait: %v", err)
	}
	// Success resets: the free tries are back.
	for range PhoneBackoff.Free {
		wantCode(t, guess(), seckill.EBadCredentials)
	}
	wantWait(t, guess(), time.Second)
}

// TestLoginUnderAttack runs a guessing attack from one address, against
// one account and across many, while a real user logs in from another: the
// attack gets no more hashes than the address's free budget, every other
// guess is refused before hashing, and the real user's login goes through.
func TestLoginUnderAttack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Hashers: 1, HashWait: time.Minute}, nil)
	f.s.cfg.Phones = inmem.NewLoginGuard(PhoneBackoff)
	f.s.cfg.IPs = inmem.NewLoginGuard(IPBackoff)
	ctx := context.Background()
	victim, user := "13800000001", "13800000002"
	f.register(t, victim, password)
	f.register(t, user, password)

	type who struct{}
	var attackHashes, userHashes atomic.Int64
	f.s.inSlot = func(ctx context.Context) {
		if ctx.Value(who{}) == "user" {
			userHashes.Add(1)
		} else {
			attackHashes.Add(1)
		}
	}

	const guesses = 400
	var refused, wrong atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range guesses {
		target := victim
		if i%2 == 1 {
			target = fmt.Sprintf("1390000%04d", i) // spraying other phones
		}
		wg.Go(func() {
			<-start
			_, _, _, err := f.s.LoginFrom(ctx, target, fmt.Sprintf("guess %d", i), "10.0.0.66")
			switch seckill.ErrorCode(err) {
			case seckill.ERateLimited:
				refused.Add(1)
			case seckill.EBadCredentials:
				wrong.Add(1)
			default:
				t.Errorf("guess %d: %v", i, err)
			}
		})
	}
	var userErr error
	wg.Go(func() {
		<-start
		_, _, _, userErr = f.s.LoginFrom(context.WithValue(ctx, who{}, "user"), user, password, "10.0.0.7")
	})
	close(start)
	wg.Wait()

	if userErr != nil {
		t.Errorf("the real user's login: %v", userErr)
	}
	if n := userHashes.Load(); n != 1 {
		t.Errorf("the real user's login hashed %d times", n)
	}
	if n := attackHashes.Load(); n != wrong.Load() || n > int64(IPBackoff.Free) {
		t.Errorf("the attack got %d hashes (%d wrong answers), want at most the address's %d free", n, wrong.Load(), IPBackoff.Free)
	}
	if refused.Load()+wrong.Load() != guesses {
		t.Errorf("%d refused + %d wrong of %d guesses", refused.Load(), wrong.Load(), guesses)
	}
	// The victim's own login from elsewhere is refused while its phone is
	// in back-off (at most PhoneBackoff.Free guesses reached it), without
	// a hash.
	before := attackHashes.Load() + userHashes.Load()
	_, _, _, err := f.s.LoginFrom(ctx, victim, password, "10.0.0.8")
	if seckill.ErrorCode(err) == seckill.ERateLimited && attackHashes.Load()+userHashes.Load() != before {
		t.Error("a refused login hashed")
	}
	t.Logf("attack: %d hashed, %d refused; victim's own login: %v", wrong.Load(), refused.Load(), err)
}

// TestHashQueueServesCleanFirst checks the order of the hashing queue: a
// login of an account with no failures on record goes before logins of
// one that has some, whatever their arrival.
func TestHashQueueServesCleanFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Hashers: 1, HashWait: time.Minute}, nil)
	f.s.cfg.Phones = inmem.NewLoginGuard(PhoneBackoff)
	ctx := context.Background()
	attacked, clean := "13800000001", "13800000002"
	f.register(t, attacked, password)
	f.register(t, clean, password)
	_, _, _, err := f.s.LoginFrom(ctx, attacked, "wrong password", "")
	wantCode(t, err, seckill.EBadCredentials)

	type who struct{}
	var mu sync.Mutex
	var order []string
	f.s.inSlot = func(ctx context.Context) {
		mu.Lock()
		order = append(order, ctx.Value(who{}).(string))
		mu.Unlock()
	}
	waitFor := func(rank, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for f.s.slots.waiting(rank) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d waiting at rank %d, want %d", f.s.slots.waiting(rank), rank, n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	f.hold(t)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			_, _, _, _ = f.s.LoginFrom(context.WithValue(ctx, who{}, fmt.Sprint("guess ", i)), attacked, "wrong password", "")
		})
	}
	waitFor(rankSuspect, 3)
	wg.Go(func() {
		if _, _, _, err := f.s.LoginFrom(context.WithValue(ctx, who{}, "clean"), clean, password, ""); err != nil {
			t.Errorf("clean login: %v", err)
		}
	})
	waitFor(rankClean, 1)
	f.s.slots.release()
	wg.Wait()
	if len(order) != 4 || order[0] != "clean" {
		t.Fatalf("hashing order %v, want the clean login first", order)
	}
}

// TestLoginPhoneBudget: logins of one phone, right password or not, from
// as many addresses as the attacker likes, hash at most
// PhoneLoginBucket's burst at once, then one per refill; the rest are
// refused with a WaitError before hashing. The back-off of failed logins
// never stopped a right password (it clears the phone's record), so an
// attacker who knows one account's password had it hashed as fast as the
// hashing slots went. Logins refused before the hash for another reason
// (the address's or the phone's back-off) spend none of the budget.
func TestLoginPhoneBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	f.s.cfg.Phones = inmem.NewLoginGuardClock(PhoneBackoff, f.clock.Now)
	f.s.cfg.IPs = refusingGuardFor{ip: "10.9.9.9"}
	f.s.cfg.PhoneLogins = inmem.NewLimiterClock(PhoneLoginBucket.PerSecond, PhoneLoginBucket.Burst, f.clock.Now)
	ctx := context.Background()
	f.register(t, phone, password)
	var hashes atomic.Int64
	f.s.inSlot = func(context.Context) { hashes.Add(1) }
	login := func(i int, pw, ip string) error {
		t.Helper()
		_, _, _, err := f.s.LoginFrom(ctx, phone, pw, ip)
		return err
	}
	// The address's back-off refuses before the phone's budget is asked.
	for i := range 20 {
		wantWait(t, login(i, password, "10.9.9.9"), time.Minute)
	}
	// Five wrong passwords hash (and spend five tokens); then the phone's
	// back-off refuses before the budget is asked.
	for i := range PhoneBackoff.Free {
		wantCode(t, login(i, "wrong password", fmt.Sprintf("10.0.1.%d", i)), seckill.EBadCredentials)
	}
	for i := range 20 {
		wantWait(t, login(i, password, fmt.Sprintf("10.0.2.%d", i)), time.Second)
	}
	f.clock.Advance(time.Second)
	// The rest of the budget: right passwords from new addresses.
	for i := range PhoneLoginBucket.Burst - PhoneBackoff.Free {
		if err := login(i, password, fmt.Sprintf("10.0.3.%d", i)); err != nil {
			t.Fatalf("login %d within the budget: %v", i+1, err)
		}
	}
	if n := hashes.Load(); n != int64(PhoneLoginBucket.Burst) {
		t.Fatalf("%d hashes, want %d", n, PhoneLoginBucket.Burst)
	}
	refill := time.Duration(float64(time.Second) / PhoneLoginBucket.PerSecond)
	for i := range 50 {
		wantWait(t, login(i, password, fmt.Sprintf("10.0.4.%d", i)), refill)
	}
	if n := hashes.Load(); n != int64(PhoneLoginBucket.Burst) {
		t.Fatalf("refused logins hashed %d times", n-int64(PhoneLoginBucket.Burst))
	}
	// Refused by the budget, an attempt is taken back from the back-off:
	// after a refill the right password logs in.
	f.clock.Advance(refill)
	if err := login(0, password, "10.0.5.1"); err != nil {
		t.Fatalf("login after a refill: %v", err)
	}
	wantWait(t, login(1, password, "10.0.5.2"), refill)
	// Another phone has its own budget.
	f.register(t, "13800000001", password)
	if _, _, _, err := f.s.LoginFrom(ctx, "13800000001", password, "10.0.5.3"); err != nil {
		t.Fatalf("another phone: %v", err)
	}
}

// refusingGuardFor makes one key wait a minute and lets the others by.
type refusingGuardFor struct{ ip string }

func (g refusingGuardFor) Attempt(_ context.Context, key string) (int, time.Duration, error) {
	if key == g.ip {
		return 0, time.Minute, nil
	}
	return 0, 0, nil
}
func (refusingGuardFor) Succeeded(context.Context, string, bool) error { return nil }

// TestLoginPhoneBudgetNotSpentUnchecked: a login that never reaches the
// hash (it gave up waiting for a hashing slot, or its client went away)
// has its back-off attempt taken back, so it must not spend the phone's
// budget either. Otherwise a stranger drains a victim's budget without
// ever growing the victim's back-off (busy slots during a sale, or
// requests dropped while queued), one unchecked login per refill for as
// long as it likes, and the owner, right password in hand, is refused.
func TestLoginPhoneBudgetNotSpentUnchecked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Hashers: 1, HashWait: 10 * time.Millisecond}, nil)
	f.s.cfg.Phones = inmem.NewLoginGuardClock(PhoneBackoff, f.clock.Now)
	f.s.cfg.IPs = inmem.NewLoginGuardClock(IPBackoff, f.clock.Now)
	f.s.cfg.PhoneLogins = inmem.NewLimiterClock(PhoneLoginBucket.PerSecond, PhoneLoginBucket.Burst, f.clock.Now)
	ctx := context.Background()
	f.register(t, phone, password)

	f.hold(t) // the slots are busy (a login storm)
	for i := range 3 * PhoneLoginBucket.Burst {
		wantCode(t, func() error {
			_, _, _, err := f.s.LoginFrom(ctx, phone, "wrong password", fmt.Sprintf("10.0.6.%d", i))
			return err
		}(), seckill.EBusy)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for i := range PhoneLoginBucket.Burst {
		if _, _, _, err := f.s.LoginFrom(cancelled, phone, "wrong password", fmt.Sprintf("10.0.7.%d", i)); err == nil {
			t.Fatal("a cancelled login succeeded")
		}
	}
	f.s.slots.release()

	if _, _, _, err := f.s.LoginFrom(ctx, phone, password, "10.0.8.1"); err != nil {
		t.Fatalf("the owner's login after unchecked attempts by a stranger: %v", err)
	}
}

// TestLoginIPv6BlocksDoNotShareTheBackoff: failed logins from one /64 do
// not hold up a login from another /64 of the same /48. A back-off shared
// by a /48 (tried, found by review) let one abuser, one failed login every
// 10 s, keep every user of the block from logging in with the right
// password: a back-off forgets only after 10 quiet minutes. Per account,
// the phone's back-off and budget hold guesses from any number of
// addresses.
func TestLoginIPv6BlocksDoNotShareTheBackoff(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, nil)
	f.s.cfg.IPs = inmem.NewLoginGuard(IPBackoff)
	f.register(t, "13800000001", password)
	ctx := context.Background()
	abuser := "2001:db8:1:100::/64"
	for i := range IPBackoff.Free + 5 {
		_, _, _, _ = f.s.LoginFrom(ctx, fmt.Sprintf("139%08d", i), "wrong-password", abuser)
	}
	if _, _, _, err := f.s.LoginFrom(ctx, "13900999999", "wrong-password", abuser); seckill.ErrorCode(err) != seckill.ERateLimited {
		t.Fatalf("the abuser's /64 after %d failures: %v, want rate_limited", IPBackoff.Free+5, err)
	}
	for _, ip := range []string{"2001:db8:1:101::/64", "2001:db8:1:ff00::/64"} { // same /56, same /48
		if _, _, _, err := f.s.LoginFrom(ctx, "13800000001", password, ip); err != nil {
			t.Errorf("the right password from %s: %v", ip, err)
		}
	}
}
