package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
)

// The local answers of admission (the sold-out flag, the buyers learned
// from the gate's Duplicate) trust themselves for a short time
// (soldOutFor, gateDupFor). That time must be measured on this process's
// own clock: SaleTime follows the shared clock (the database's), which
// may step (NTP on the database host) and then moves SaleTime back at
// the next reading. A flag stamped before such a step must not outlive
// its bound by the size of the step.

// localClockEngines returns two engines on v's backends (a recovered one,
// and a second one on the same gate) whose own clock is own and whose
// shared clock is shared, and a sale open from an hour ago for two hours.
func localClockEngines(t *testing.T, v *env, stock int64) (a, b *Engine, own *fakeClock, shared *sharedClock, s *seckill.Sale) {
	t.Helper()
	shared = &sharedClock{}
	own = newFakeClock(time.Now())
	bk := v.backends()
	bk.Clock = shared
	s = v.sale(stock, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	a = v.recovered(Config{Now: own.Now}, &bk)
	b = v.engine(Config{Now: own.Now}, &bk)
	b.ready.Store(true) // the gate is loaded already (a Recover would reload the in-process one)
	return a, b, own, shared, s
}

// TestSoldOutFlagBoundedAcrossSharedClockStep: instance A saw the sale
// sold out; the shared clock steps back a minute; a unit comes back on
// instance B. Once soldOutFor has passed on A's clock, a buyer on A gets
// the unit, rather than "sold out" for another minute (I4: the crowd only
// reaches A).
func TestSoldOutFlagBoundedAcrossSharedClockStep(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	a, b, own, shared, s := localClockEngines(t, v, 1)
	u := v.users(2)
	if _, err := a.Purchase(ctx, u[0], s.ID, path(t, a, u[0], s.ID)); err != nil {
		t.Fatal(err)
	}
	drain(t, a)
	_, err := a.Purchase(ctx, u[1], s.ID, path(t, a, u[1], s.ID))
	wantCode(t, err, seckill.ESoldOut)

	shared.off.Store(int64(-time.Minute))       // the database host's clock steps back
	if _, err := a.sharedNow(ctx); err != nil { // A's next sweep reads it
		t.Fatal(err)
	}
	o := v.orderOf(s.ID, u[0])
	if _, err := b.Cancel(ctx, u[0], o.ID); err != nil { // the unit returns on B
		t.Fatal(err)
	}
	if left := v.gateLeft(s.ID); left != 1 {
		t.Fatalf("gate left %d after the cancel, want 1", left)
	}
	own.set(own.Now().Add(soldOutFor + time.Second))
	if _, err := a.Purchase(ctx, u[1], s.ID, path(t, a, u[1], s.ID)); err != nil {
		t.Fatalf("the returned unit, %v after A's sold-out flag: %v", soldOutFor+time.Second, err)
	}
	drain(t, a)
	v.checkAtRest(s.ID)
}

// TestGateDuplicateBoundedAcrossSharedClockStep: A learned from the gate's
// Duplicate that a buyer holds a unit (their reservation pending on
// another instance); the shared clock steps back a minute; the reservation
// is released elsewhere (the reconciler). Once gateDupFor has passed on
// A's clock, the buyer's press on A reaches the gate again.
func TestGateDuplicateBoundedAcrossSharedClockStep(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	a, _, own, shared, s := localClockEngines(t, v, 2)
	u := v.users(1)
	const ticket = "elsewhere"
	if r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: s.ID, UserID: u[0], Ticket: ticket, At: time.Now()}); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve elsewhere: %v, %v", r, err)
	}
	_, err := a.Purchase(ctx, u[0], s.ID, path(t, a, u[0], s.ID))
	wantCode(t, err, seckill.EDuplicate)

	shared.off.Store(int64(-time.Minute))
	if _, err := a.sharedNow(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.gate.Release(ctx, s.ID, u[0], ticket); err != nil { // another instance's reconciler
		t.Fatal(err)
	}
	own.set(own.Now().Add(gateDupFor + time.Second))
	if _, err := a.Purchase(ctx, u[0], s.ID, path(t, a, u[0], s.ID)); err != nil {
		t.Fatalf("a released buyer, %v after A learned the Duplicate: %v", gateDupFor+time.Second, err)
	}
	drain(t, a)
	v.checkAtRest(s.ID)
}
