package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
)

// stallGate runs after, once, when a Reserve has reserved and before it
// returns: the instance stalls there (a VM pause, SIGSTOP, a stop-the-world
// pause, a starved CPU), with the reservation made and its publish not yet
// begun.
type stallGate struct {
	seckill.StockGate
	after func()
}

func (g *stallGate) Reserve(ctx context.Context, r seckill.Reservation) (seckill.GateResult, error) {
	res, err := g.StockGate.Reserve(ctx, r)
	if err == nil && res == seckill.Reserved && g.after != nil {
		f := g.after
		g.after = nil
		f()
	}
	return res, err
}

// stallPair is a one-unit sale, two buyers, and two instances on the same
// SQL, gate and queue: e, whose gate is sg, and other.
func stallPair(t *testing.T, publishTimeout time.Duration) (v *env, s *seckill.Sale, u []int64, sg *stallGate, e, other *Engine) {
	v = newEnv(t)
	s = v.openSale(1)
	u = v.users(2)
	bk := v.backends()
	sg = &stallGate{StockGate: bk.Gate}
	bk.Gate = sg
	e = v.recovered(Config{PublishTimeout: publishTimeout}, &bk)
	other = v.recovered(Config{PublishTimeout: publishTimeout}, nil)
	return v, s, u, sg, e, other
}

// TestStallBetweenReserveAndPublish: an instance stalls between the gate's
// reservation and the publish for longer than the reconcile age. Another
// instance's reconciler finds the reservation old, neither queued nor in
// SQL, and releases it; the unit sells to someone else. The stalled
// purchase then goes on, publishes, and must not answer 202: the writer
// refuses its request (the ticket was released), so a 202 would never
// become an order (I3). Found by cmd/seckill TestStallAfterReserve
// (SIGSTOP of one of three instances for 8 s mid-crowd: 1–9 buyers
// answered 202 whose result ends failed). Answering 503 ("may still go
// through", the unit left to the writer or the reconciler) is right.
func TestStallBetweenReserveAndPublish(t *testing.T) {
	const publishTimeout = 200 * time.Millisecond
	v, s, u, sg, e, other := stallPair(t, publishTimeout)
	ctx := context.Background()
	sg.after = func() {
		time.Sleep(publishTimeout + 100*time.Millisecond)
		v.gateNow.advance(time.Minute)
		if n, err := reconcileTwice(ctx, other, 30*time.Second); err != nil || n != 1 {
			t.Errorf("the other instance's reconciler released %d, %v; want 1", n, err)
		}
		// The released unit sells to the second buyer.
		if _, err := other.Purchase(ctx, u[1], s.ID, path(t, other, u[1], s.ID)); err != nil {
			t.Errorf("second buyer: %v", err)
		}
	}
	ticket, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID))
	runWriter(t, e)
	if err == nil {
		// Answered 202: it must become the order carrying the ticket.
		r := waitResultNot(t, e, u[0], s.ID, seckill.ResultQueued)
		if r.Status != seckill.ResultSuccess {
			t.Errorf("I3: buyer %d was answered 202 (ticket %s) after stalling past the reconcile age, and ends %+v", u[0], ticket, r)
		}
	} else {
		wantCode(t, err, seckill.EBusy)
	}
	waitResult(t, other, u[1], s.ID, seckill.ResultSuccess)
	v.checkAtRest(s.ID)
}

// TestGateClockStepDuringPublish: the gate's clock steps forward (an NTP
// step on the Redis host) by more than the reconcile age while a purchase
// sits between its reservation and its acknowledgement. The reservation
// looks old; another instance's reconciler rounds, all within the
// purchase's publish timeout, must not release it: the purchase publishes
// in time, answers 202, and that 202 must become the order (I3). Before
// the two-sightings rule the first round released it and the 202 ended
// failed.
func TestGateClockStepDuringPublish(t *testing.T) {
	v, s, u, sg, e, other := stallPair(t, 2*time.Second)
	ctx := context.Background()
	sg.after = func() {
		v.gateNow.advance(time.Minute)
		for range 3 {
			if n, err := other.Reconcile(ctx, 30*time.Second); err != nil || n != 0 {
				t.Errorf("a reconciler round within the publish timeout released %d, %v; want 0", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if _, err := e.Purchase(ctx, u[0], s.ID, path(t, e, u[0], s.ID)); err != nil {
		t.Fatalf("purchase: %v; want 202 (the publish was acknowledged in time)", err)
	}
	// Rounds after the publish: the request is queued, left alone.
	if n, err := reconcileTwice(ctx, other, 30*time.Second); err != nil || n != 0 {
		t.Errorf("after the publish the reconciler released %d, %v; want 0", n, err)
	}
	runWriter(t, e)
	if r := waitResultNot(t, e, u[0], s.ID, seckill.ResultQueued); r.Status != seckill.ResultSuccess {
		t.Errorf("I3: buyer %d was answered 202 and ends %+v", u[0], r)
	}
	if _, err := other.Purchase(ctx, u[1], s.ID, path(t, other, u[1], s.ID)); seckill.ErrorCode(err) != seckill.ESoldOut {
		t.Errorf("second buyer: %v; want sold out (the unit is the first buyer's)", err)
	}
	v.checkAtRest(s.ID)
}

// TestLostReservationReleasedAfterSecondSighting: a reservation whose
// instance died before publishing is released by the first round that
// finds it stale a publish timeout after an earlier round did, on the
// reconciling process's own clock, and not before.
func TestLostReservationReleasedAfterSecondSighting(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	u := v.users(1)
	const publishTimeout = 300 * time.Millisecond
	e := v.recovered(Config{PublishTimeout: publishTimeout}, nil)
	if r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: s.ID, UserID: u[0], Ticket: newTicket()}); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve: %v %v", r, err)
	}
	v.gateNow.advance(time.Minute)
	first := time.Now()
	if n, err := e.Reconcile(ctx, 30*time.Second); err != nil || n != 0 {
		t.Fatalf("first sighting released %d, %v; want 0", n, err)
	}
	for {
		n, err := e.Reconcile(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			if since := time.Since(first); since < publishTimeout {
				t.Fatalf("released %v after the first sighting; want at least the publish timeout, %v", since, publishTimeout)
			}
			break
		}
		if time.Since(first) > publishTimeout+5*time.Second {
			t.Fatal("a lost reservation seen stale for seconds was never released")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if left := v.gateLeft(s.ID); left != 1 {
		t.Fatalf("gate left %d after the release, want 1", left)
	}
}
