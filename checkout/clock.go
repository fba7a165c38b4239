package checkout

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The clocks an engine reads. Its own (Config.Now) may be seconds or
// minutes off the other instances'; times that several instances compare
// (sale windows, pay deadlines, the sweeper's "past its deadline") are on
// the shared clock, the database's (Backends.Clock). Reading that costs a
// round trip, so the engine reads it where it needs it exactly (sweeps,
// pay, cancel) and, from those readings, keeps how far the shared clock is
// from its own (the skew): SaleTime, on the purchase path, is its own
// clock plus the skew, one atomic load.
//
// A reading is the shared time t and the engine's own clock just before
// (b) and after (a) the read. t was read somewhere in between, so the
// skew is t − (b + rtt/2), give or take rtt/2 (rtt = a − b, on the
// monotonic clock). The engine keeps the last skewReadings readings and
// uses the skew of the one with the smallest rtt: a slow read (a busy
// database, a GC pause) tells little and moves nothing. A reading whose
// skew is further from that one's than both their uncertainties (rtt/2
// each) plus skewMargin cannot be true of the same two clocks: one of them
// stepped (NTP, an operator, a VM restored), and the older readings
// describe clocks that are gone. They are dropped and the new reading is
// taken at once, however slow.

// skewReadings is how many readings of the shared clock are kept.
const skewReadings = 8

// skewMargin is added to two readings' uncertainties before they count as
// contradicting each other: the shared clock is read in whole
// milliseconds (sqldb.DB.Now), truncated.
const skewMargin = 5 * time.Millisecond

// skewReading is one reading of the shared clock: the skew it found and
// the round trip it took.
type skewReading struct {
	skew, rtt time.Duration
}

// skewEstimate keeps the last readings; the engine's clockSkew holds the
// best one's skew.
type skewEstimate struct {
	mu   sync.Mutex
	last []skewReading // oldest first, at most skewReadings
}

// add takes in a reading and stores the skew to use from now on in to,
// under the lock: two readings taken together store in the order they
// were added, so the older one's (from before a clock step, say) cannot
// be the one left.
func (s *skewEstimate) add(r skewReading, to *atomic.Int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if best, ok := s.best(); ok {
		d := r.skew - best.skew
		if d < 0 {
			d = -d
		}
		if d > r.rtt/2+best.rtt/2+skewMargin {
			s.last = s.last[:0] // a clock stepped: the older readings are of another clock
		}
	}
	if len(s.last) == skewReadings {
		s.last = append(s.last[:0], s.last[1:]...)
	}
	s.last = append(s.last, r)
	best, _ := s.best()
	to.Store(int64(best.skew))
}

// best is the kept reading with the smallest round trip (the latest of
// equals). Called with mu held.
func (s *skewEstimate) best() (skewReading, bool) {
	if len(s.last) == 0 {
		return skewReading{}, false
	}
	b := s.last[0]
	for _, r := range s.last[1:] {
		if r.rtt <= b.rtt {
			b = r
		}
	}
	return b, true
}

// sharedNow is the time on the clock every instance compares deadlines
// on (Backends.Clock), or the engine's clock without one. Each reading
// also refines the skew SaleTime and payBy add to the engine's clock.
func (e *Engine) sharedNow(ctx context.Context) (time.Time, error) {
	if e.b.Clock == nil {
		return e.now(), nil
	}
	before := e.now()
	t, err := e.b.Clock.Now(ctx)
	if err != nil {
		return t, err
	}
	after := e.now()
	// On the monotonic clock when the engine's clock carries one (time.Now
	// does): a step of the wall clock during the read does not count.
	rtt := max(after.Sub(before), 0)
	e.skew.add(skewReading{skew: t.Sub(before.Add(rtt / 2)), rtt: rtt}, &e.clockSkew)
	return t, nil
}

// SaleTime is the time sales open and close by, issue captchas and paths
// by, and tell clients as server_time: this instance's clock corrected by
// the skew its readings of the shared clock (the database's) found, at
// start-up (Recover) and at every sweep (sharedNow). Instances whose own
// clocks disagree by seconds or minutes so open a sale at the same moment,
// and agree on path windows; the instance's own clock where the store has
// no shared clock. One atomic load: it is on the purchase path.
func (e *Engine) SaleTime() time.Time {
	return e.now().Add(e.ClockSkew())
}

// ClockSkew is how far the shared clock is ahead of this engine's own
// clock (Config.Now), as its readings found it: add it to a time read on
// the engine's clock to compare it with another instance's. Zero before
// the first reading, and without a shared clock.
func (e *Engine) ClockSkew() time.Duration {
	return time.Duration(e.clockSkew.Load())
}
