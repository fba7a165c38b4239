package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
)

// pathTTL is the window length of the path tests; base is aligned to it.
const pathTTL = time.Minute

var base = time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)

func TestPathWindows(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	clock := newFakeClock(base)
	s := v.sale(1000, base.Add(-time.Hour), base.Add(time.Hour))
	e := v.recovered(Config{PathTTL: pathTTL, Now: clock.Now}, nil)

	tests := []struct {
		name    string
		issue   time.Duration // after base
		expires time.Duration // after base
	}{
		{"window start", 0, 2 * pathTTL},
		{"mid window", 10 * time.Second, 2 * pathTTL},
		{"last instant of a window", pathTTL - 1, 2 * pathTTL},
		{"next window", pathTTL, 3 * pathTTL},
	}
	users := v.users(len(tests))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := users[i]
			clock.set(base.Add(tt.issue))
			p, exp, err := e.IssuePath(ctx, user, s.ID, "", "")
			if err != nil {
				t.Fatal(err)
			}
			if want := base.Add(tt.expires); !exp.Equal(want) {
				t.Fatalf("expires_at %v, want %v", exp, want)
			}
			if exp.Location() != time.UTC {
				t.Errorf("expires_at in %v, want UTC", exp.Location())
			}
			// Stateless: asking again in the same window gives the same path.
			if p2, exp2, err := e.IssuePath(ctx, user, s.ID, "", ""); err != nil || p2 != p || !exp2.Equal(exp) {
				t.Fatalf("second issue in the same window: %q %v %v, want %q %v", p2, exp2, err, p, exp)
			}
			// A path of a later window is not accepted before it exists,
			// give or take the clock skew allowed between instances.
			skew := e.pathSkew()
			start := base.Add(tt.issue).Truncate(pathTTL)
			clock.set(start.Add(-skew - 1))
			_, err = e.Purchase(ctx, user, s.ID, p)
			wantCode(t, err, seckill.EBadPath)
			if !e.checkPath(user, s.ID, p, start.Add(-skew)) {
				t.Errorf("checkPath: want accepted from its window's start less the skew %v", skew)
			}

			// Accepted up to the last nanosecond before expires_at: the
			// first purchase is admitted, later ones get past the path
			// check and stop at the gate.
			clock.set(base.Add(tt.issue))
			if _, err := e.Purchase(ctx, user, s.ID, p); err != nil {
				t.Fatalf("purchase at issue time: %v", err)
			}
			clock.set(exp.Add(-1))
			_, err = e.Purchase(ctx, user, s.ID, p)
			wantCode(t, err, seckill.EDuplicate)

			for _, at := range []time.Time{exp.Add(skew), exp.Add(skew + 1), exp.Add(pathTTL)} {
				clock.set(at)
				_, err := e.Purchase(ctx, user, s.ID, p)
				wantCode(t, err, seckill.EBadPath)
			}
			// The same instants through checkPath, without the gate.
			if !e.checkPath(user, s.ID, p, exp.Add(skew-1)) || e.checkPath(user, s.ID, p, exp.Add(skew)) {
				t.Errorf("checkPath: want accepted up to expires_at+skew-1ns and refused at expires_at+skew (skew %v)", skew)
			}
		})
	}
	if got := v.pending(s.ID); got != int64(len(tests)) {
		t.Errorf("queued %d requests, want one per user: %d", got, len(tests))
	}
}

func TestPathBinding(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	clock := newFakeClock(base.Add(5 * time.Second))
	s1 := v.sale(100, base.Add(-time.Hour), base.Add(time.Hour))
	s2 := v.sale(100, base.Add(-time.Hour), base.Add(time.Hour))
	u := v.users(2)
	a, b := u[0], u[1]
	e1 := v.recovered(Config{PathTTL: pathTTL, Now: clock.Now}, nil)
	e2 := v.recovered(Config{PathTTL: pathTTL, Now: clock.Now, Secret: []byte("another secret of 32 bytes......")}, nil)

	pa1 := path(t, e1, a, s1.ID)
	pb1 := path(t, e1, b, s1.ID)
	pa2 := path(t, e1, a, s2.ID)
	pa1Other := path(t, e2, a, s1.ID)
	for name, other := range map[string]string{"user": pb1, "sale": pa2, "secret": pa1Other} {
		if other == pa1 {
			t.Errorf("path does not depend on the %s: %q", name, pa1)
		}
	}

	tests := []struct {
		name       string
		e          *Engine
		user, sale int64
		path       string
	}{
		{"another user's path", e1, b, s1.ID, pa1},
		{"another sale's path", e1, a, s2.ID, pa1},
		{"path of another secret", e2, a, s1.ID, pa1},
		{"empty path", e1, a, s1.ID, ""},
		{"garbage", e1, a, s1.ID, "not-a-path"},
		{"truncated", e1, a, s1.ID, pa1[:len(pa1)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := v.gateLeft(tt.sale)
			_, err := tt.e.Purchase(ctx, tt.user, tt.sale, tt.path)
			wantCode(t, err, seckill.EBadPath)
			if after := v.gateLeft(tt.sale); after != before {
				t.Errorf("a refused path moved the gate from %d to %d", before, after)
			}
		})
	}
	// Each path works where it belongs.
	for _, ok := range []struct {
		e          *Engine
		user, sale int64
		path       string
	}{{e1, a, s1.ID, pa1}, {e1, b, s1.ID, pb1}, {e1, a, s2.ID, pa2}} {
		if _, err := ok.e.Purchase(ctx, ok.user, ok.sale, ok.path); err != nil {
			t.Errorf("purchase of user %d in sale %d with its own path: %v", ok.user, ok.sale, err)
		}
	}
	// Another instance with the same secret accepts the path (stateless).
	e3 := v.engine(Config{PathTTL: pathTTL, Now: clock.Now}, nil)
	if !e3.checkPath(a, s1.ID, pa1, clock.Now()) {
		t.Error("an engine with the same secret refuses the path")
	}
	if e2.checkPath(a, s1.ID, pa1, clock.Now()) {
		t.Error("an engine with another secret accepts the path")
	}
}

func TestNewSecret(t *testing.T) {
	v := newEnv(t)
	tests := []struct {
		name   string
		secret []byte
		ok     bool
	}{
		{"none", nil, false},
		{"empty", []byte{}, false},
		{"15 bytes", []byte("0123456789abcde"), false},
		{"16 bytes", []byte("0123456789abcdef"), true},
		{"32 bytes", testSecret, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(Config{Secret: tt.secret}, v.backends(), v.log)
			if tt.ok != (err == nil) {
				t.Fatalf("New with a %d-byte secret: err %v, want ok %v", len(tt.secret), err, tt.ok)
			}
			if e != nil {
				e.Close()
			}
		})
	}
}

// TestPathClockSkew: instances' clocks differ by a few seconds. A path that
// an instance ahead issues just after a window boundary is accepted by one
// behind, for which that window has not begun; one issued by an instance
// behind is accepted until its expires_at by one ahead. Paths further off
// are still refused.
func TestPathClockSkew(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	// The true time is 1 s before a window boundary; the issuer's clock is
	// 2 s ahead of it, the checker's 2 s behind.
	boundary := base.Add(pathTTL)
	ahead, behind := newFakeClock(boundary.Add(time.Second)), newFakeClock(boundary.Add(-3*time.Second))
	s := v.sale(100, base.Add(-time.Hour), base.Add(time.Hour))
	users := v.users(3)
	issuer := v.recovered(Config{PathTTL: pathTTL, Now: ahead.Now}, nil)
	checker := v.recovered(Config{PathTTL: pathTTL, Now: behind.Now}, nil)
	if skew := checker.pathSkew(); skew < 4*time.Second {
		t.Fatalf("skew allowed %v: the test needs at least 4 s", skew)
	}

	p := path(t, issuer, users[0], s.ID)
	if p != issuer.pathFor(users[0], s.ID, issuer.window(boundary)) {
		t.Fatal("the issuer did not issue the path of the window after the boundary")
	}
	if _, err := checker.Purchase(ctx, users[0], s.ID, p); err != nil {
		t.Fatalf("purchase with a fresh path on an instance 4 s behind: %v", err)
	}

	// The window after next, even that close to a boundary, is refused.
	next := issuer.pathFor(users[1], s.ID, issuer.window(boundary)+1)
	_, err := checker.Purchase(ctx, users[1], s.ID, next)
	wantCode(t, err, seckill.EBadPath)
	// So is the next window's path beyond the skew allowed.
	if checker.checkPath(users[0], s.ID, p, boundary.Add(-checker.pathSkew()-time.Nanosecond)) {
		t.Error("the next window's path accepted earlier than the skew allows")
	}

	// The other way: a path the instance behind issued in the window
	// before the boundary's previous one, at its expires_at by its clock
	// (2 windows later), is still accepted by an instance 4 s ahead.
	behind.set(base.Add(-pathTTL + time.Second))
	old, exp, err := checker.IssuePath(ctx, users[2], s.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ahead.set(exp.Add(4*time.Second - time.Nanosecond))
	if !issuer.checkPath(users[2], s.ID, old, ahead.Now()) {
		t.Error("a path not yet expired by its issuer's clock refused by an instance 4 s ahead")
	}
	ahead.set(exp.Add(issuer.pathSkew()))
	if issuer.checkPath(users[2], s.ID, old, ahead.Now()) {
		t.Error("a path accepted past its expires_at plus the skew allowed")
	}
}
