package payment

import (
	"crypto/rsa"
	"fmt"
	"net/url"
	"time"
)

// China is the time zone of the provider's timestamps (notify_time,
// timestamp): Alipay writes them as China Standard Time without a zone.
var China = time.FixedZone("CST", 8*3600)

// TimeLayout is the layout of notify_time and timestamp.
const TimeLayout = "2006-01-02 15:04:05"

// notifyFields must be present, each once and non-empty, in a notification.
var notifyFields = []string{"out_trade_no", "trade_no", "total_amount", "trade_status", "notify_time", "notify_id", "app_id", "sign"}

// ParseNotification verifies a notification form: one value per field,
// sign_type RSA2, the signature with the provider's key pub, app_id equal
// to appID (our merchant id: a notification signed for another merchant of
// the same provider is not ours), and every field of Notification present
// and well formed (total_amount with exactly two decimals, a known
// trade_status, notify_time in TimeLayout). Every failure is an
// ErrBadSignature. It checks the signature first, so nothing of an
// unsigned form is trusted, not even to explain the failure.
func ParseNotification(pub *rsa.PublicKey, appID string, form url.Values) (Notification, error) {
	if err := Verify(pub, form); err != nil {
		return Notification{}, err
	}
	for _, f := range notifyFields {
		if form.Get(f) == "" {
			return Notification{}, fmt.Errorf("%w: no %s", ErrBadSignature, f)
		}
	}
	n := Notification{
		OutTradeNo:  form.Get("out_trade_no"),
		TradeNo:     form.Get("trade_no"),
		TradeStatus: TradeStatus(form.Get("trade_status")),
		NotifyID:    form.Get("notify_id"),
		AppID:       form.Get("app_id"),
	}
	if n.AppID != appID {
		return Notification{}, fmt.Errorf("%w: app_id %q is not ours", ErrBadSignature, n.AppID)
	}
	if !n.TradeStatus.valid() {
		return Notification{}, fmt.Errorf("%w: unknown trade_status %q", ErrBadSignature, n.TradeStatus)
	}
	var err error
	if n.TotalAmountCents, err = ParseYuan(form.Get("total_amount")); err != nil {
		return Notification{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if n.TotalAmountCents <= 0 {
		return Notification{}, fmt.Errorf("%w: total_amount is zero", ErrBadSignature)
	}
	if n.NotifyTime, err = time.ParseInLocation(TimeLayout, form.Get("notify_time"), China); err != nil {
		return Notification{}, fmt.Errorf("%w: notify_time %q", ErrBadSignature, form.Get("notify_time"))
	}
	return n, nil
}

// NotificationForm is the signed form the provider POSTs for n (the
// sandbox's notifier uses it; tests of a notify handler can too).
func NotificationForm(key *rsa.PrivateKey, n Notification) (url.Values, error) {
	form := url.Values{
		"out_trade_no": {n.OutTradeNo},
		"trade_no":     {n.TradeNo},
		"total_amount": {FormatYuan(n.TotalAmountCents)},
		"trade_status": {string(n.TradeStatus)},
		"notify_time":  {n.NotifyTime.In(China).Format(TimeLayout)},
		"notify_id":    {n.NotifyID},
		"app_id":       {n.AppID},
	}
	sign, err := Sign(key, form)
	if err != nil {
		return nil, err
	}
	form.Set("sign_type", SignType)
	form.Set("sign", sign)
	return form, nil
}
