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
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(1)
	u := v.users(2)
	bk := v.backends()
	sg := &stallGate{StockGate: bk.Gate}
	bk.Gate = sg
	const publishTimeout = 200 * time.Millisecond
	e := v.recovered(Config{PublishTimeout: publishTimeout}, &bk)
	// The other instance (same SQL, gate and queue).
	other := v.recovered(Config{PublishTimeout: publishTimeout}, nil)
	sg.after = func() {
		time.Sleep(publishTimeout + 100*time.Millisecond)
		v.gateNow.advance(time.Minute)
		if n, err := other.Reconcile(ctx, 30*time.Second); err != nil || n != 1 {
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
