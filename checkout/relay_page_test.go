package checkout

import (
	"context"
	"testing"
)

// TestRelayNotHeldUpByASaleTheGateCannotTake: the relay reads the stock
// returns oldest first, a page at a time. A sale the gate serves but
// cannot take a unit of for now (its gate lost and not loaded yet: on a
// Redis Cluster, its shard down) leaves its rows unapplied; a full page of
// them must not keep the returns of every other sale behind them out of
// the gate (I4: those units are never offered again while it lasts).
func TestRelayNotHeldUpByASaleTheGateCannotTake(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	x, y := v.openSale(sweepBatch), v.openSale(1)
	ux, uy := v.users(sweepBatch), v.users(1)
	v.writeOrders(x.ID, ux...)
	v.writeOrders(y.ID, uy...)
	e := v.recovered(Config{}, nil) // both sold out in the gate
	for _, u := range ux {
		v.cancelInSQL(v.orderOf(x.ID, u))
	}
	v.cancelInSQL(v.orderOf(y.ID, uy[0]))
	if err := v.gate.Forget(ctx, x.ID); err != nil { // x's gate lost, no rebuild yet
		t.Fatal(err)
	}
	if n := relay(t, e); n != 1 {
		t.Fatalf("relay returned %d units, want sale %d's 1 (sale %d's wait for its load)", n, y.ID, x.ID)
	}
	if got := v.gateLeft(y.ID); got != 1 {
		t.Fatalf("sale %d: gate left %d after the relay, want its returned unit", y.ID, got)
	}
	v.checkAtRest(y.ID)
	// x's load reads its returns from SQL; its rows are then no-ops.
	if _, err := e.loadGate(ctx, x.ID); err != nil {
		t.Fatal(err)
	}
	if n := relay(t, e); n != 0 {
		t.Fatalf("relay after x's load returned %d units, want 0 (the load had them)", n)
	}
	if st := v.checkAtRest(x.ID); st.SQLStockLeft != sweepBatch {
		t.Fatalf("sale %d at rest: %+v", x.ID, st)
	}
	if ls := engineStats(t, e, x.ID); ls.ReturnsUnapplied != 0 {
		t.Fatalf("returns unapplied at rest: %d", ls.ReturnsUnapplied)
	}
}
