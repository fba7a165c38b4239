package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// TestSaleOpensOnSharedClock: instances whose own clocks are 30 s off
// (design.md: instance clocks may disagree by seconds or minutes) open and
// close a sale by the shared clock (the database's), not their own: the
// one ahead issues no path and admits no purchase before the start, the one
// behind admits once the sale started, both tell clients the shared time,
// and a stop from the one ahead ends the sale now, not 30 s from now.
// Before, each used its own clock: a bot that found the instance ahead
// bought 30 s before everyone else.
func TestSaleOpensOnSharedClock(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	u := v.users(2)
	soon := v.sale(1, time.Now().Add(10*time.Second), time.Now().Add(time.Hour))
	began := v.sale(1, time.Now().Add(-10*time.Second), time.Now().Add(time.Hour))
	bk := v.backends()
	bk.Clock = &sharedClock{} // the wall clock
	ahead := v.recovered(Config{Now: func() time.Time { return time.Now().Add(30 * time.Second) }}, &bk)
	behind := v.recovered(Config{Now: func() time.Time { return time.Now().Add(-30 * time.Second) }}, &bk)

	for name, e := range map[string]*Engine{"ahead": ahead, "behind": behind} {
		if d := time.Until(e.SaleTime()); d < -time.Second || d > time.Second {
			t.Errorf("%s: SaleTime is %v off the shared clock; want within a second", name, d)
		}
	}
	_, _, err := ahead.IssuePath(ctx, u[0], soon.ID, "", "")
	wantCode(t, err, seckill.ENotStarted)
	if _, status := ahead.SaleView(ctx, soon); status != "upcoming" {
		t.Errorf("the instance ahead calls a sale starting in 10 s %q, want upcoming", status)
	}
	if _, err := behind.Purchase(ctx, u[1], began.ID, path(t, behind, u[1], began.ID)); err != nil {
		t.Fatalf("the instance behind, in a sale that began 10 s ago: %v; want admitted", err)
	}
	stopped, err := ahead.StopSale(ctx, soon.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(stopped.EndsAt); d > time.Second {
		t.Errorf("a stop from the instance ahead ends the sale %v from now; want now", d)
	}
}

// TestCaptchaOnInstanceAhead: an instance whose clock runs five minutes
// ahead (more than a captcha's life) issues captchas its store, which
// expires them by that instance's clock as Redis's store does, keeps and
// takes: their expiry is on the instance's clock, not the shared one the
// sale opens by.
func TestCaptchaOnInstanceAhead(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := &seckill.Sale{Name: "phone", PriceCents: 100, Stock: 1, RequireCaptcha: true,
		StartsAt: time.Now().Add(-time.Minute).UTC(), EndsAt: time.Now().Add(time.Hour).UTC()}
	if err := v.db.CreateSale(ctx, s); err != nil {
		t.Fatal(err)
	}
	user := v.users(1)[0]
	ahead := func() time.Time { return time.Now().Add(5 * time.Minute) }
	b := v.backends()
	b.CaptchaMaker, b.Clock, b.Captchas = fixedMaker{}, &sharedClock{}, inmem.NewCaptchaStoreClock(ahead)
	e := v.recovered(Config{Now: ahead}, &b)
	id, _, _, err := e.Captcha(ctx, user, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.IssuePath(ctx, user, s.ID, id, "42"); err != nil {
		t.Fatalf("path for a fresh captcha's answer on an instance 5 min ahead: %v", err)
	}
}
