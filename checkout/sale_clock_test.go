package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
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
