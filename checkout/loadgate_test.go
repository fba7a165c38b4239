package checkout

import (
	"context"
	"sync"
	"testing"

	"seckill"
)

// commitAfterFirstRead is the SQL store of an instance rebuilding a gate
// while another instance's writer runs: right after the rebuild's first read
// of a sale's stock, commit runs (the other writer commits a batch), once.
type commitAfterFirstRead struct {
	envStore
	once   sync.Once
	commit func()
}

func (s *commitAfterFirstRead) SaleStats(ctx context.Context, id int64) (*seckill.SaleStats, error) {
	st, err := s.envStore.SaleStats(ctx, id)
	s.once.Do(s.commit)
	return st, err
}

func (s *commitAfterFirstRead) SaleSnapshot(ctx context.Context, id int64) (int64, []int64, error) {
	left, buyers, err := s.envStore.SaleSnapshot(ctx, id)
	s.once.Do(s.commit)
	return left, buyers, err
}

// TestLoadGateWriterCommitsDuringRead rebuilds a gate while another
// instance's writer commits the queued requests right after the rebuild
// read SQL's stock: the gate must still equal SQL stock_left less what is
// queued (I4), and never count those buyers as sold with their units still
// in stock (which let the gate sell them twice). SQLite is where reading
// stock and buyers apart went wrong; the in-memory store is held to the
// same.
func TestLoadGateWriterCommitsDuringRead(t *testing.T) {
	t.Run("inmem", func(t *testing.T) { testLoadGateWriterCommitsDuringRead(t, newEnv(t)) })
	t.Run("sqlite", func(t *testing.T) { testLoadGateWriterCommitsDuringRead(t, newEnv(t, withSQLite)) })
}

func testLoadGateWriterCommitsDuringRead(t *testing.T, v *env) {
	ctx := context.Background()
	s := v.openSale(10)
	us := v.users(2)
	v.publish(s.ID, us...)

	// The other writer claimed its batch before the gate lost the sale
	// (a writer cannot claim at a gate without it), and commits it
	// during the rebuild.
	ob := v.backends()
	ob.Gate = claimedGate{v.gate}
	other := v.engine(Config{}, &ob)
	committed := false
	store := &commitAfterFirstRead{envStore: v.db, commit: func() {
		for v.pending(s.ID) > 0 {
			if _, err := other.WriteBatch(ctx); err != nil {
				t.Errorf("other writer: %v", err)
				return
			}
		}
		committed = true
	}}
	b := v.backends()
	b.Sales, b.Orders = store, store
	e := v.engine(Config{}, &b)
	// As after a shared gate lost the sale.
	if err := v.gate.Forget(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if loaded, err := e.loadGate(ctx, s.ID); err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
	if !committed {
		t.Fatal("the other writer did not commit during the rebuild")
	}
	st := v.checkAtRest(s.ID)
	if st.SQLStockLeft != 8 {
		t.Errorf("SQL stock_left %d, want 8", st.SQLStockLeft)
	}
	for _, u := range us {
		if r := v.reserve(s.ID, u); r != seckill.Duplicate {
			t.Errorf("user %d, whose order SQL holds, reserved again: %v", u, r)
		}
	}
}

// claimedGate is a gate at which every claim was made already: its Claim
// allows everything, loaded or not.
type claimedGate struct{ seckill.StockGate }

func (claimedGate) Claim(_ context.Context, _ int64, reqs []seckill.Settled) ([]bool, error) {
	allowed := make([]bool, len(reqs))
	for i := range allowed {
		allowed[i] = true
	}
	return allowed, nil
}
