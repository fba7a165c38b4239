package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// TestCaptchaLeadTime checks that captchas are issued only from CaptchaLead
// before the start until the end, by the engine's clock: a bot cannot
// stockpile them minutes ahead.
func TestCaptchaLeadTime(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	start := base
	s := v.sale(10, start, start.Add(time.Hour))
	user := v.users(1)[0]

	tests := []struct {
		lead time.Duration // Config.CaptchaLead; 0 is the default, 30s
		at   time.Duration // after the start
		code string
	}{
		{0, -time.Hour, seckill.ENotStarted},
		{0, -30*time.Second - time.Nanosecond, seckill.ENotStarted},
		{0, -30 * time.Second, ""},
		{0, -time.Second, ""},
		{0, 0, ""},
		{0, time.Hour - time.Nanosecond, ""},
		{0, time.Hour, seckill.EEnded},
		{10 * time.Second, -11 * time.Second, seckill.ENotStarted},
		{10 * time.Second, -10 * time.Second, ""},
	}
	for _, tt := range tests {
		clock := newFakeClock(start.Add(tt.at))
		e := v.engine(Config{CaptchaLead: tt.lead, Now: clock.Now}, nil)
		id, png, exp, err := e.Captcha(ctx, user, s.ID)
		if got := seckill.ErrorCode(err); got != tt.code {
			t.Errorf("lead %v, at start%+v: code %q (%v), want %q", tt.lead, tt.at, got, err, tt.code)
			continue
		}
		if tt.code != "" {
			continue
		}
		if id == "" || len(png) == 0 || !exp.Equal(start.Add(tt.at).Add(2*time.Minute)) {
			t.Errorf("lead %v, at start%+v: captcha %q, %d bytes, expires %v", tt.lead, tt.at, id, len(png), exp)
		}
	}
}

// TestCaptchaCap checks that one user gets at most the limiter's burst of
// captchas for one sale, and that the cap is per user and per sale.
func TestCaptchaCap(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s1, s2 := v.openSale(10), v.openSale(10)
	users := v.users(2)
	const capN = 20
	b := v.backends()
	b.CaptchaLimit = inmem.NewLimiter(capN/3600.0, capN) // refills one per 3 minutes
	e := v.engine(Config{}, &b)

	for i := range capN {
		if _, _, _, err := e.Captcha(ctx, users[0], s1.ID); err != nil {
			t.Fatalf("captcha %d of %d: %v", i+1, capN, err)
		}
	}
	_, _, _, err := e.Captcha(ctx, users[0], s1.ID)
	wantCode(t, err, seckill.ERateLimited)
	if _, _, _, err := e.Captcha(ctx, users[1], s1.ID); err != nil {
		t.Errorf("another user's captcha: %v", err)
	}
	if _, _, _, err := e.Captcha(ctx, users[0], s2.ID); err != nil {
		t.Errorf("the same user's captcha for another sale: %v", err)
	}
}
