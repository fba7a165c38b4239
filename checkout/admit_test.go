package checkout

import (
	"context"
	"sync"
	"testing"
	"time"

	"seckill"
)

// TestAdmitFactor: a sale lets at most AdmitFactor × stock purchase
// attempts a second through to the gate (a burst as large, then that
// rate); beyond it busy without touching the gate, by the engine's clock
// (issue 12 item 13).
func TestAdmitFactor(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s := v.openSale(5)
	u := v.users(2)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := v.recovered(Config{AdmitFactor: 2, Now: clock}, nil) // 10 a second
	pa, pb := path(t, e, u[0], s.ID), path(t, e, u[1], s.ID)
	if _, err := e.Purchase(ctx, u[0], s.ID, pa); err != nil {
		t.Fatal(err)
	}
	for range 9 { // the bot retries: duplicates, each an attempt at the gate
		_, err := e.Purchase(ctx, u[0], s.ID, pa)
		wantCode(t, err, seckill.EDuplicate)
	}
	_, err := e.Purchase(ctx, u[0], s.ID, pa)
	wantCode(t, err, seckill.EBusy)
	_, err = e.Purchase(ctx, u[1], s.ID, pb)
	wantCode(t, err, seckill.EBusy)
	if got := v.gateLeft(s.ID); got != 4 {
		t.Errorf("gate left %d, want 4", got)
	}
	mu.Lock()
	now = now.Add(100 * time.Millisecond) // one more token
	mu.Unlock()
	if _, err := e.Purchase(ctx, u[1], s.ID, pb); err != nil {
		t.Fatalf("after 100 ms: %v", err)
	}
	// Off by default.
	off := v.recovered(Config{}, nil)
	for range 20 {
		_, err := off.Purchase(ctx, u[0], s.ID, path(t, off, u[0], s.ID))
		wantCode(t, err, seckill.EDuplicate)
	}
}
