package checkout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// hiccupQueue fails its next PendingRequests once when armed: the queue
// (or SQL behind the same snapshot) does not answer for a moment.
type hiccupQueue struct {
	seckill.OrderQueue
	armed atomic.Bool
}

func (q *hiccupQueue) PendingRequests(ctx context.Context, saleID int64) ([]seckill.OrderRequest, error) {
	if q.armed.CompareAndSwap(true, false) {
		return nil, seckill.Errorf(seckill.EBusy, "queue did not answer (test)")
	}
	return q.OrderQueue.PendingRequests(ctx, saleID)
}

// TestCreateSaleLoadFailsEmbedded: CreateSale commits the sale in SQL,
// then loads its gate. When that second step fails (one read of the queue
// that does not answer, or the admin's request gone), the sale is created
// all the same (an error would make the admin create it twice), and the
// in-process gate, which has no Locker, is rebuilt without one: the sale
// sells out to its buyers (I4). It used to stay unloaded until a restart,
// every purchase answered 503.
func TestCreateSaleLoadFailsEmbedded(t *testing.T) {
	v := newEnv(t, withSQLite)
	ctx := context.Background()
	hq := &hiccupQueue{OrderQueue: v.queue}
	b := v.backends()
	b.Queue = hq
	e := v.recovered(Config{}, &b)

	now := time.Now()
	s := &seckill.Sale{Name: "phone", PriceCents: 100, Stock: 2, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}
	hq.armed.Store(true)
	if err := e.CreateSale(ctx, s); err != nil || s.ID == 0 {
		t.Fatalf("CreateSale with its gate load failing: %v (sale %d); want the sale created", err, s.ID)
	}

	// The engine goes on as serve runs it: reconciler and sweeper rounds.
	for range 3 {
		e.reconcileOnce(ctx, time.Minute)
		if _, err := e.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Three buyers for two units; each tries a few times, as a crowd does.
	us := v.users(3)
	stop := runWriter(t, e)
	won, busy := 0, 0
	for _, u := range us {
		for try := 0; try < 5; try++ {
			_, err := e.Purchase(ctx, u, s.ID, path(t, e, u, s.ID))
			if seckill.ErrorCode(err) == seckill.EBusy {
				busy++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if err == nil {
				won++
			}
			break
		}
	}
	stop()
	if won != 2 {
		t.Errorf("I4: %d of 2 units sold to 3 buyers (%d presses answered 503 busy): the open sale's gate was never loaded", won, busy)
	}
	if _, loaded, _ := v.gate.Left(ctx, s.ID); !loaded {
		t.Errorf("the sale %d is open in SQL and not in the gate", s.ID)
	}
}
