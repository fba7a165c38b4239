package payment_test

import (
	"errors"
	"net/url"
	"testing"

	"seckill/payment"
)

// TestReturnFieldsAreNoNotification: the provider signs the fields it adds
// to the buyer's return URL with the key and rule of its notifications,
// and the buyer sees them. Posted to the notify URL as they are, they must
// not pass for a notification: they have no trade_status, notify_id or
// notify_time, and adding one breaks the signature. This guard is what
// keeps a buyer's return URL from being proof of payment (noted by
// review: the two kinds of message share one canonical form).
func TestReturnFieldsAreNoNotification(t *testing.T) {
	provider := testKey(t, "provider")
	ret := url.Values{
		"app_id":       {"2021000000000001"},
		"method":       {"alipay.trade.page.pay.return"},
		"out_trade_no": {"T1"},
		"trade_no":     {"2026010100000000000000000001"},
		"total_amount": {"12.34"},
		"timestamp":    {"2026-01-01 10:00:00"},
	}
	sign, err := payment.Sign(provider, ret)
	if err != nil {
		t.Fatal(err)
	}
	ret.Set("sign", sign)
	ret.Set("sign_type", payment.SignType)
	if err := payment.Verify(&provider.PublicKey, ret); err != nil {
		t.Fatalf("the return fields do not verify as signed: %v", err)
	}
	if _, err := payment.ParseNotification(&provider.PublicKey, "2021000000000001", ret); !errors.Is(err, payment.ErrBadSignature) {
		t.Fatalf("the signed return fields as a notification: %v, want ErrBadSignature", err)
	}
	for _, f := range []url.Values{
		{"trade_status": {string(payment.TradeSuccess)}},
		{"trade_status": {string(payment.TradeSuccess)}, "notify_id": {"n1"}, "notify_time": {"2026-01-01 10:00:01"}},
	} {
		forged := url.Values{}
		for k, v := range ret {
			forged[k] = v
		}
		for k, v := range f {
			forged[k] = v
		}
		if _, err := payment.ParseNotification(&provider.PublicKey, "2021000000000001", forged); !errors.Is(err, payment.ErrBadSignature) {
			t.Errorf("return fields with %v added: %v, want ErrBadSignature", f, err)
		}
	}
}
