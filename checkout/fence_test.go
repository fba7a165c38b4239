package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
)

// TestReleasedRequestLandsAfterGateLoss: V's purchase reserved the last
// unit and its publish stalled; the reconciler found the reservation
// neither queued nor in SQL and released it, and W bought the unit (202).
// Then V's request landed in the queue after all, and the gate lost its
// state before the writer reached either request: a Redis restarted empty
// (the shared gate is rebuilt from SQL and the queue), or the embedded
// server restarted (Recover drains the queue with a new, empty gate). The
// gate's memory of the release went with it; the release SQL recorded
// must still refuse V's request, or it takes W's unit and W's 202 ends
// failed (I3). Found by a break review.
func TestReleasedRequestLandsAfterGateLoss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cell string, v *env) {
		ctx := context.Background()
		s := v.openSale(1)
		us := v.users(2)
		V, W := us[0], us[1]
		cfg := Config{PublishTimeout: 50 * time.Millisecond}
		e := v.recovered(cfg, nil)

		// V's Admit reserved; its publish is stalled.
		t1 := newTicket()
		if r, err := v.gate.Reserve(ctx, seckill.Reservation{SaleID: s.ID, UserID: V, Ticket: t1, At: time.Now()}); err != nil || r != seckill.Reserved {
			t.Fatalf("V's reservation: %v %v", r, err)
		}
		// Two rounds of the reconciler, at least PublishTimeout apart,
		// release it.
		if n, err := e.Reconcile(ctx, 0); err != nil || n != 0 {
			t.Fatalf("first round: released %d, %v; want 0 (first sighting)", n, err)
		}
		time.Sleep(2 * cfg.PublishTimeout)
		if n, err := e.Reconcile(ctx, 0); err != nil || n != 1 {
			t.Fatalf("second round: released %d, %v; want 1", n, err)
		}
		v.publishTicket(s.ID, V, t1) // the stalled publish lands
		if _, err := e.Purchase(ctx, W, s.ID, path(t, e, W, s.ID)); err != nil {
			t.Fatalf("W buys the released unit: %v", err)
		}

		if v.locker != nil {
			// Redis lost the sale; an instance rebuilds it.
			if err := v.gate.Forget(ctx, s.ID); err != nil {
				t.Fatal(err)
			}
			if err := e.RebuildGate(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			// The embedded server restarts: a new process, a new gate.
			e.Close()
			v.gate = inmem.NewGate()
			e = v.recovered(cfg, nil)
		}
		drain(t, e)

		if _, err := v.db.OrderBySaleUser(ctx, s.ID, W); err != nil {
			o, _ := v.db.OrderBySaleUser(ctx, s.ID, V)
			t.Fatalf("I3: W was answered 202 and has no order (%v); V, whose reservation was released, holds %+v", err, o)
		}
		if o, err := v.db.OrderBySaleUser(ctx, s.ID, V); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("V's released request became order %+v (%v)", o, err)
		}
		v.checkAtRest(s.ID)
	})
}
