package contract

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"seckill"
)

// Stores is one backend's implementation of the store interfaces.
type Stores struct {
	Users    seckill.UserStore
	Sessions seckill.SessionStore
	Sales    seckill.SaleStore
	Orders   seckill.OrderStore
}

// TestStores checks every documented outcome of the store interfaces, and
// invariants I1, I2 and I4 under concurrent WriteOrders. open must return
// stores on a fresh, empty database, closed when the test ends. Users must
// exist before they order (backends may enforce it).
func TestStores(t *testing.T, open func(t *testing.T) Stores) {
	t.Run("Users", func(t *testing.T) { testUsers(t, open) })
	t.Run("Sessions", func(t *testing.T) {
		sessionChecks(t, func(t *testing.T) (seckill.SessionStore, int64) {
			s := open(t)
			return s.Sessions, storeNewUser(t, s).ID
		})
	})
	t.Run("Sales", func(t *testing.T) { testSales(t, open) })
	t.Run("Orders", func(t *testing.T) { testOrders(t, open) })
	t.Run("ConcurrentWriteOrders", func(t *testing.T) { testConcurrentWriteOrders(t, open(t)) })
	t.Run("FenceRacesWriteOrders", func(t *testing.T) { testFenceRacesWriteOrders(t, open(t)) })
	t.Run("SnapshotUnderWrites", func(t *testing.T) { testSnapshotUnderWrites(t, open(t)) })
}

func testUsers(t *testing.T, open func(t *testing.T) Stores) {
	ctx := context.Background()

	t.Run("CreateAndGet", func(t *testing.T) {
		s := open(t)
		before := storeNow()
		u := &seckill.User{Phone: "13800000001", Nickname: "ann", Role: seckill.RoleAdmin, PasswordHash: "$argon2id$x"}
		storeNoErr(t, s.Users.CreateUser(ctx, u))
		if u.ID == 0 {
			t.Fatal("CreateUser left ID 0")
		}
		if u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("CreatedAt = %v, want about now (%v)", u.CreatedAt, before)
		}
		other := storeNewUser(t, s)
		if other.ID == u.ID {
			t.Errorf("two users with ID %d", u.ID)
		}
		got, err := s.Users.UserByID(ctx, u.ID)
		storeNoErr(t, err)
		if diff := cmp.Diff(u, got, storeCmpTimes); diff != "" {
			t.Errorf("UserByID (-created +got):\n%s", diff)
		}
		got, err = s.Users.UserByPhone(ctx, u.Phone)
		storeNoErr(t, err)
		if diff := cmp.Diff(u, got, storeCmpTimes); diff != "" {
			t.Errorf("UserByPhone (-created +got):\n%s", diff)
		}
	})

	t.Run("PhoneTaken", func(t *testing.T) {
		s := open(t)
		u := storeNewUser(t, s)
		dup := &seckill.User{Phone: u.Phone, Nickname: "other", Role: seckill.RoleBuyer, PasswordHash: "x"}
		storeWantCode(t, s.Users.CreateUser(ctx, dup), seckill.EPhoneTaken)
		got, err := s.Users.UserByPhone(ctx, u.Phone)
		storeNoErr(t, err)
		if got.ID != u.ID || got.Nickname != u.Nickname {
			t.Errorf("after a refused duplicate, UserByPhone = %+v, want the first user %+v", got, u)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		u := storeNewUser(t, s)
		_, err := s.Users.UserByID(ctx, u.ID+1000)
		storeWantCode(t, err, seckill.ENotFound)
		_, err = s.Users.UserByPhone(ctx, "19999999999")
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("Update", func(t *testing.T) {
		s := open(t)
		u := storeNewUser(t, s)
		u.Nickname, u.Role, u.PasswordHash = "renamed", seckill.RoleAdmin, "$argon2id$new"
		storeNoErr(t, s.Users.UpdateUser(ctx, u))
		got, err := s.Users.UserByID(ctx, u.ID)
		storeNoErr(t, err)
		if diff := cmp.Diff(u, got, storeCmpTimes); diff != "" {
			t.Errorf("after UpdateUser (-want +got):\n%s", diff)
		}
		missing := *u
		missing.ID = u.ID + 1000
		storeWantCode(t, s.Users.UpdateUser(ctx, &missing), seckill.ENotFound)
	})
}

func testSales(t *testing.T, open func(t *testing.T) Stores) {
	ctx := context.Background()

	t.Run("CreateAndGet", func(t *testing.T) {
		s := open(t)
		now := storeNow()
		sale := &seckill.Sale{
			Name: "tea", Description: "green", ImageURL: "/tea.png",
			PriceCents: 100, OriginalPriceCents: 1000, Stock: 7,
			StartsAt: now.Add(time.Minute), EndsAt: now.Add(time.Hour), RequireCaptcha: true,
		}
		storeNoErr(t, s.Sales.CreateSale(ctx, sale))
		if sale.ID == 0 || sale.StockLeft != 7 || sale.CreatedAt.IsZero() {
			t.Fatalf("CreateSale set ID %d, StockLeft %d, CreatedAt %v; want an ID, 7, now", sale.ID, sale.StockLeft, sale.CreatedAt)
		}
		got, err := s.Sales.Sale(ctx, sale.ID)
		storeNoErr(t, err)
		if diff := cmp.Diff(sale, got, storeCmpTimes); diff != "" {
			t.Errorf("Sale (-created +got):\n%s", diff)
		}
	})

	t.Run("LongestFields", func(t *testing.T) {
		// The longest fields checkout.ValidateSale lets through (name 200
		// bytes, description 10,000, image_url 1,024), in characters of
		// several bytes where a column counts characters, are stored
		// whole on every engine: an admin gets no 500 for them.
		s := open(t)
		now := storeNow()
		sale := &seckill.Sale{
			Name: strings.Repeat("茶", 66) + "ab", Description: strings.Repeat("é", 5000),
			ImageURL:   "https://img.example/" + strings.Repeat("p", 1024-len("https://img.example/")),
			PriceCents: 100, OriginalPriceCents: 1000, Stock: 7,
			StartsAt: now.Add(time.Minute), EndsAt: now.Add(time.Hour),
		}
		storeNoErr(t, s.Sales.CreateSale(ctx, sale))
		got, err := s.Sales.Sale(ctx, sale.ID)
		storeNoErr(t, err)
		if got.Name != sale.Name || got.Description != sale.Description || got.ImageURL != sale.ImageURL {
			t.Fatalf("stored %d/%d/%d bytes of name/description/image_url, want %d/%d/%d",
				len(got.Name), len(got.Description), len(got.ImageURL), len(sale.Name), len(sale.Description), len(sale.ImageURL))
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 1)
		_, err := s.Sales.Sale(ctx, sale.ID+1000)
		storeWantCode(t, err, seckill.ENotFound)
		_, err = s.Sales.SaleStats(ctx, sale.ID+1000)
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("SalesByStartThenID", func(t *testing.T) {
		s := open(t)
		if got, err := s.Sales.Sales(ctx); err != nil || len(got) != 0 {
			t.Fatalf("Sales on an empty store = %v, %v; want none", got, err)
		}
		base := storeNow()
		var ids []int64
		for _, start := range []time.Duration{2 * time.Hour, time.Hour, time.Hour, 0} {
			sale := &seckill.Sale{Name: "x", PriceCents: 1, OriginalPriceCents: 2, Stock: 1,
				StartsAt: base.Add(start), EndsAt: base.Add(3 * time.Hour)}
			storeNoErr(t, s.Sales.CreateSale(ctx, sale))
			ids = append(ids, sale.ID)
		}
		got, err := s.Sales.Sales(ctx)
		storeNoErr(t, err)
		var gotIDs []int64
		for _, sale := range got {
			gotIDs = append(gotIDs, sale.ID)
		}
		want := []int64{ids[3], ids[1], ids[2], ids[0]}
		if diff := cmp.Diff(want, gotIDs); diff != "" {
			t.Errorf("Sales order (-want +got):\n%s", diff)
		}
	})

	t.Run("EndSale", func(t *testing.T) {
		s := open(t)
		now := storeNow()
		create := func(starts, ends time.Duration) *seckill.Sale {
			t.Helper()
			sale := &seckill.Sale{Name: "x", PriceCents: 1, OriginalPriceCents: 2, Stock: 3,
				StartsAt: now.Add(starts), EndsAt: now.Add(ends)}
			storeNoErr(t, s.Sales.CreateSale(ctx, sale))
			return sale
		}
		running, upcoming, ended := create(-time.Hour, time.Hour), create(time.Hour, 2*time.Hour), create(-2*time.Hour, -time.Hour)
		cases := []struct {
			name        string
			sale        *seckill.Sale
			start, ends time.Time // after EndSale(now)
		}{
			{"running ends now", running, running.StartsAt, now},
			{"upcoming never opens", upcoming, now, now},
			{"ended keeps its end", ended, ended.StartsAt, ended.EndsAt},
		}
		for _, c := range cases {
			got, err := s.Sales.EndSale(ctx, c.sale.ID, now)
			storeNoErr(t, err)
			stored, err := s.Sales.Sale(ctx, c.sale.ID)
			storeNoErr(t, err)
			for _, g := range []*seckill.Sale{got, stored} {
				if !g.StartsAt.Equal(c.start) || !g.EndsAt.Equal(c.ends) || g.Stock != 3 || g.Name != "x" {
					t.Errorf("%s: sale %+v, want starts %v ends %v", c.name, g, c.start, c.ends)
				}
			}
			if st := got.Status(now, got.StockLeft); st != seckill.SaleEnded {
				t.Errorf("%s: status at the stop %s, want ended", c.name, st)
			}
		}
		// A later stop does not move an earlier end.
		got, err := s.Sales.EndSale(ctx, running.ID, now.Add(time.Minute))
		storeNoErr(t, err)
		if !got.EndsAt.Equal(now) {
			t.Errorf("second stop moved the end to %v, want %v", got.EndsAt, now)
		}
		_, err = s.Sales.EndSale(ctx, ended.ID+1000, now)
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("StatsOfNewSale", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 25)
		want := &seckill.SaleStats{Stock: 25, SQLStockLeft: 25, LedgerSum: 25}
		if diff := cmp.Diff(want, storeStats(t, s, sale.ID)); diff != "" {
			t.Errorf("SaleStats (-want +got):\n%s", diff)
		}
	})

	t.Run("ZeroStock", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 0)
		want := &seckill.SaleStats{}
		if diff := cmp.Diff(want, storeStats(t, s, sale.ID)); diff != "" {
			t.Errorf("SaleStats (-want +got):\n%s", diff)
		}
		u := storeNewUser(t, s)
		res := storeWriteOrders(t, s, []seckill.OrderRequest{storeReq(sale.ID, u.ID)}, storeNow().Add(time.Minute))
		if res[0].Status != seckill.ResultFailed || res[0].Reason != seckill.ESoldOut {
			t.Errorf("order on a sale without stock = %+v, want failed sold_out", res[0])
		}
	})
}

func testOrders(t *testing.T, open func(t *testing.T) Stores) {
	ctx := context.Background()

	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		res, err := s.Orders.WriteOrders(ctx, nil, storeNow())
		if err != nil || len(res) != 0 {
			t.Errorf("WriteOrders(nil) = %v, %v; want no results, no error", res, err)
		}
	})

	t.Run("Write", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 10)
		users := storeNewUsers(t, s, 3)
		payBy := storeNow().Add(10 * time.Minute)
		var reqs []seckill.OrderRequest
		for i, u := range users {
			r := storeReq(sale.ID, u)
			r.PriceCents = int64(9900 + i) // the order keeps the request's price
			r.At = storeNow().Add(time.Duration(-i) * time.Second)
			reqs = append(reqs, r)
		}
		res := storeWriteOrders(t, s, reqs, payBy)
		seen := map[int64]bool{}
		for i, r := range res {
			if r.Status != seckill.ResultSuccess {
				t.Fatalf("result %d = %+v, want success", i, r)
			}
			if seen[r.OrderID] {
				t.Errorf("order %d given twice", r.OrderID)
			}
			seen[r.OrderID] = true
			got, err := s.Orders.Order(ctx, r.OrderID)
			storeNoErr(t, err)
			want := &seckill.Order{
				ID: r.OrderID, OrderNo: reqs[i].Ticket, SaleID: sale.ID, UserID: reqs[i].UserID,
				PriceCents: reqs[i].PriceCents, Status: seckill.OrderPending,
				CreatedAt: reqs[i].At, PayDeadline: payBy,
			}
			if diff := cmp.Diff(want, got, storeCmpTimes); diff != "" {
				t.Errorf("order %d (-want +got):\n%s", i, diff)
			}
			bySU, err := s.Orders.OrderBySaleUser(ctx, sale.ID, reqs[i].UserID)
			storeNoErr(t, err)
			if diff := cmp.Diff(got, bySU, storeCmpTimes); diff != "" {
				t.Errorf("OrderBySaleUser %d (-Order +OrderBySaleUser):\n%s", i, diff)
			}
		}
		st := storeStats(t, s, sale.ID)
		if st.SQLStockLeft != 7 || st.Orders != 3 || st.Pending != 3 {
			t.Errorf("storeStats = %+v, want 3 pending orders and 7 left", st)
		}
	})

	t.Run("OrderNotFound", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 10)
		u := storeNewUser(t, s)
		res := storeWriteOrders(t, s, []seckill.OrderRequest{storeReq(sale.ID, u.ID)}, storeNow())
		_, err := s.Orders.Order(ctx, res[0].OrderID+1000)
		storeWantCode(t, err, seckill.ENotFound)
		_, err = s.Orders.OrderBySaleUser(ctx, sale.ID, u.ID+1000)
		storeWantCode(t, err, seckill.ENotFound)
		_, err = s.Orders.OrderBySaleUser(ctx, sale.ID+1000, u.ID)
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("Redelivery", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 10)
		users := storeNewUsers(t, s, 3)
		var reqs []seckill.OrderRequest
		for _, u := range users {
			reqs = append(reqs, storeReq(sale.ID, u))
		}
		first := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		// The same messages again, as after a crash between commit and ack.
		again := storeWriteOrders(t, s, reqs, storeNow().Add(time.Hour))
		if diff := cmp.Diff(first, again); diff != "" {
			t.Errorf("redelivered batch (-first +again):\n%s", diff)
		}
		// A new request of a user who holds an order reports that order.
		other := storeReq(sale.ID, users[1])
		res := storeWriteOrders(t, s, []seckill.OrderRequest{other}, storeNow().Add(time.Hour))
		if res[0].Status != seckill.ResultSuccess || res[0].OrderID != first[1].OrderID {
			t.Errorf("new ticket for a held (sale, user) = %+v, want success with order %d", res[0], first[1].OrderID)
		}
		o, err := s.Orders.Order(ctx, first[1].OrderID)
		storeNoErr(t, err)
		if o.OrderNo != reqs[1].Ticket {
			t.Errorf("order number = %q, want the first ticket %q", o.OrderNo, reqs[1].Ticket)
		}
		st := storeStats(t, s, sale.ID)
		if st.Orders != 3 || st.SQLStockLeft != 7 {
			t.Errorf("after redelivery, storeStats = %+v; want 3 orders, 7 left", st)
		}
	})

	t.Run("InBatchDuplicates", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 10)
		users := storeNewUsers(t, s, 2)
		a, b := storeReq(sale.ID, users[0]), storeReq(sale.ID, users[1])
		a2 := storeReq(sale.ID, users[0]) // another ticket, same (sale, user)
		reqs := []seckill.OrderRequest{a, b, a, a2}
		res := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		for i, r := range res {
			if r.Status != seckill.ResultSuccess {
				t.Fatalf("result %d = %+v, want success", i, r)
			}
		}
		if res[2].OrderID != res[0].OrderID || res[3].OrderID != res[0].OrderID {
			t.Errorf("duplicates got orders %d, %d; want %d", res[2].OrderID, res[3].OrderID, res[0].OrderID)
		}
		if res[1].OrderID == res[0].OrderID {
			t.Errorf("two users share order %d", res[0].OrderID)
		}
		st := storeStats(t, s, sale.ID)
		if st.Orders != 2 || st.SQLStockLeft != 8 {
			t.Errorf("storeStats = %+v; want 2 orders, 8 left", st)
		}
	})

	t.Run("PartialSoldOut", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 3)
		users := storeNewUsers(t, s, 5)
		var reqs []seckill.OrderRequest
		for _, u := range users {
			reqs = append(reqs, storeReq(sale.ID, u))
		}
		res := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		for i, r := range res {
			if i < 3 && r.Status != seckill.ResultSuccess {
				t.Errorf("result %d = %+v, want success: earlier requests get the units", i, r)
			}
			if i >= 3 && (r.Status != seckill.ResultFailed || r.Reason != seckill.ESoldOut) {
				t.Errorf("result %d = %+v, want failed sold_out", i, r)
			}
		}
		for _, u := range users[3:] {
			_, err := s.Orders.OrderBySaleUser(ctx, sale.ID, u)
			storeWantCode(t, err, seckill.ENotFound)
		}
		st := storeStats(t, s, sale.ID)
		if st.Orders != 3 || st.SQLStockLeft != 0 {
			t.Errorf("storeStats = %+v; want 3 orders, 0 left", st)
		}
		// Once sold out, a redelivery still reports its order.
		again := storeWriteOrders(t, s, reqs[:1], storeNow().Add(time.Minute))
		if again[0].Status != seckill.ResultSuccess || again[0].OrderID != res[0].OrderID {
			t.Errorf("redelivery after sell-out = %+v, want success with order %d", again[0], res[0].OrderID)
		}
	})

	t.Run("RedeliveryTakesNoUnit", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 2)
		users := storeNewUsers(t, s, 3)
		first := storeWriteOrders(t, s, []seckill.OrderRequest{storeReq(sale.ID, users[0])}, storeNow().Add(time.Minute))
		// One unit left: the redelivered request must not take it from the
		// next buyer in line.
		reqs := []seckill.OrderRequest{storeReq(sale.ID, users[0]), storeReq(sale.ID, users[1]), storeReq(sale.ID, users[2])}
		res := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		if res[0].Status != seckill.ResultSuccess || res[0].OrderID != first[0].OrderID {
			t.Errorf("redelivered = %+v, want success with order %d", res[0], first[0].OrderID)
		}
		if res[1].Status != seckill.ResultSuccess {
			t.Errorf("next buyer = %+v, want success: one unit was left", res[1])
		}
		if res[2].Status != seckill.ResultFailed || res[2].Reason != seckill.ESoldOut {
			t.Errorf("last buyer = %+v, want failed sold_out", res[2])
		}
		wantOrders(t, s, sale.ID, 2, 0)
	})

	t.Run("UnknownSale", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 5)
		u := storeNewUser(t, s)
		reqs := []seckill.OrderRequest{storeReq(sale.ID+1000, u.ID), storeReq(sale.ID, u.ID), storeReq(sale.ID+1000, u.ID)}
		res := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		for _, i := range []int{0, 2} {
			if res[i].Status != seckill.ResultFailed || res[i].Reason != seckill.ENotFound {
				t.Errorf("result %d = %+v, want failed not_found", i, res[i])
			}
		}
		if res[1].Status != seckill.ResultSuccess {
			t.Errorf("result 1 = %+v, want success: the other sale's request is unaffected", res[1])
		}
		_, err := s.Orders.OrderBySaleUser(ctx, sale.ID+1000, u.ID)
		storeWantCode(t, err, seckill.ENotFound)
		wantOrders(t, s, sale.ID, 1, 4)
	})

	t.Run("SeveralSales", func(t *testing.T) {
		s := open(t)
		a, b := storeNewSale(t, s, 1), storeNewSale(t, s, 5)
		users := storeNewUsers(t, s, 3)
		reqs := []seckill.OrderRequest{
			storeReq(b.ID, users[0]), storeReq(a.ID, users[0]), storeReq(a.ID, users[1]),
			storeReq(b.ID, users[1]), storeReq(b.ID, users[2]), storeReq(a.ID, users[2]),
		}
		res := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		var got []string
		for _, r := range res {
			got = append(got, r.Status+r.Reason)
		}
		want := []string{"success", "success", "failedsold_out", "success", "success", "failedsold_out"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("outcomes (-want +got):\n%s", diff)
		}
		wantOrders(t, s, a.ID, 1, 0)
		wantOrders(t, s, b.ID, 3, 2)
	})

	t.Run("PayDeadline", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 5)
		users := storeNewUsers(t, s, 2)
		d1, d2 := storeNow().Add(10*time.Minute), storeNow().Add(20*time.Minute)
		r1 := storeWriteOrders(t, s, []seckill.OrderRequest{storeReq(sale.ID, users[0])}, d1)
		r2 := storeWriteOrders(t, s, []seckill.OrderRequest{storeReq(sale.ID, users[1])}, d2)
		for _, c := range []struct {
			id   int64
			want time.Time
		}{{r1[0].OrderID, d1}, {r2[0].OrderID, d2}} {
			o, err := s.Orders.Order(ctx, c.id)
			storeNoErr(t, err)
			if !o.PayDeadline.Equal(c.want) || o.PaidAt != nil || o.CancelledAt != nil {
				t.Errorf("order %d: deadline %v, paid %v, cancelled %v; want %v, nil, nil", c.id, o.PayDeadline, o.PaidAt, o.CancelledAt, c.want)
			}
		}
	})

	t.Run("OrdersByUserNewestFirst", func(t *testing.T) {
		s := open(t)
		u, other := storeNewUser(t, s), storeNewUser(t, s)
		if got, err := s.Orders.OrdersByUser(ctx, u.ID); err != nil || len(got) != 0 {
			t.Fatalf("OrdersByUser with no orders = %v, %v; want none", got, err)
		}
		var want []int64
		for i := range 3 {
			sale := storeNewSale(t, s, 5)
			r := storeReq(sale.ID, u.ID)
			r.At = storeNow().Add(time.Duration(i) * time.Second)
			res := storeWriteOrders(t, s, []seckill.OrderRequest{r, storeReq(sale.ID, other.ID)}, storeNow().Add(time.Hour))
			want = append([]int64{res[0].OrderID}, want...)
		}
		os, err := s.Orders.OrdersByUser(ctx, u.ID)
		storeNoErr(t, err)
		var got []int64
		for _, o := range os {
			got = append(got, o.ID)
			if o.UserID != u.ID {
				t.Errorf("order %d of user %d listed for user %d", o.ID, o.UserID, u.ID)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("OrdersByUser (-want +got):\n%s", diff)
		}
	})

	t.Run("SaleBuyers", func(t *testing.T) {
		s := open(t)
		sale, other := storeNewSale(t, s, 3), storeNewSale(t, s, 3)
		if got, err := s.Orders.SaleBuyers(ctx, sale.ID); err != nil || len(got) != 0 {
			t.Fatalf("SaleBuyers with no orders = %v, %v; want none", got, err)
		}
		users := storeNewUsers(t, s, 5)
		var reqs []seckill.OrderRequest
		for _, u := range users {
			reqs = append(reqs, storeReq(sale.ID, u))
		}
		reqs = append(reqs, storeReq(other.ID, users[4]))
		storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		got, err := s.Orders.SaleBuyers(ctx, sale.ID)
		storeNoErr(t, err)
		slices.Sort(got)
		if diff := cmp.Diff(users[:3], got); diff != "" {
			t.Errorf("SaleBuyers (-want +got):\n%s", diff)
		}
	})

	t.Run("SaleSnapshot", func(t *testing.T) {
		s := open(t)
		sale, other := storeNewSale(t, s, 3), storeNewSale(t, s, 3)
		left, buyers, err := s.Orders.SaleSnapshot(ctx, sale.ID)
		if err != nil || left != 3 || len(buyers) != 0 {
			t.Fatalf("SaleSnapshot of a new sale = %d, %v, %v; want 3, none, nil", left, buyers, err)
		}
		users := storeNewUsers(t, s, 5)
		var reqs []seckill.OrderRequest
		for _, u := range users {
			reqs = append(reqs, storeReq(sale.ID, u))
		}
		reqs = append(reqs, storeReq(other.ID, users[4]))
		storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		left, buyers, err = s.Orders.SaleSnapshot(ctx, sale.ID)
		storeNoErr(t, err)
		slices.Sort(buyers)
		if left != 0 {
			t.Errorf("SaleSnapshot stock_left = %d, want 0", left)
		}
		if diff := cmp.Diff(users[:3], buyers); diff != "" {
			t.Errorf("SaleSnapshot buyers (-want +got):\n%s", diff)
		}
		_, _, err = s.Orders.SaleSnapshot(ctx, other.ID+1000)
		storeWantCode(t, err, seckill.ENotFound)
	})

	t.Run("FencedTickets", func(t *testing.T) {
		s := open(t)
		sale, other := storeNewSale(t, s, 3), storeNewSale(t, s, 3)
		users := storeNewUsers(t, s, 3)
		if got, err := s.Orders.FencedTickets(ctx, sale.ID); err != nil || len(got) != 0 {
			t.Fatalf("FencedTickets of a new sale = %v, %v; want none", got, err)
		}
		fence := func(sale, user int64, ticket string, want bool) {
			t.Helper()
			got, err := s.Orders.FenceTicket(ctx, sale, user, ticket)
			storeNoErr(t, err)
			if got != want {
				t.Errorf("FenceTicket(sale %d, user %d, %q) = %v, want %v", sale, user, ticket, got, want)
			}
		}
		// Tickets compare byte for byte, as order numbers do; fencing a
		// ticket again is fencing it once.
		fence(sale.ID, users[0], "01M8RGQDSKSAQA23226W", true)
		fence(sale.ID, users[0], "01M8RGQDSKSAQA23226W", true)
		fence(sale.ID, users[1], "01m8rgqdsksaqa23226w", true)
		fence(other.ID, users[0], "01M8RGQDSKSAQA23226X", true)
		// A pair holding an order wins against a fence of any of its
		// tickets, its order's own or another: nothing is recorded.
		held := storeReq(sale.ID, users[2])
		storeWriteOrders(t, s, []seckill.OrderRequest{held}, storeNow().Add(time.Minute))
		fence(sale.ID, users[2], held.Ticket, false)
		fence(sale.ID, users[2], "01M8RGQDSKSAQA23226Y", false)
		// A verdict stands: the user ordering later with another ticket
		// does not undo the fence of the first.
		if res := storeWriteOrders(t, s, []seckill.OrderRequest{storeReq(sale.ID, users[0])}, storeNow().Add(time.Minute)); res[0].Status != seckill.ResultSuccess {
			t.Fatalf("a new ticket of a user whose other ticket is fenced = %+v, want success", res[0])
		}
		fence(sale.ID, users[0], "01M8RGQDSKSAQA23226W", true)
		// A sale that does not exist has no order to write, and keeps
		// nothing.
		fence(other.ID+1000, users[0], "01M8RGQDSKSAQA23226Z", true)

		got, err := s.Orders.FencedTickets(ctx, sale.ID)
		storeNoErr(t, err)
		want := map[string]bool{"01M8RGQDSKSAQA23226W": true, "01m8rgqdsksaqa23226w": true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("FencedTickets (-want +got):\n%s", diff)
		}
		got, err = s.Orders.FencedTickets(ctx, other.ID)
		storeNoErr(t, err)
		if diff := cmp.Diff(map[string]bool{"01M8RGQDSKSAQA23226X": true}, got); diff != "" {
			t.Errorf("FencedTickets of the other sale (-want +got):\n%s", diff)
		}
		if got, err := s.Orders.FencedTickets(ctx, other.ID+1000); err != nil || len(got) != 0 {
			t.Errorf("FencedTickets of no sale = %v, %v; want none", got, err)
		}
	})

	t.Run("FencedRefused", func(t *testing.T) {
		s := open(t)
		sale := storeNewSale(t, s, 5)
		u := storeNewUser(t, s)
		r := storeReq(sale.ID, u.ID)
		storeFence(t, s, r)
		// Refused when it lands late, and again when redelivered.
		for range 2 {
			res := storeWriteOrders(t, s, []seckill.OrderRequest{r}, storeNow().Add(time.Minute))
			if res[0].Status != seckill.ResultFailed || res[0].Reason != seckill.EExpired {
				t.Errorf("fenced request = %+v, want failed expired", res[0])
			}
		}
		_, err := s.Orders.OrderBySaleUser(ctx, sale.ID, u.ID)
		storeWantCode(t, err, seckill.ENotFound)
		wantOrders(t, s, sale.ID, 0, 5)
		// The buyer bought again under another ticket; the fenced request,
		// landing once more, reports that order (the buyer holds one) and
		// takes nothing.
		r2 := storeReq(sale.ID, u.ID)
		bought := storeWriteOrders(t, s, []seckill.OrderRequest{r2}, storeNow().Add(time.Minute))
		if bought[0].Status != seckill.ResultSuccess {
			t.Fatalf("the buyer's new ticket = %+v, want success", bought[0])
		}
		res := storeWriteOrders(t, s, []seckill.OrderRequest{r}, storeNow().Add(time.Minute))
		if res[0].Status != seckill.ResultSuccess || res[0].OrderID != bought[0].OrderID {
			t.Errorf("fenced request of a buyer with order %d = %+v, want that order", bought[0].OrderID, res[0])
		}
		wantOrders(t, s, sale.ID, 1, 4)
	})

	t.Run("FencedBesideAnotherTicket", func(t *testing.T) {
		// A fenced request is no pair's first: the pair's next request,
		// whose ticket is not fenced, is written whichever comes first,
		// and the fenced one takes no unit from it, and reports the
		// order its pair holds after all.
		s := open(t)
		one, many := storeNewSale(t, s, 1), storeNewSale(t, s, 5)
		v, w := storeNewUser(t, s).ID, storeNewUser(t, s).ID
		v1, v2 := storeReq(one.ID, v), storeReq(one.ID, v)
		w1, w2 := storeReq(many.ID, w), storeReq(many.ID, w)
		storeFence(t, s, v1)
		storeFence(t, s, w2)
		res := storeWriteOrders(t, s, []seckill.OrderRequest{v1, v2, v1, w1, w2, w1}, storeNow().Add(time.Minute))
		var got []string
		for _, r := range res {
			got = append(got, r.Status+r.Reason)
		}
		want := []string{"success", "success", "success", "success", "success", "success"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("outcomes of [V:T1 fenced, V:T2, V:T1, W:T1, W:T2 fenced, W:T1] (-want +got):\n%s", diff)
		}
		for _, c := range [][2]int{{0, 1}, {2, 1}, {4, 3}, {5, 3}} {
			if res[c[0]].OrderID != res[c[1]].OrderID {
				t.Errorf("request %d got order %d, want %d (its pair's)", c[0], res[c[0]].OrderID, res[c[1]].OrderID)
			}
		}
		for _, c := range []struct {
			sale, user int64
			ticket     string
		}{{one.ID, v, v2.Ticket}, {many.ID, w, w1.Ticket}} {
			o, err := s.Orders.OrderBySaleUser(ctx, c.sale, c.user)
			storeNoErr(t, err)
			if o.OrderNo != c.ticket {
				t.Errorf("sale %d user %d: order number %q, want the unfenced ticket %q", c.sale, c.user, o.OrderNo, c.ticket)
			}
		}
		wantOrders(t, s, one.ID, 1, 0)
		wantOrders(t, s, many.ID, 1, 4)
	})

	t.Run("FencedAmongSales", func(t *testing.T) {
		s := open(t)
		a, b, c := storeNewSale(t, s, 1), storeNewSale(t, s, 2), storeNewSale(t, s, 3)
		u := storeNewUsers(t, s, 4)
		reqs := []seckill.OrderRequest{
			storeReq(a.ID, u[0]),      // 0 fenced
			storeReq(a.ID, u[1]),      // 1 a's only unit: the fenced request took none
			storeReq(b.ID, u[1]),      // 2 fenced: reports request 6's order
			storeReq(c.ID, u[0]),      // 3
			storeReq(b.ID, u[0]),      // 4
			storeReq(b.ID, u[2]),      // 5 fenced
			storeReq(b.ID, u[1]),      // 6 u[1]'s other ticket: b's second unit
			storeReq(a.ID, u[2]),      // 7 sold out
			storeReq(c.ID+1000, u[0]), // 8 no such sale
			storeReq(b.ID, u[3]),      // 9 sold out
			{},                        // 10, below: request 3 again
			storeReq(c.ID, u[3]),      // 11
		}
		reqs[10] = reqs[3]
		for _, i := range []int{0, 2, 5} {
			storeFence(t, s, reqs[i])
		}
		want := []string{"failedexpired", "success", "success", "success", "success", "failedexpired",
			"success", "failedsold_out", "failednot_found", "failedsold_out", "success", "success"}
		res := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		var got []string
		for _, r := range res {
			got = append(got, r.Status+r.Reason)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("outcomes (-want +got):\n%s", diff)
		}
		if res[10].OrderID != res[3].OrderID {
			t.Errorf("duplicate of request 3 got order %d, want %d", res[10].OrderID, res[3].OrderID)
		}
		if res[2].OrderID != res[6].OrderID {
			t.Errorf("fenced request 2 got order %d, want request 6's %d", res[2].OrderID, res[6].OrderID)
		}
		// Redelivered whole, the batch gets the same answers.
		again := storeWriteOrders(t, s, reqs, storeNow().Add(time.Minute))
		if diff := cmp.Diff(res, again); diff != "" {
			t.Errorf("redelivered batch (-first +again):\n%s", diff)
		}
		for _, w := range []struct {
			sale         *seckill.Sale
			orders, left int64
		}{{a, 1, 0}, {b, 2, 0}, {c, 2, 1}} {
			wantOrders(t, s, w.sale.ID, w.orders, w.left)
		}
	})
}

// storeFence fences r's ticket, which must win: its (sale, user) holds no
// order.
func storeFence(t *testing.T, s Stores, r seckill.OrderRequest) {
	t.Helper()
	fenced, err := s.Orders.FenceTicket(context.Background(), r.SaleID, r.UserID, r.Ticket)
	storeNoErr(t, err)
	if !fenced {
		t.Fatalf("FenceTicket(%+v) = false, want true: the pair holds no order", r)
	}
}

// testFenceRacesWriteOrders races FenceTicket of a ticket against
// WriteOrders of its request, for many users at once, in batches of
// several users across two sales with stock for all: for each user exactly
// one side wins (the ticket is an order, or the fence answered true), and
// what each side answered agrees with what the store kept.
func testFenceRacesWriteOrders(t *testing.T, s Stores) {
	ctx := context.Background()
	const (
		rounds    = 8
		perRound  = 24
		batchSize = 4
	)
	users := storeNewUsers(t, s, rounds*perRound)
	sales := []*seckill.Sale{storeNewSale(t, s, int64(len(users))), storeNewSale(t, s, int64(len(users)))}
	orders := map[int64]int64{}                                           // sale → orders the winners kept
	fences := map[int64]map[string]bool{sales[0].ID: {}, sales[1].ID: {}} // sale → tickets answered fenced
	for round := range rounds {
		reqs := make([]seckill.OrderRequest, perRound)
		for i := range reqs {
			reqs[i] = storeReq(sales[i%2].ID, users[round*perRound+i])
		}
		fenced := make([]bool, perRound)
		written := make([]seckill.OrderResult, perRound)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, r := range reqs {
			wg.Go(func() {
				<-start
				ok, err := s.Orders.FenceTicket(ctx, r.SaleID, r.UserID, r.Ticket)
				if err != nil {
					t.Errorf("FenceTicket: %v", err)
				}
				fenced[i] = ok
			})
		}
		// Batch k holds the requests i with i % batches == k: users of
		// both sales, fenced at any moment of its transaction.
		batches := perRound / batchSize
		for k := range batches {
			wg.Go(func() {
				var idx []int
				var batch []seckill.OrderRequest
				for i := k; i < perRound; i += batches {
					idx, batch = append(idx, i), append(batch, reqs[i])
				}
				<-start
				res, err := s.Orders.WriteOrders(ctx, batch, storeNow().Add(time.Minute))
				if err != nil {
					t.Errorf("WriteOrders: %v", err)
					return
				}
				if storeCheckResults(t, batch, res) {
					for j, i := range idx {
						written[i] = res[j]
					}
				}
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		for i, r := range reqs {
			o, err := s.Orders.OrderBySaleUser(ctx, r.SaleID, r.UserID)
			hasOrder := err == nil
			if !hasOrder && seckill.ErrorCode(err) != seckill.ENotFound {
				t.Fatalf("OrderBySaleUser: %v", err)
			}
			switch {
			case hasOrder && fenced[i]:
				t.Errorf("round %d user %d: the fence answered true and order %d was written", round, r.UserID, o.ID)
			case !hasOrder && !fenced[i]:
				t.Errorf("round %d user %d: the fence answered false and no order was written", round, r.UserID)
			case hasOrder:
				orders[r.SaleID]++
				if w := written[i]; w.Status != seckill.ResultSuccess || w.OrderID != o.ID || o.OrderNo != r.Ticket {
					t.Errorf("round %d user %d: order %d (%q) kept, WriteOrders answered %+v", round, r.UserID, o.ID, o.OrderNo, w)
				}
			default:
				fences[r.SaleID][r.Ticket] = true
				if w := written[i]; w.Status != seckill.ResultFailed || w.Reason != seckill.EExpired {
					t.Errorf("round %d user %d: fenced, WriteOrders answered %+v; want failed expired", round, r.UserID, w)
				}
			}
		}
		// A fence that lost recorded nothing.
		for _, sale := range sales {
			got, err := s.Orders.FencedTickets(ctx, sale.ID)
			storeNoErr(t, err)
			if diff := cmp.Diff(fences[sale.ID], got); diff != "" {
				t.Errorf("round %d, sale %d: FencedTickets (-answered fenced +recorded):\n%s", round, sale.ID, diff)
			}
		}
	}
	var won int64
	for _, sale := range sales {
		st := storeStats(t, s, sale.ID)
		if st.Orders != orders[sale.ID] {
			t.Errorf("sale %d: %d orders, %d kept by the winners", sale.ID, st.Orders, orders[sale.ID])
		}
		won += st.Orders
	}
	t.Logf("%d rounds of %d races: %d orders, %d fences", rounds, perRound, won, int64(rounds*perRound)-won)
}

// testSnapshotUnderWrites reads SaleSnapshot while writers commit batches
// of new buyers: every snapshot must show stock_left and buyers of the same
// moment, stock - stock_left = buyers (no order is cancelled here). Read
// apart, a batch committed between the two reads breaks it.
func testSnapshotUnderWrites(t *testing.T, s Stores) {
	ctx := context.Background()
	const (
		writers   = 4
		batches   = 15
		batchSize = 5
	)
	users := storeNewUsers(t, s, writers*batches*batchSize)
	sale := storeNewSale(t, s, int64(len(users)))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				reqs := make([]seckill.OrderRequest, batchSize)
				for i := range reqs {
					reqs[i] = storeReq(sale.ID, users[(w*batches+b)*batchSize+i])
				}
				if _, err := s.Orders.WriteOrders(ctx, reqs, storeNow().Add(time.Minute)); err != nil {
					t.Errorf("WriteOrders: %v", err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	// The writers are waited for before any return: they report to t.
	defer func() { <-done }()
	reads := 0
	for last := false; !last; reads++ {
		select {
		case <-done:
			last = true // one more read, after every commit
		default:
		}
		left, buyers, err := s.Orders.SaleSnapshot(ctx, sale.ID)
		if err != nil {
			t.Errorf("SaleSnapshot: %v", err)
			return
		}
		if sold := sale.Stock - left; sold != int64(len(buyers)) {
			t.Errorf("read %d: stock %d - stock_left %d = %d sold, but %d buyers: not one snapshot", reads, sale.Stock, left, sold, len(buyers))
			return
		}
		if last && left != 0 {
			t.Errorf("after every write: stock_left %d, want 0", left)
		}
	}
	t.Logf("%d snapshots during %d batches", reads, writers*batches)
}

// testConcurrentWriteOrders runs many writers at once with overlapping
// users, as several order-writer instances with redeliveries would, against
// a sale with less stock than buyers and one with more, and checks I1, I2
// and I4.
func testConcurrentWriteOrders(t *testing.T, s Stores) {
	ctx := context.Background()
	const (
		writers   = 8
		batches   = 12
		batchSize = 25
		nUsers    = 150
	)
	users := storeNewUsers(t, s, nUsers)
	small, large := storeNewSale(t, s, 40), storeNewSale(t, s, 1000)
	stock := map[int64]int64{small.ID: small.Stock, large.ID: large.Stock}

	var (
		mu      sync.Mutex
		orderOf = map[[2]int64]int64{} // (sale, user) → order reported
		asked   = map[[2]int64]bool{}
	)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for range batches {
				reqs := make([]seckill.OrderRequest, batchSize)
				for i := range reqs {
					sale := small.ID
					if rng.IntN(2) == 0 {
						sale = large.ID
					}
					reqs[i] = storeReq(sale, users[rng.IntN(len(users))])
				}
				res, err := s.Orders.WriteOrders(ctx, reqs, storeNow().Add(time.Minute))
				if err != nil {
					t.Errorf("WriteOrders: %v", err)
					return
				}
				if !storeCheckResults(t, reqs, res) {
					return
				}
				mu.Lock()
				for i, r := range res {
					k := [2]int64{r.SaleID, r.UserID}
					asked[k] = true
					switch {
					case r.Status == seckill.ResultSuccess:
						if prev, ok := orderOf[k]; ok && prev != r.OrderID {
							t.Errorf("(sale %d, user %d) got orders %d and %d", k[0], k[1], prev, r.OrderID)
						}
						orderOf[k] = r.OrderID
					case r.Reason != seckill.ESoldOut:
						t.Errorf("request %d: %+v; want success or sold_out", i, r)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	for sale, stock := range stock {
		var distinct, reported int64
		for k := range asked {
			if k[0] == sale {
				distinct++
			}
		}
		for k := range orderOf {
			if k[0] == sale {
				reported++
			}
		}
		want := min(stock, distinct)
		st := storeStats(t, s, sale)
		if st.Orders != want || reported != want {
			t.Errorf("sale %d (stock %d, %d buyers): %d orders in SQL, %d reported; want %d", sale, stock, distinct, st.Orders, reported, want)
		}
		buyers, err := s.Orders.SaleBuyers(ctx, sale)
		storeNoErr(t, err)
		seen := map[int64]bool{}
		for _, u := range buyers {
			if seen[u] {
				t.Errorf("sale %d: user %d holds two orders", sale, u)
			}
			seen[u] = true
			if _, ok := orderOf[[2]int64{sale, u}]; !ok {
				t.Errorf("sale %d: user %d holds an order no result reported", sale, u)
			}
		}
		for k, id := range orderOf {
			if k[0] != sale {
				continue
			}
			o, err := s.Orders.OrderBySaleUser(ctx, sale, k[1])
			if err != nil || o.ID != id {
				t.Errorf("sale %d user %d: reported order %d, store has %v (%v)", sale, k[1], id, o, err)
			}
		}
	}
	if t.Failed() {
		t.Logf("%d writers × %d batches × %d requests", writers, batches, batchSize)
	}
}

// storeCmpTimes compares times as instants, so a store may hand back another
// *time.Location for the same UTC instant; every time the suite stores is
// already at millisecond precision.
var storeCmpTimes = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
