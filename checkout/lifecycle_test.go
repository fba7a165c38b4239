package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
)

// lc returns the env's lifecycle store (withSQLite).
func (v *env) lc() seckill.OrderLifecycle {
	v.t.Helper()
	lc, ok := v.db.(seckill.OrderLifecycle)
	if !ok {
		v.t.Fatal("the env's store has no order lifecycle")
	}
	return lc
}

// orderOf returns the user's order in the sale.
func (v *env) orderOf(saleID, userID int64) *seckill.Order {
	v.t.Helper()
	o, err := v.db.OrderBySaleUser(context.Background(), saleID, userID)
	if err != nil {
		v.t.Fatal(err)
	}
	return o
}

// cancelInSQL cancels the order in SQL only, as a process killed right
// after the cancel's commit leaves it: the gate has not had the unit.
func (v *env) cancelInSQL(o *seckill.Order) {
	v.t.Helper()
	if _, err := v.lc().CancelOrder(context.Background(), o.ID, o.UserID, time.Now(), false); err != nil {
		v.t.Fatal(err)
	}
}

// relay runs the engine's relay of stock returns and returns how many
// units went back.
func relay(t *testing.T, e *Engine) int {
	t.Helper()
	n, err := e.RelayReturns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReturnSurvivesACrashAnywhere kills the cancel (in effect) at each
// point between SQL and the gate: every cancelled unit ends up in the gate
// exactly once, and the buyer who cancelled stays a buyer.
func TestReturnSurvivesACrashAnywhere(t *testing.T) {
	v := newEnv(t, withSQLite)
	s := v.openSale(3)
	us := v.users(5)
	v.writeOrders(s.ID, us[0], us[1], us[2])
	e := v.recovered(Config{}, nil)
	if got := v.gateLeft(s.ID); got != 0 {
		t.Fatalf("gate left %d, want 0", got)
	}

	// Killed after the gate had the unit, before the row was marked: the
	// next relay applies it again, which changes nothing.
	o0 := v.orderOf(s.ID, us[0])
	v.cancelInSQL(o0)
	if ok, err := v.gate.Return(context.Background(), s.ID, o0.ID); err != nil || !ok {
		t.Fatalf("Return = %v, %v", ok, err)
	}
	if n := relay(t, e); n != 0 {
		t.Fatalf("relay returned %d units the gate had already", n)
	}
	v.checkAtRest(s.ID)

	// Killed right after the SQL commit, restarted: the rebuilt gate holds
	// the unit from SQL, and the relay that follows does not add it again.
	v.cancelInSQL(v.orderOf(s.ID, us[1]))
	e.Close()
	e = v.recovered(Config{}, nil)
	if n := relay(t, e); n != 0 {
		t.Fatalf("relay after a rebuild returned %d units the rebuild had loaded", n)
	}
	if got := v.gateLeft(s.ID); got != 2 {
		t.Fatalf("gate left %d after the rebuild, want 2", got)
	}
	v.checkAtRest(s.ID)

	// Killed right after the commit, no restart: the next relay (any
	// instance's sweeper) gives the unit back once.
	v.cancelInSQL(v.orderOf(s.ID, us[2]))
	if n := relay(t, e); n != 1 {
		t.Fatalf("relay returned %d units, want 1", n)
	}
	if n := relay(t, e); n != 0 {
		t.Fatalf("a second relay returned %d units, want 0", n)
	}
	v.checkAtRest(s.ID)

	// The cancellers stay buyers; the units go to others.
	for _, u := range us[:3] {
		if r := v.reserve(s.ID, u); r != seckill.Duplicate {
			t.Fatalf("user %d who cancelled: %v, want duplicate", u, r)
		}
	}
	for _, u := range us[3:] {
		if r := v.reserve(s.ID, u); r != seckill.Reserved {
			t.Fatalf("new buyer %d: %v, want reserved", u, r)
		}
	}
}
