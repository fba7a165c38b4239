package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"seckill"
	"seckill/httpapi"
)

// TestOrderLifecycleErrors walks the error paths of cancel, pay and the
// provider's notification over HTTP.
func TestOrderLifecycleErrors(t *testing.T) {
	s := newStack(t, options{sqlite: true})
	sale := s.activeSale(2, false)
	tokens, _ := s.buyers(2)
	for _, tok := range tokens {
		want(t, s.purchase(tok, sale, s.path(tok, sale)), 202, "")
	}
	s.settle(sale)
	r := s.do("GET", "/api/orders", tokens[0], nil)
	want(t, r, 200, "")
	id := int64(r.json(t)["orders"].([]any)[0].(map[string]any)["id"].(float64))
	cancel := fmt.Sprintf("/api/orders/%d/cancel", id)
	pay := fmt.Sprintf("/api/orders/%d/pay", id)

	want(t, s.do("POST", cancel, "", nil), 401, "unauthenticated")
	want(t, s.do("POST", cancel, tokens[1], nil), 404, "not_found")
	want(t, s.do("POST", pay, tokens[1], nil), 404, "not_found")
	want(t, s.do("POST", "/api/orders/999999/cancel", tokens[0], nil), 404, "not_found")
	r = s.do("POST", cancel, tokens[0], nil)
	want(t, r, 200, "")
	if st := r.json(t)["order"].(map[string]any)["status"]; st != "cancelled" {
		t.Fatalf("cancelled order's status %v", st)
	}
	want(t, s.do("POST", cancel, tokens[0], nil), 409, "not_cancellable")
	want(t, s.do("POST", pay, tokens[0], nil), 409, "not_payable")

	// The unit is back: the admin's numbers agree.
	st := s.settle(sale)
	if st.Cancelled != 1 || st.SQLStockLeft != 1 || st.GateLeft != 1 || st.ReturnsUnapplied != 0 {
		t.Fatalf("stats after a cancel: %+v", st)
	}

	notify := func(body string) response {
		return s.do("POST", "/api/payments/notify", "", body)
	}
	want(t, notify("out_trade_no=x&trade_no=y&total_amount=9.99&trade_status=TRADE_SUCCESS&sign_type=RSA2&sign=Zm9v"), 400, "bad_signature")
	want(t, notify("%zz"), 400, "bad_signature")
	want(t, notify("a="+strings.Repeat("b", 20<<10)), 413, "too_large")
}

// TestAdminRefund walks POST /api/admin/orders/{id}/refund: admins only,
// same-origin only, a paid order only; the refunded unit is back on sale.
func TestAdminRefund(t *testing.T) {
	s := newStack(t, options{sqlite: true})
	sale := s.activeSale(2, false)
	tokens, _ := s.buyers(2)
	var ids []int64
	for _, tok := range tokens {
		want(t, s.purchase(tok, sale, s.path(tok, sale)), 202, "")
	}
	s.settle(sale)
	for _, tok := range tokens {
		r := s.do("GET", "/api/orders", tok, nil)
		want(t, r, 200, "")
		ids = append(ids, int64(r.json(t)["orders"].([]any)[0].(map[string]any)["id"].(float64)))
	}
	// The first order is paid, as a verified notification pays it.
	lc := s.db.(seckill.OrderLifecycle)
	paid, err := s.db.Order(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := lc.ApplyPayment(context.Background(), seckill.Payment{
		OrderNo: paid.OrderNo, TradeNo: "TR-http", AmountCents: paid.PriceCents, TradeStatus: "TRADE_SUCCESS", PaidAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	refund := func(id int64) string { return fmt.Sprintf("/api/admin/orders/%d/refund", id) }

	want(t, s.do("POST", refund(ids[0]), "", nil), 401, "unauthenticated")
	want(t, s.do("POST", refund(ids[0]), tokens[0], nil), 403, "forbidden")
	want(t, s.do("GET", refund(ids[0]), s.admin, nil), 405, "method_not_allowed")
	want(t, s.do("POST", "/api/admin/orders/x/refund", s.admin, nil), 404, "not_found")
	want(t, s.do("POST", refund(ids[1]+1000), s.admin, nil), 404, "not_found")
	want(t, s.do("POST", refund(ids[1]), s.admin, nil), 409, "not_cancellable") // pending
	// The admin's cookie from another site is refused.
	foreign := http.Header{"Cookie": {httpapi.CookieName + "=" + s.admin}, "Origin": {"https://evil.example"}}
	want(t, s.doH("POST", refund(ids[0]), "", nil, foreign), 403, "forbidden")
	if st := s.settle(sale); st.Paid != 1 || st.Refunded != 0 || st.GateLeft != 0 {
		t.Fatalf("refused refunds changed the sale: %+v", st)
	}

	r := s.do("POST", refund(ids[0]), s.admin, nil)
	want(t, r, 200, "")
	o := r.json(t)["order"].(map[string]any)
	if o["status"] != "refunded" || o["refunded_at"] == nil || o["paid_at"] == nil || int64(o["id"].(float64)) != ids[0] {
		t.Fatalf("refunded order %v", o)
	}
	want(t, s.do("POST", refund(ids[0]), s.admin, nil), 409, "not_cancellable") // again
	want(t, s.do("POST", fmt.Sprintf("/api/orders/%d/cancel", ids[0]), tokens[0], nil), 409, "not_cancellable")
	// The buyer sees it refunded; the admin's numbers agree: the unit is
	// back in SQL and the gate, the money due back (no provider here).
	r = s.do("GET", fmt.Sprintf("/api/orders/%d", ids[0]), tokens[0], nil)
	want(t, r, 200, "")
	if st := r.json(t)["order"].(map[string]any)["status"]; st != "refunded" {
		t.Fatalf("the buyer sees status %v", st)
	}
	st := s.settle(sale)
	if st.Refunded != 1 || st.Paid != 0 || st.SQLStockLeft != 1 || st.GateLeft != 1 || st.RefundsDue != 1 || st.ReturnsUnapplied != 0 {
		t.Fatalf("stats after a refund: %+v", st)
	}
	s.checkInvariants(sale, st)
	// The refunded buyer stays a buyer; someone else gets the unit.
	want(t, s.purchase(tokens[0], sale, s.path(tokens[0], sale)), 409, "duplicate")
	others, _ := s.buyers(1)
	want(t, s.purchase(others[0], sale, s.path(others[0], sale)), 202, "")
}

// failingBody is a request body whose read fails as a connection's does
// when the server's read timeout passes mid-body: the error names the
// listener's address and the client's.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) {
	return 0, fmt.Errorf("read tcp 10.0.3.7:8080->198.51.100.9:51234: i/o timeout")
}

// TestNotifyReadErrorHidesAddresses: a notification whose body cannot be
// read (a client that trickles it past --read-timeout) is 400 invalid with
// a fixed message. The message used to carry the read's error, which
// names the server's own (private) address and port.
func TestNotifyReadErrorHidesAddresses(t *testing.T) {
	s := newStack(t, options{})
	req := httptest.NewRequest("POST", "/api/payments/notify", failingBody{})
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	r := response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	want(t, r, 400, "invalid")
	if b := string(r.Body); strings.Contains(b, "10.0.3.7") || strings.Contains(b, "tcp") {
		t.Fatalf("answer %s names the connection", b)
	}
}
