package contract

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// storeWantCode fails t unless err carries the application error code want.
func storeWantCode(t *testing.T, err error, want string) {
	t.Helper()
	if got := seckill.ErrorCode(err); got != want {
		t.Fatalf("error = %v (code %q), want code %q", err, got, want)
	}
}

// storeNoErr fails t if err is not nil.
func storeNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// storeNow is the current time at millisecond precision in UTC: what every
// store must give back unchanged.
func storeNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

var storePhoneSeq atomic.Int64

// storeNewUser creates a buyer with a fresh phone number.
func storeNewUser(t *testing.T, s Stores) *seckill.User {
	t.Helper()
	u := &seckill.User{
		Phone:        fmt.Sprintf("1%010d", storePhoneSeq.Add(1)),
		Nickname:     "buyer",
		Role:         seckill.RoleBuyer,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
	}
	storeNoErr(t, s.Users.CreateUser(context.Background(), u))
	return u
}

// storeNewUsers creates n buyers and returns their IDs.
func storeNewUsers(t *testing.T, s Stores, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = storeNewUser(t, s).ID
	}
	return ids
}

// storeNewSale creates an active sale with the given stock.
func storeNewSale(t *testing.T, s Stores, stock int64) *seckill.Sale {
	t.Helper()
	now := storeNow()
	sale := &seckill.Sale{
		Name:               "phone",
		Description:        "a phone at a tenth of its price",
		ImageURL:           "/img/phone.png",
		PriceCents:         9900,
		OriginalPriceCents: 99900,
		Stock:              stock,
		StartsAt:           now.Add(-time.Minute),
		EndsAt:             now.Add(time.Hour),
	}
	storeNoErr(t, s.Sales.CreateSale(context.Background(), sale))
	return sale
}

var storeTicketSeq atomic.Int64

// storeReq returns a request of user for sale with a fresh ticket.
func storeReq(sale, user int64) seckill.OrderRequest {
	return seckill.OrderRequest{
		SaleID:     sale,
		UserID:     user,
		Ticket:     fmt.Sprintf("T%d-%d-%d", sale, user, storeTicketSeq.Add(1)),
		PriceCents: 9900,
		At:         storeNow(),
	}
}

// storeWriteOrders calls WriteOrders and checks the shape of its answer: one
// result per request, in order, with the request's sale, user and ticket,
// and a status of success (with an order) or failed (with a reason).
func storeWriteOrders(t *testing.T, s Stores, reqs []seckill.OrderRequest, payBy time.Time) []seckill.OrderResult {
	t.Helper()
	res, err := s.Orders.WriteOrders(context.Background(), reqs, payBy)
	storeNoErr(t, err)
	storeCheckResults(t, reqs, res)
	return res
}

// storeCheckResults reports whether res answers reqs one by one; it is safe to
// call from any goroutine.
func storeCheckResults(t *testing.T, reqs []seckill.OrderRequest, res []seckill.OrderResult) bool {
	t.Helper()
	if len(res) != len(reqs) {
		t.Errorf("%d results for %d requests", len(res), len(reqs))
		return false
	}
	ok := true
	for i, r := range res {
		q := reqs[i]
		if r.SaleID != q.SaleID || r.UserID != q.UserID || r.Ticket != q.Ticket {
			t.Errorf("result %d is for (%d, %d, %q), want (%d, %d, %q)", i, r.SaleID, r.UserID, r.Ticket, q.SaleID, q.UserID, q.Ticket)
			ok = false
		}
		switch {
		case r.Status == seckill.ResultSuccess && r.OrderID != 0 && r.Reason == "":
		case r.Status == seckill.ResultFailed && r.OrderID == 0 && r.Reason != "":
		default:
			t.Errorf("result %d = %+v: want success with an order or failed with a reason", i, r)
			ok = false
		}
	}
	return ok
}

// storeStats returns the sale's storeStats and checks the ledger and stock
// invariants for a sale whose orders are all pending, as the suite's are.
// wantOrders checks the sale's number of orders and its stock left in SQL.
func wantOrders(t *testing.T, s Stores, sale, orders, left int64) {
	t.Helper()
	if st := storeStats(t, s, sale); st.Orders != orders || st.SQLStockLeft != left {
		t.Errorf("sale %d: storeStats = %+v; want %d orders, %d left", sale, st, orders, left)
	}
}

func storeStats(t *testing.T, s Stores, sale int64) *seckill.SaleStats {
	t.Helper()
	st, err := s.Sales.SaleStats(context.Background(), sale)
	storeNoErr(t, err)
	if st.LedgerSum != st.SQLStockLeft {
		t.Errorf("sale %d: ledger sum %d != stock_left %d", sale, st.LedgerSum, st.SQLStockLeft)
	}
	// Every order written here is pending: each holds one unit (I4).
	if st.Orders != st.Pending || st.Orders+st.SQLStockLeft != st.Stock {
		t.Errorf("sale %d: %d orders (%d pending) + stock_left %d != stock %d", sale, st.Orders, st.Pending, st.SQLStockLeft, st.Stock)
	}
	return st
}
