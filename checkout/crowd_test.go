package checkout

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"seckill"
)

// TestEngineCrowd drives the engine alone, without HTTP: many users, each
// trying several times, against a small stock, with the writer running;
// once on the in-memory backends and once on SQLite and JetStream, whose
// batching and redelivery are what production runs.
func TestEngineCrowd(t *testing.T) {
	t.Run("inmem", func(t *testing.T) { testEngineCrowd(t, newEnv(t)) })
	t.Run("sqlite", func(t *testing.T) { testEngineCrowd(t, newEnv(t, withSQLite)) })
}

func testEngineCrowd(t *testing.T, v *env) {
	const (
		nUsers   = 1000
		attempts = 3
		workers  = 32
		stock    = 300
	)
	ctx := context.Background()
	s := v.openSale(stock)
	users := v.users(nUsers)
	e := v.recovered(Config{}, nil)
	paths := make(map[int64]string, nUsers)
	for _, u := range users {
		paths[u] = path(t, e, u, s.ID)
	}
	stopWriter := runWriter(t, e)

	type try struct{ user int64 }
	tries := make([]try, 0, nUsers*attempts)
	for range attempts {
		for _, u := range users {
			tries = append(tries, try{u})
		}
	}
	rand.Shuffle(len(tries), func(i, j int) { tries[i], tries[j] = tries[j], tries[i] })
	work := make(chan try)
	go func() {
		defer close(work)
		for _, tr := range tries {
			work <- tr
		}
	}()

	var (
		mu      sync.Mutex
		tickets = map[int64][]string{} // user → tickets of admitted purchases
		codes   = map[string]int{}
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tr := range work {
				ticket, err := e.Purchase(ctx, tr.user, s.ID, paths[tr.user])
				mu.Lock()
				if err == nil {
					tickets[tr.user] = append(tickets[tr.user], ticket)
				}
				codes[seckill.ErrorCode(err)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	stopWriter()
	drain(t, e)

	for code, n := range codes {
		switch code {
		case "", seckill.EDuplicate, seckill.ESoldOut:
		default:
			t.Errorf("%d purchases failed with %q; want only duplicate or sold_out", n, code)
		}
	}
	if codes[""] != stock || len(tickets) != stock {
		t.Errorf("%d purchases admitted for %d users, want %d for %d", codes[""], len(tickets), stock, stock)
	}
	if total := codes[""] + codes[seckill.EDuplicate] + codes[seckill.ESoldOut]; total != len(tries) {
		t.Errorf("%d answers for %d attempts", total, len(tries))
	}

	st := v.checkAtRest(s.ID)
	if st.Orders != stock || st.Pending != stock || st.SQLStockLeft != 0 || st.LedgerSum != 0 {
		t.Errorf("SQL: %d orders (%d pending), stock_left %d, ledger %d; want %d, %d, 0, 0",
			st.Orders, st.Pending, st.SQLStockLeft, st.LedgerSum, stock, stock)
	}
	if left := v.gateLeft(s.ID); left != 0 {
		t.Errorf("gate left %d, want 0", left)
	}
	buyers := v.buyers(s.ID)
	if len(buyers) != stock {
		t.Errorf("%d distinct buyers, want %d", len(buyers), stock)
	}
	for u, tks := range tickets {
		if len(tks) != 1 {
			t.Errorf("user %d admitted %d times", u, len(tks))
			continue
		}
		if !buyers[u] {
			t.Errorf("user %d was admitted but has no order (I3)", u)
			continue
		}
		o, err := v.db.OrderBySaleUser(ctx, s.ID, u)
		if err != nil {
			t.Fatal(err)
		}
		if o.OrderNo != tks[0] {
			t.Errorf("user %d: order no %q, want ticket %q", u, o.OrderNo, tks[0])
		}
		if r := waitResult(t, e, u, s.ID, seckill.ResultSuccess); r.OrderID != o.ID {
			t.Errorf("user %d: result order %d, want %d", u, r.OrderID, o.ID)
		}
	}
	for u := range buyers {
		if _, ok := tickets[u]; !ok {
			t.Errorf("user %d has an order but was never admitted", u)
		}
	}
	for _, u := range users {
		if _, ok := tickets[u]; !ok {
			if r := result(t, e, u, s.ID); r.Status != seckill.ResultNone {
				t.Errorf("user %d was never admitted: result %+v, want none", u, r)
				break
			}
		}
	}
}
