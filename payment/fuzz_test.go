package payment_test

import (
	"net/url"
	"testing"
	"time"

	"seckill/payment"
)

// FuzzParseNotification feeds notify bodies (as the HTTP layer would parse
// them) to ParseNotification: it must never panic, and whatever it accepts
// must be a form the provider signed, with a positive amount that formats
// back to the field it came from. Run it bounded:
//
//	go test -run='^$' -fuzz='^FuzzParseNotification$' -fuzztime=20000x ./payment/
func FuzzParseNotification(f *testing.F) {
	key := testKey(f, "provider")
	good, err := payment.NotificationForm(key, payment.Notification{
		OutTradeNo: "T1", TradeNo: "2026", TotalAmountCents: 1234, TradeStatus: payment.TradeSuccess,
		NotifyID: "n1", NotifyTime: time.Date(2026, 1, 1, 12, 0, 0, 0, payment.China), AppID: "app",
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Encode())
	f.Add(good.Encode() + "&sign=x")
	f.Add(good.Encode() + "&total_amount=0.01")
	f.Add("out_trade_no=T1&total_amount=1e3&sign=AAAA")
	f.Add("sign_type=RSA2&sign_type=RSA")
	f.Add("%zz=1&;=&&==")
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 8<<10 {
			return // the notify handler caps bodies far below this
		}
		form, err := url.ParseQuery(body)
		if err != nil {
			return // the HTTP layer answers 400 before we see it
		}
		n, err := payment.ParseNotification(&key.PublicKey, "app", form)
		if err != nil {
			return
		}
		if err := payment.Verify(&key.PublicKey, form); err != nil {
			t.Fatalf("accepted a form that does not verify: %v", err)
		}
		if n.TotalAmountCents <= 0 || payment.FormatYuan(n.TotalAmountCents) != form.Get("total_amount") {
			t.Fatalf("amount %d from %q", n.TotalAmountCents, form.Get("total_amount"))
		}
		if n.AppID != "app" || n.OutTradeNo == "" || n.TradeNo == "" || n.NotifyID == "" {
			t.Fatalf("accepted %+v", n)
		}
	})
}
