package sqldb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"seckill"
)

// The order writer inserts a batch in (sale, user) order (byUser): the other
// tests write users in id order, where the sort changes nothing. These
// write a crowd in random order of user id, over several sales (one
// short), with duplicates of one (sale, user) in the batch and
// redeliveries in the middle, across more rows than one statement takes,
// and check that (1) every request gets the id of the order its (sale,
// user) holds, whose order number is its first request's ticket, and (2)
// the earliest new requests of the short sale got its units.

func TestShuffledBatchSQLite(t *testing.T)   { testShuffledBatch(t, freshSQLite) }
func TestShuffledBatchMySQL(t *testing.T)    { testShuffledBatch(t, freshMySQL) }
func TestShuffledBatchPostgres(t *testing.T) { testShuffledBatch(t, freshPostgres) }

func testShuffledBatch(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	const n = 3000
	users := makeUsers(0, n)
	mustOK(t, db.CreateUsers(ctx, users))
	rng := rand.New(rand.NewPCG(1, 2))
	newSale := func(stock int64) *seckill.Sale {
		s := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: stock,
			StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		mustOK(t, db.CreateSale(ctx, s))
		return s
	}
	sales := []*seckill.Sale{newSale(n), newSale(700), newSale(n)}
	now := time.Now()
	seq := 0
	req := func(s *seckill.Sale, u int) seckill.OrderRequest {
		seq++
		return seckill.OrderRequest{SaleID: s.ID, UserID: users[u].ID, Ticket: fmt.Sprintf("R%d-%d-%d", s.ID, u, seq), At: now}
	}
	// Redeliveries to be: written first, in a batch of their own.
	type key struct{ sale, user int64 }
	held := map[key]string{} // (sale, user) → ticket of its order
	var pre []seckill.OrderRequest
	for _, u := range rng.Perm(n)[:400] {
		r := req(sales[u%3], u)
		pre = append(pre, r)
		held[key{r.SaleID, r.UserID}] = r.Ticket
	}
	_, err := db.WriteOrders(ctx, pre, now)
	mustOK(t, err)
	short := sales[1]
	shortLeft := int64(700)
	for _, r := range pre {
		if r.SaleID == short.ID {
			shortLeft--
		}
	}

	// The crowd: every user in random order, each in one or two sales,
	// some asking twice.
	var reqs []seckill.OrderRequest
	for _, u := range rng.Perm(n) {
		reqs = append(reqs, req(sales[u%3], u))
		if u%5 == 0 {
			reqs = append(reqs, req(sales[(u+1)%3], u))
		}
		if u%7 == 0 {
			reqs = append(reqs, req(sales[u%3], u)) // asks again: shares the first's outcome
		}
	}
	rng.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })

	// What must happen: in request order, the first request of each new
	// (sale, user) of the short sale takes a unit while there is one.
	want := map[key]string{} // ticket of the order, or "" for sold out
	for k, v := range held {
		want[k] = v
	}
	for _, r := range reqs {
		k := key{r.SaleID, r.UserID}
		if _, ok := want[k]; ok {
			continue
		}
		if r.SaleID == short.ID {
			if shortLeft == 0 {
				want[k] = ""
				continue
			}
			shortLeft--
		}
		want[k] = r.Ticket
	}

	res, err := db.WriteOrders(ctx, reqs, now)
	mustOK(t, err)
	bad := 0
	for i, r := range res {
		k := key{reqs[i].SaleID, reqs[i].UserID}
		w := want[k]
		if w == "" {
			if r.Status == seckill.ResultSuccess {
				t.Errorf("request %d (sale %d, user %d) got order %d; a later request took the unit of an earlier one", i, k.sale, k.user, r.OrderID)
				bad++
			}
			continue
		}
		o, err := db.OrderBySaleUser(ctx, k.sale, k.user)
		if err != nil {
			t.Errorf("request %d (sale %d, user %d): %v", i, k.sale, k.user, err)
			bad++
			continue
		}
		if r.Status != seckill.ResultSuccess || r.OrderID != o.ID || o.OrderNo != w {
			t.Errorf("request %d (sale %d, user %d) = %+v; the order is %d (%s), want ticket %s", i, k.sale, k.user, r, o.ID, o.OrderNo, w)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many")
		}
	}
	st, err := db.SaleStats(ctx, short.ID)
	mustOK(t, err)
	if st.Orders != 700 || st.SQLStockLeft != 0 || st.LedgerSum != 0 {
		t.Errorf("short sale stats %+v; want 700 orders, none left", st)
	}
}
