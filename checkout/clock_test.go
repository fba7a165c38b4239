package checkout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// stepClocks are an instance's own clock and the shared one on a common
// time line (the wall clock plus elapsed, which a slow reading moves on),
// each with an offset of its own that a test may step.
type stepClocks struct {
	elapsed atomic.Int64 // time the test made pass, in ns
	local   atomic.Int64 // the instance's clock's offset, ns
	shared  atomic.Int64 // the shared clock's offset, ns
	// slow, when set, is how long the next reading's answer takes to come
	// back after the shared clock was read.
	slow atomic.Int64
}

func (c *stepClocks) base() time.Time { return time.Now().Add(time.Duration(c.elapsed.Load())) }

// Local is the instance's clock (Config.Now).
func (c *stepClocks) Local() time.Time { return c.base().Add(time.Duration(c.local.Load())) }

// truth is the shared clock's time now, as no reading sees it.
func (c *stepClocks) truth() time.Time { return c.base().Add(time.Duration(c.shared.Load())) }

// Now reads the shared clock (Backends.Clock).
func (c *stepClocks) Now(context.Context) (time.Time, error) {
	t := c.truth()
	c.elapsed.Add(c.slow.Swap(0)) // the answer's way back
	return t, nil
}

// saleTimeOff is how far SaleTime is from the shared clock.
func saleTimeOff(e *Engine, c *stepClocks) time.Duration { return e.SaleTime().Sub(c.truth()) }

// TestSlowClockReadingKeepsSaleTime: a reading of the shared clock whose
// answer took 500 ms to come back does not move SaleTime: the skew is
// taken from the reading with the shortest round trip among the last
// ones, and the slow one agrees with it within its uncertainty. Before,
// each reading set the skew to the shared time minus the local time after
// the answer: the slow one moved SaleTime 500 ms late, opening a sale that
// much late on this instance.
func TestSlowClockReadingKeepsSaleTime(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	c := &stepClocks{}
	c.local.Store(int64(-3 * time.Minute))
	b := v.backends()
	b.Clock = c
	e := v.recovered(Config{Now: c.Local}, &b)
	for range 3 {
		if _, err := e.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := saleTimeOff(e, c); d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Fatalf("SaleTime %v off the shared clock after fast readings; want within 5 ms", d)
	}
	c.slow.Store(int64(500 * time.Millisecond))
	if _, err := e.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if d := saleTimeOff(e, c); d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Errorf("SaleTime %v off the shared clock after a reading that took 500 ms; want within 5 ms", d)
	}
	if d := e.ClockSkew() - 3*time.Minute; d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Errorf("ClockSkew %v, want 3m0s within 5 ms", e.ClockSkew())
	}
}

// TestClockStepTakenInAtNextReading: a step of the shared clock, or of
// the instance's own, by 10 s contradicts the readings kept (beyond their
// round trips): the next reading after it is taken at once, however good
// the older ones were, and SaleTime is on the shared clock again. The
// first reading after the step is slow too, so that it is no better than
// the ones it replaces.
func TestClockStepTakenInAtNextReading(t *testing.T) {
	for _, tc := range []struct {
		name          string
		shared, local time.Duration
	}{
		{"shared ahead", 10 * time.Second, 0},
		{"shared back", -10 * time.Second, 0},
		{"local ahead", 0, 10 * time.Second},
		{"local back", 0, -10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t)
			ctx := context.Background()
			c := &stepClocks{}
			b := v.backends()
			b.Clock = c
			e := v.recovered(Config{Now: c.Local}, &b)
			for range 3 {
				if _, err := e.Sweep(ctx); err != nil {
					t.Fatal(err)
				}
			}
			c.shared.Add(int64(tc.shared))
			c.local.Add(int64(tc.local))
			c.slow.Store(int64(40 * time.Millisecond))
			if _, err := e.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			// Within the slow reading's uncertainty (20 ms), not 10 s.
			if d := saleTimeOff(e, c); d < -25*time.Millisecond || d > 25*time.Millisecond {
				t.Fatalf("SaleTime %v off the shared clock after the step; want within 25 ms", d)
			}
			// The fast readings after it are the ones kept.
			for range 2 {
				if _, err := e.Sweep(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if d := saleTimeOff(e, c); d < -5*time.Millisecond || d > 5*time.Millisecond {
				t.Errorf("SaleTime %v off the shared clock after fast readings past the step; want within 5 ms", d)
			}
		})
	}
}
