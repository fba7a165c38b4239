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
	s := v.openSale(20)
	u := v.users(11)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := v.recovered(Config{AdmitFactor: 0.5, Now: clock}, nil) // 10 a second
	pa := path(t, e, u[0], s.ID)
	if _, err := e.Purchase(ctx, u[0], s.ID, pa); err != nil {
		t.Fatal(err)
	}
	for range 9 { // the bot retries: answered duplicate here, no attempt at the gate
		_, err := e.Purchase(ctx, u[0], s.ID, pa)
		wantCode(t, err, seckill.EDuplicate)
	}
	for _, user := range u[1:10] {
		if _, err := e.Purchase(ctx, user, s.ID, path(t, e, user, s.ID)); err != nil {
			t.Fatal(err)
		}
	}
	pb := path(t, e, u[10], s.ID)
	_, err := e.Purchase(ctx, u[10], s.ID, pb)
	wantCode(t, err, seckill.EBusy)
	if got := v.gateLeft(s.ID); got != 10 {
		t.Errorf("gate left %d, want 10", got)
	}
	mu.Lock()
	now = now.Add(100 * time.Millisecond) // one more token
	mu.Unlock()
	if _, err := e.Purchase(ctx, u[10], s.ID, pb); err != nil {
		t.Fatalf("after 100 ms: %v", err)
	}
	// Off by default.
	off := v.recovered(Config{}, nil)
	for range 20 {
		_, err := off.Purchase(ctx, u[0], s.ID, path(t, off, u[0], s.ID))
		wantCode(t, err, seckill.EDuplicate)
	}
}
