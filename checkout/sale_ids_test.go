package checkout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// TestWriterClaimsSaleCreatedElsewhere: Engine.Sale answers "no sale" for
// an id above the newest this instance has seen when it listed the
// catalogue less than relistEvery ago; the order writer must not take that
// answer for "SQL refuses it" and write a batch of the sale unclaimed (the
// fence against Release). Two instances on one store: the admin creates
// the sale on B, where a buyer's publish goes unacknowledged (its
// reservation is released by B's reconciler, the unit back in stock) and
// the message lands late; a second buyer is admitted to the unit (202).
// A's writer, whose catalogue (as far as Sale goes) predates the sale,
// must refuse the released request and give the unit to the second buyer
// (I3), as TestLateStoreAfterRelease on a single instance.
func TestWriterClaimsSaleCreatedElsewhere(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	u := v.users(2)
	lq := &lateQueue{OrderQueue: v.queue, hold: true}
	bk := v.backends()
	bk.Queue = lq
	b := v.recovered(Config{}, &bk) // where the admin and both buyers are
	a := v.recovered(Config{}, nil) // another instance; its writer takes the batch

	// A listed the catalogue just now, as far as the test lasts: anyone
	// asking A for an id above its newest (an invented one) makes it list.
	if _, err := a.Sale(ctx, 1<<40); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("invented id: %v", err)
	}
	a.newestMu.Lock()
	a.listedAt = time.Now().Add(time.Hour)
	a.newestMu.Unlock()

	now := time.Now()
	s := &seckill.Sale{Name: "phone", PriceCents: 99900, OriginalPriceCents: 199900, Stock: 1,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}
	if err := b.CreateSale(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sale(ctx, s.ID); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("A's Sale of the sale created on B: %v; the test needs it to say none", err)
	}
	_, err := b.Purchase(ctx, u[0], s.ID, path(t, b, u[0], s.ID))
	wantCode(t, err, seckill.EBusy) // may still go through
	v.gateNow.advance(time.Minute)
	if n, err := b.Reconcile(ctx, 30*time.Second); err != nil || n != 1 {
		t.Fatalf("reconcile released %d, %v; want 1", n, err)
	}
	lq.arrive(t) // the message lands after all
	ticket, err := b.Purchase(ctx, u[1], s.ID, path(t, b, u[1], s.ID))
	if err != nil {
		t.Fatalf("second buyer: %v", err)
	}
	drain(t, a)
	o1, err1 := v.db.OrderBySaleUser(ctx, s.ID, u[1])
	o0, err0 := v.db.OrderBySaleUser(ctx, s.ID, u[0])
	if err1 != nil || o1 == nil {
		t.Errorf("I3: buyer %d was answered 202 (ticket %s) and has no order (%v); buyer %d, whose reservation was released (answered 503), has %+v (%v)",
			u[1], ticket, err1, u[0], o0, err0)
	}
	if err0 == nil && o0 != nil {
		t.Errorf("buyer %d's request, landed after its reservation was released, became order %d: A's writer skipped the claim of sale %d", u[0], o0.ID, s.ID)
	}
}

// uncommittedSales is a SaleStore on which the sale with id hidden is not
// visible yet: PostgreSQL hands out sequence values when an INSERT runs,
// not when it commits, so an admin's sale whose transaction is slower
// (its ledger row, a lock) commits after a later id's.
type uncommittedSales struct {
	seckill.SaleStore
	hidden atomic.Int64
}

func (s *uncommittedSales) Sale(ctx context.Context, id int64) (*seckill.Sale, error) {
	if id == s.hidden.Load() {
		return nil, seckill.Errorf(seckill.ENotFound, "sale %d", id)
	}
	return s.SaleStore.Sale(ctx, id)
}

func (s *uncommittedSales) Sales(ctx context.Context) ([]*seckill.Sale, error) {
	all, err := s.SaleStore.Sales(ctx)
	var out []*seckill.Sale
	for _, x := range all {
		if x.ID != s.hidden.Load() {
			out = append(out, x)
		}
	}
	return out, err
}

// TestSaleCommittedOutOfOrderNotFound: an id below the newest seen that
// SQL says does not exist is remembered as none, to spare SQL a read per
// request, but only for relistEvery: with ids that commit out of order
// (PostgreSQL sequences), a sale asked for while its insert was in flight
// (a crawler walking ids) is seen within relistEvery of its commit, not a
// whole SaleCacheTTL later.
func TestSaleCommittedOutOfOrderNotFound(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	s1 := v.openSale(1) // its transaction drew the id first, commits last
	s2 := v.openSale(1)
	store := &uncommittedSales{SaleStore: v.db}
	store.hidden.Store(s1.ID)
	bk := v.backends()
	bk.Sales = store
	clk := &offsetClock{}
	e := v.engine(Config{SaleCacheTTL: time.Second, Now: clk.Now}, &bk)

	if _, err := e.Sale(ctx, s2.ID); err != nil { // the newest: the catalogue is listed
		t.Fatal(err)
	}
	if _, err := e.Sale(ctx, s1.ID); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("sale %d before its commit: %v; want not found", s1.ID, err)
	}
	store.hidden.Store(0)   // committed
	time.Sleep(relistEvery) // a process-clock bound: the engine's clock need not move
	if _, err := e.Sale(ctx, s1.ID); err != nil {
		t.Errorf("sale %d, committed %v ago: %v; want the sale (a negative answer outlived the commit)", s1.ID, relistEvery, err)
	}
}
