package payment_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
)

// vectorForm is a notification as the provider sends it, before signing.
func vectorForm() url.Values {
	return url.Values{
		"out_trade_no": {"T20260101000001"},
		"trade_no":     {"2026010122001400000000000001"},
		"total_amount": {"12.34"},
		"trade_status": {"TRADE_SUCCESS"},
		"notify_time":  {"2026-01-01 12:00:00"},
		"notify_id":    {"ac05099524730693a8b330c5ecf72da9"},
		"app_id":       {"2021000000000001"},
		"subject":      {"Phone X & case=1"}, // raw in the content, not escaped
		"buyer_id":     {""},                 // empty: not signed
	}
}

const vectorContent = "app_id=2021000000000001&notify_id=ac05099524730693a8b330c5ecf72da9" +
	"&notify_time=2026-01-01 12:00:00&out_trade_no=T20260101000001&subject=Phone X & case=1" +
	"&total_amount=12.34&trade_no=2026010122001400000000000001&trade_status=TRADE_SUCCESS"

// vectorSign is RSA2 of vectorContent with testdata/provider.pem. PKCS #1
// v1.5 is deterministic, so it never changes; OpenSSL gives the same:
//
//	printf '%s' "$vectorContent" | openssl dgst -sha256 -sign testdata/provider.pem | base64 -w0
const vectorSign = "JrMb3gktgqa1QoXQl39Un8KahsLTW2igAGVKkBk1kwRae0a4Y4MYVfyNcEwS" +
	"AEeJtcWbXtatGAaUGvzOeLbwk/Kju9hQ4opZADIbREy/sKwJViX/R9ujRk6nhFT8C0k/nvJj/I7WK4nU7liYAISOiJ6BZAJ0M9tLLE/eBikMmnM450mJDrCM" +
	"QSXXsAmT4+e0UrVY/W13eKDQO7J8G9AbF4rsgXSGEWDdVo+H/IIB94lUOs/m7LA9hlyXmRkhC5KC7NQ76NT4khVLYfplXJbs55HP0uBGJ5vapSetYi4x7XX7" +
	"5KmMrLqCukGukqLgb/TNHZb8ghxGy0V8I0C7HVcEvg=="

func TestContentVector(t *testing.T) {
	f := vectorForm()
	f.Set("sign", "whatever")
	f.Set("sign_type", "RSA2")
	got, err := payment.Content(f)
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorContent {
		t.Fatalf("content\n got %s\nwant %s", got, vectorContent)
	}
	// A request signs sign_type too.
	got, err = payment.RequestContent(url.Values{"b": {"2"}, "a": {"1"}, "sign_type": {"RSA2"}, "sign": {"x"}})
	if err != nil || got != "a=1&b=2&sign_type=RSA2" {
		t.Fatalf("request content = %q, %v", got, err)
	}
}

func TestSignVector(t *testing.T) {
	key := testKey(t, "provider")
	sign, err := payment.Sign(key, vectorForm())
	if err != nil {
		t.Fatal(err)
	}
	if sign != vectorSign {
		t.Fatalf("sign = %s\nwant %s", sign, vectorSign)
	}
	f := vectorForm()
	f.Set("sign", sign)
	f.Set("sign_type", "RSA2")
	if err := payment.Verify(&key.PublicKey, f); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	provider, other := testKey(t, "provider"), testKey(t, "other")
	signed := func() url.Values {
		f := vectorForm()
		s, err := payment.Sign(provider, f)
		if err != nil {
			t.Fatal(err)
		}
		f.Set("sign", s)
		f.Set("sign_type", "RSA2")
		return f
	}
	cases := []struct {
		name   string
		change func(url.Values)
	}{
		{"tampered amount", func(f url.Values) { f.Set("total_amount", "0.01") }},
		{"tampered order", func(f url.Values) { f.Set("out_trade_no", "T2") }},
		{"added field", func(f url.Values) { f.Set("refund_fee", "12.34") }},
		{"dropped field", func(f url.Values) { f.Del("notify_id") }},
		{"missing sign", func(f url.Values) { f.Del("sign") }},
		{"empty sign", func(f url.Values) { f.Set("sign", "") }},
		{"sign not base64", func(f url.Values) { f.Set("sign", "%%%") }},
		{"sign twice", func(f url.Values) { f.Add("sign", f.Get("sign")) }},
		{"field twice", func(f url.Values) { f.Add("total_amount", "0.01") }},
		{"sign_type RSA", func(f url.Values) { f.Set("sign_type", "RSA") }},
		{"signed by another key", func(f url.Values) {
			f.Del("sign")
			s, _ := payment.Sign(other, f)
			f.Set("sign", s)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := signed()
			c.change(f)
			err := payment.Verify(&provider.PublicKey, f)
			if !errors.Is(err, payment.ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
			if code := seckill.ErrorCode(err); code != seckill.EBadSignature {
				t.Fatalf("code %q, want %q", code, seckill.EBadSignature)
			}
		})
	}
	// Removing sign_type changes nothing: it is not signed.
	f := signed()
	f.Del("sign_type")
	if err := payment.Verify(&provider.PublicKey, f); err != nil {
		t.Fatalf("without sign_type: %v", err)
	}
}

func TestParseNotification(t *testing.T) {
	provider, other := testKey(t, "provider"), testKey(t, "other")
	base := payment.Notification{
		OutTradeNo: "T1", TradeNo: "2026", TotalAmountCents: 1234, TradeStatus: payment.TradeSuccess,
		NotifyID: "n1", NotifyTime: time.Date(2026, 1, 1, 12, 0, 0, 0, payment.China), AppID: "app",
	}
	form, err := payment.NotificationForm(provider, base)
	if err != nil {
		t.Fatal(err)
	}
	if got := form.Get("total_amount"); got != "12.34" {
		t.Fatalf("total_amount %q", got)
	}
	n, err := payment.ParseNotification(&provider.PublicKey, "app", form)
	if err != nil {
		t.Fatal(err)
	}
	if !n.NotifyTime.Equal(base.NotifyTime) {
		t.Fatalf("notify time %v, want %v", n.NotifyTime, base.NotifyTime)
	}
	n.NotifyTime = base.NotifyTime
	if n != base {
		t.Fatalf("got %+v\nwant %+v", n, base)
	}
	if err := payment.CheckAmount(n, 1234); err != nil {
		t.Fatal(err)
	}
	if err := payment.CheckAmount(n, 1235); !errors.Is(err, payment.ErrAmountMismatch) || seckill.ErrorCode(err) != seckill.EAmountMismatch {
		t.Fatalf("CheckAmount = %v, want amount_mismatch", err)
	}

	// Well signed, still refused.
	resign := func(change func(*payment.Notification), raw func(url.Values)) url.Values {
		n := base
		if change != nil {
			change(&n)
		}
		f, err := payment.NotificationForm(provider, n)
		if err != nil {
			t.Fatal(err)
		}
		if raw != nil {
			raw(f)
			f.Del("sign")
			s, err := payment.Sign(provider, f)
			if err != nil {
				t.Fatal(err)
			}
			f.Set("sign", s)
		}
		return f
	}
	cases := map[string]url.Values{
		"wrong app_id":      resign(func(n *payment.Notification) { n.AppID = "someone-else" }, nil),
		"no trade_no":       resign(func(n *payment.Notification) { n.TradeNo = "" }, nil),
		"no notify_id":      resign(func(n *payment.Notification) { n.NotifyID = "" }, nil),
		"unknown status":    resign(func(n *payment.Notification) { n.TradeStatus = "TRADE_MAYBE" }, nil),
		"zero amount":       resign(func(n *payment.Notification) { n.TotalAmountCents = 0 }, nil),
		"one decimal":       resign(nil, func(f url.Values) { f.Set("total_amount", "12.3") }),
		"float amount":      resign(nil, func(f url.Values) { f.Set("total_amount", "1e3") }),
		"bad notify_time":   resign(nil, func(f url.Values) { f.Set("notify_time", "2026-01-01T12:00:00Z") }),
		"no total_amount":   resign(nil, func(f url.Values) { f.Del("total_amount") }),
		"other key":         func() url.Values { f, _ := payment.NotificationForm(other, base); return f }(),
		"unsigned":          func() url.Values { f := resign(nil, nil); f.Del("sign"); return f }(),
		"tampered, correct": func() url.Values { f := resign(nil, nil); f.Set("total_amount", "1.00"); return f }(),
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := payment.ParseNotification(&provider.PublicKey, "app", f)
			if !errors.Is(err, payment.ErrBadSignature) {
				t.Fatalf("ParseNotification = %v, want ErrBadSignature", err)
			}
		})
	}
}
