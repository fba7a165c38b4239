package sandbox

import (
	_ "embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"seckill/payment"
)

//go:embed pay.html
var payHTML string

var payTmpl = template.Must(template.New("pay").Parse(payHTML))

type pageData struct {
	Missing                 bool
	TradeNo, OrderNo        string
	Subject, Amount, Status string
	ExpiresAt               string // China time, "" for none
	Waiting, Paid, Expired  bool
	Declined                bool // the Fail button was pressed: the payment waits still
	ReturnURL               string
}

// payPage shows a payment with Pay and Fail buttons while it waits.
func (s *Sandbox) payPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, r.PathValue("id"), false)
}

func (s *Sandbox) render(w http.ResponseWriter, r *http.Request, tradeNo string, declined bool) {
	p, err := s.store.byTradeNo(r.Context(), s.store.db, tradeNo)
	d := pageData{TradeNo: tradeNo}
	status := http.StatusOK
	switch {
	case errors.Is(err, errNoPayment):
		d.Missing, status = true, http.StatusNotFound
	case err != nil:
		s.log.Error("sandbox: pay page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	default:
		now := s.cfg.Now()
		d.OrderNo, d.Subject, d.Amount = p.OutTradeNo, p.Subject, payment.FormatYuan(p.AmountCents)
		d.Status = string(queryStatus(p, now))
		d.Paid = p.Status == string(payment.TradeSuccess)
		d.Expired = !d.Paid && !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt)
		d.Waiting = p.Status == string(payment.TradeWaiting) && !d.Expired
		d.Declined = declined && d.Waiting
		if !p.ExpiresAt.IsZero() {
			d.ExpiresAt = p.ExpiresAt.In(payment.China).Format(payment.TimeLayout)
		}
		d.ReturnURL = p.ReturnURL
	}
	h := w.Header()
	// No scripts at all, and nothing of the page may be framed.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if err := payTmpl.Execute(w, d); err != nil {
		s.log.Error("sandbox: pay page", "err", err)
	}
}

// payPost marks a waiting payment paid (result=pay) and sends the buyer
// to its return URL; the notification is on disk before the buyer learns
// anything. Fail (result=fail) is a declined attempt, as a refused card
// is at a real provider: nothing changes, nothing is notified, and the
// page says so and offers Pay again until the expiry (a buyer whose
// first try failed must not lose the order to it). A payment that no
// longer waits (a second click) is shown as it is. A payment past its
// expiry takes no money whatever the button: it is closed (TRADE_CLOSED,
// notified like any close) and shown closed.
func (s *Sandbox) payPost(w http.ResponseWriter, r *http.Request) {
	if !s.ownPage(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	var to payment.TradeStatus
	switch r.PostForm.Get("result") {
	case "pay":
		to = payment.TradeSuccess
	case "fail":
		to = payment.TradeClosed
	default:
		http.Error(w, "result must be pay or fail", http.StatusBadRequest)
		return
	}
	tradeNo := r.PathValue("id")
	p, err := s.store.byTradeNo(r.Context(), s.store.db, tradeNo)
	if errors.Is(err, errNoPayment) {
		s.render(w, r, tradeNo, false)
		return
	}
	if err != nil {
		s.log.Error("sandbox: pay", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if to == payment.TradeClosed && p.Status == string(payment.TradeWaiting) && !p.expired(s.cfg.Now()) {
		s.log.Info("sandbox: payment declined", "out_trade_no", p.OutTradeNo, "trade_no", p.TradeNo)
		s.render(w, r, tradeNo, true)
		return
	}
	// settle closes the trade instead if it is past its expiry by the
	// time the store takes the click (Fail then closes it, as Pay does).
	moved, got, err := s.settle(r.Context(), to, p)
	if err != nil {
		s.log.Error("sandbox: pay", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// Closed by the click itself (past the expiry). A Pay that the store
	// took just before the expiry is paid, however late the clock reads
	// now: its buyer goes back to the shop.
	expired := got == payment.TradeClosed && (to == payment.TradeSuccess || p.expired(s.cfg.Now()))
	if expired && moved == 1 {
		s.log.Info("sandbox: payment expired", "out_trade_no", p.OutTradeNo, "trade_no", p.TradeNo)
	}
	if moved == 0 || expired || p.ReturnURL == "" {
		s.render(w, r, tradeNo, false)
		return
	}
	s.log.Info("sandbox: payment "+string(to), "out_trade_no", p.OutTradeNo, "trade_no", p.TradeNo)
	http.Redirect(w, r, s.returnURL(p, to), http.StatusSeeOther)
}

// returnURL is the payment's return URL with, after a success, the
// signed fields the real provider adds (the shop may show them, but only
// the notification is proof of payment).
func (s *Sandbox) returnURL(p *trade, to payment.TradeStatus) string {
	u, err := url.Parse(p.ReturnURL)
	if err != nil || to != payment.TradeSuccess {
		return p.ReturnURL
	}
	q := u.Query()
	f := url.Values{
		"app_id":       {s.cfg.AppID},
		"method":       {"alipay.trade.page.pay.return"},
		"out_trade_no": {p.OutTradeNo},
		"trade_no":     {p.TradeNo},
		"total_amount": {payment.FormatYuan(p.AmountCents)},
		"timestamp":    {s.cfg.Now().In(payment.China).Format(payment.TimeLayout)},
	}
	sign, err := payment.Sign(s.key, f)
	if err != nil {
		return p.ReturnURL
	}
	for k, v := range f {
		q[k] = v
	}
	q.Set("sign_type", payment.SignType)
	q.Set("sign", sign)
	u.RawQuery = q.Encode()
	return u.String()
}

// ownPage reports whether a POST to the pay page may have come from the
// page itself: not marked cross-site, and its Origin, when it has one,
// is this host (the request's Host, or that of Config.PublicURL). A
// browser's click on the page carries its own origin; another site's form
// that posts here (it would need the trade number, 64 random bits) does
// not (found by review: the pay POST was the one unsafe route on the
// shop's origin without the Origin rule of the API). "null" never passes.
// A request without Origin (curl, a server) passes, as on the API.
func (s *Sandbox) ownPage(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" among them
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	pub, err := url.Parse(s.cfg.PublicURL)
	return s.cfg.PublicURL != "" && err == nil && strings.EqualFold(u.Scheme+"://"+u.Host, pub.Scheme+"://"+pub.Host)
}
