package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
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
