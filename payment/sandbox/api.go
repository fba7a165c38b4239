package sandbox

import (
	"context"
	"crypto/rsa"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"seckill/payment"
)

// gateway answers the merchant's API requests. Like the real gateway it
// always answers 200 with a JSON reply: signed if the request was the
// merchant's, unsigned if not.
func (s *Sandbox) gateway(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	form := r.Form
	method := form.Get("method")
	fail := func(key *rsa.PrivateKey, code, sub, msg string) {
		s.reply(w, key, method, payment.Reply{Code: code, Msg: codeMsg(code), SubCode: sub, SubMsg: msg})
	}
	if form.Get("app_id") != s.cfg.AppID {
		fail(nil, payment.CodeInvalidParameter, payment.SubInvalidAppID, "unknown app_id")
		return
	}
	mk, err := s.merchantKey()
	if err != nil {
		// The reason (a file path, an OS error) goes to the log only: the
		// caller is not authenticated yet.
		s.log.Warn("sandbox: cannot check a request", "err", err)
		fail(nil, payment.CodeInvalidParameter, payment.SubInvalidSignature, "the sandbox has no merchant key yet")
		return
	}
	if err := payment.VerifyRequest(mk, form); err != nil {
		// Said from the sandbox's side: the shop's request does not check
		// with the merchant's public key it holds (a shop signing with
		// another key: an instance with a merchant key of its own).
		fail(nil, payment.CodeInvalidParameter, payment.SubInvalidSignature,
			"the request is not signed by the merchant key the sandbox holds ("+strings.TrimPrefix(err.Error(), payment.ErrBadSignature.Error()+": ")+")")
		return
	}
	var biz payment.BizContent
	if err := json.Unmarshal([]byte(form.Get("biz_content")), &biz); err != nil {
		fail(s.key, payment.CodeInvalidParameter, payment.SubInvalidParameter, "biz_content: "+err.Error())
		return
	}
	var rep payment.Reply
	switch method {
	case payment.MethodCreate:
		rep, err = s.create(r, biz, form.Get("notify_url"), form.Get("return_url"))
	case payment.MethodQuery:
		rep, err = s.query(r.Context(), biz)
	case payment.MethodRefund:
		rep, err = s.refund(r.Context(), biz)
	case payment.MethodClose:
		rep, err = s.closeTrade(r.Context(), biz)
	default:
		fail(s.key, payment.CodeInvalidParameter, "isv.invalid-method", "unknown method "+method)
		return
	}
	if err != nil {
		s.log.Error("sandbox: "+method, "err", err)
		fail(s.key, payment.CodeUnavailable, "aop.unknown-error", "try again")
		return
	}
	s.reply(w, s.key, method, rep)
}

func (s *Sandbox) reply(w http.ResponseWriter, key *rsa.PrivateKey, method string, rep payment.Reply) {
	b, err := payment.MarshalReply(key, method, rep)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	_, _ = w.Write(b)
}

func codeMsg(code string) string {
	switch code {
	case payment.CodeSuccess:
		return "Success"
	case payment.CodeUnavailable:
		return "Service Currently Unavailable"
	case payment.CodeInvalidParameter:
		return "Invalid Arguments"
	}
	return "Business Failed"
}

// refuse is a business failure (40004) with a sub-code.
func refuse(sub, msg string) payment.Reply {
	return payment.Reply{Code: payment.CodeBusinessFailed, Msg: codeMsg(payment.CodeBusinessFailed), SubCode: sub, SubMsg: msg}
}

func ok(p *trade) payment.Reply {
	return payment.Reply{Code: payment.CodeSuccess, Msg: "Success", OutTradeNo: p.OutTradeNo, TradeNo: p.TradeNo}
}

var orderNoRE = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)

func absoluteHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// maxExpiry is how far ahead a time_expire may be: the real provider
// keeps an unpaid trade open for at most 15 days.
const maxExpiry = 15 * 24 * time.Hour

// create registers a payment, or returns the waiting one of the same
// order and amount while it is unexpired (it keeps the expiry it was
// created with). A time_expire (TimeLayout, China time) is at most
// maxExpiry ahead; one not in the future on the sandbox's clock makes no
// payment and is answered as a closed one (a payment born expired is
// closed: the shop tells its buyer the order can no longer be paid).
func (s *Sandbox) create(r *http.Request, biz payment.BizContent, notifyURL, returnURL string) (payment.Reply, error) {
	var expires time.Time
	var experr error
	if biz.TimeExpire != "" {
		expires, experr = time.ParseInLocation(payment.TimeLayout, biz.TimeExpire, payment.China)
	}
	cents, err := payment.ParseYuan(biz.TotalAmount)
	switch {
	case !orderNoRE.MatchString(biz.OutTradeNo):
		return refuse(payment.SubInvalidParameter, "out_trade_no"), nil
	case err != nil || cents <= 0:
		return refuse(payment.SubInvalidParameter, "total_amount"), nil
	case biz.Subject == "" || len(biz.Subject) > 256:
		return refuse(payment.SubInvalidParameter, "subject"), nil
	case !absoluteHTTP(notifyURL):
		return refuse(payment.SubInvalidParameter, "notify_url"), nil
	case returnURL != "" && !absoluteHTTP(returnURL):
		return refuse(payment.SubInvalidParameter, "return_url"), nil
	case experr != nil || expires.After(s.cfg.Now().Add(maxExpiry)):
		return refuse(payment.SubInvalidParameter, "time_expire"), nil
	}
	var p *trade
	var rep payment.Reply
	var now time.Time
	err = s.store.inTx(r.Context(), func(tx *sql.Tx) error {
		now = s.cfg.Now() // under the store's write lock, as settle's
		old, err := s.store.byOrderNo(r.Context(), tx, biz.OutTradeNo)
		switch {
		case errors.Is(err, errNoPayment):
		case err != nil:
			return err
		case old.Status == string(payment.TradeSuccess):
			rep = refuse(payment.SubTradeHasSuccess, "already paid")
			return nil
		case old.Status == string(payment.TradeClosed) || old.expired(now):
			rep = refuse(payment.SubTradeHasClose, "closed")
			return nil
		case old.AmountCents != cents:
			rep = refuse(payment.SubDiscordantRepeat, "another amount for this out_trade_no")
			return nil
		default:
			p = old
			return nil
		}
		if !expires.IsZero() && !now.Before(expires) {
			rep = refuse(payment.SubTradeHasClose, "time_expire has passed")
			return nil
		}
		p = &trade{
			TradeNo: newTradeNo(now), OutTradeNo: biz.OutTradeNo, AmountCents: cents,
			Subject: biz.Subject, NotifyURL: notifyURL, ReturnURL: returnURL,
			Status: string(payment.TradeWaiting), CreatedAt: now, ExpiresAt: expires,
		}
		return insertPayment(r.Context(), tx, p)
	})
	if err != nil || p == nil {
		return rep, err
	}
	if !p.ExpiresAt.IsZero() {
		s.wake() // the notifier closes it when it expires
	}
	rep = ok(p)
	rep.QRCode = s.baseURL(r) + "/sandbox/pay/" + p.TradeNo
	return rep, nil
}

// baseURL is where buyers reach the sandbox.
func (s *Sandbox) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// find looks a payment up by order number, and by trade number if given
// (both must match).
func (s *Sandbox) find(ctx context.Context, q querier, biz payment.BizContent) (*trade, error) {
	var p *trade
	var err error
	if biz.OutTradeNo != "" {
		p, err = s.store.byOrderNo(ctx, q, biz.OutTradeNo)
	} else {
		p, err = s.store.byTradeNo(ctx, q, biz.TradeNo)
	}
	if err == nil && biz.TradeNo != "" && p.TradeNo != biz.TradeNo {
		err = errNoPayment
	}
	return p, err
}

// queryStatus is the status a query shows at now: a payment refunded in
// full is closed, as at the real provider, and so is one past its expiry
// (the notifier records that close when it comes round).
func queryStatus(p *trade, now time.Time) payment.TradeStatus {
	if p.Status == string(payment.TradeSuccess) && p.RefundCents == p.AmountCents || p.expired(now) {
		return payment.TradeClosed
	}
	return payment.TradeStatus(p.Status)
}

func (s *Sandbox) query(ctx context.Context, biz payment.BizContent) (payment.Reply, error) {
	// The clock before the row: a click commits a payment only on a clock
	// before the expiry, so a row still waiting at a time past the expiry
	// is closed for good. Read after the row, the clock could pass the
	// expiry after a click committed, and a paid trade be answered closed.
	now := s.cfg.Now()
	p, err := s.find(ctx, s.store.db, biz)
	if errors.Is(err, errNoPayment) {
		return refuse(payment.SubTradeNotExist, "no such trade"), nil
	}
	if err != nil {
		return payment.Reply{}, err
	}
	rep := ok(p)
	st := queryStatus(p, now)
	rep.TradeStatus = string(st)
	rep.TotalAmount = payment.FormatYuan(p.AmountCents)
	if (st == payment.TradeSuccess || st == payment.TradeFinished) && !p.DoneAt.IsZero() {
		rep.SendPayDate = p.DoneAt.In(payment.China).Format(payment.TimeLayout)
	}
	return rep, nil
}

// refund records the one refund of an order; a repeat of it succeeds
// without moving money (fund_change N).
func (s *Sandbox) refund(ctx context.Context, biz payment.BizContent) (payment.Reply, error) {
	cents, perr := payment.ParseYuan(biz.RefundAmount)
	if perr != nil || cents <= 0 {
		return refuse(payment.SubInvalidParameter, "refund_amount"), nil
	}
	var rep payment.Reply
	err := s.store.inTx(ctx, func(tx *sql.Tx) error {
		p, err := s.find(ctx, tx, biz)
		switch {
		case errors.Is(err, errNoPayment):
			rep = refuse(payment.SubTradeNotExist, "no such trade")
			return nil
		case err != nil:
			return err
		case p.Status != string(payment.TradeSuccess):
			rep = refuse(payment.SubTradeStatusError, "the trade was not paid")
			return nil
		case p.RefundCents != 0 && p.RefundCents != cents:
			rep = refuse(payment.SubDiscordantRepeat, "this order was refunded another amount")
			return nil
		case cents > p.AmountCents:
			rep = refuse(payment.SubRefundAmount, "more than was paid")
			return nil
		}
		rep = ok(p)
		rep.RefundFee = payment.FormatYuan(cents)
		rep.FundChange = "N"
		if p.RefundCents == 0 {
			rep.FundChange = "Y"
			return recordRefund(ctx, tx, p.TradeNo, cents, biz.RefundReason, s.cfg.Now())
		}
		return nil
	})
	return rep, err
}

// closeTrade closes a waiting payment (and notifies TRADE_CLOSED); a
// closed one stays closed; a paid one cannot be closed.
func (s *Sandbox) closeTrade(ctx context.Context, biz payment.BizContent) (payment.Reply, error) {
	p, err := s.find(ctx, s.store.db, biz)
	if errors.Is(err, errNoPayment) {
		return refuse(payment.SubTradeNotExist, "no such trade"), nil
	}
	if err != nil {
		return payment.Reply{}, err
	}
	moved, _, err := s.settle(ctx, payment.TradeClosed, p)
	if err != nil {
		return payment.Reply{}, err
	}
	if moved == 0 {
		if p, err = s.store.byTradeNo(ctx, s.store.db, p.TradeNo); err != nil {
			return payment.Reply{}, err
		}
		if p.Status != string(payment.TradeClosed) {
			return refuse(payment.SubTradeStatusError, "the trade was paid"), nil
		}
	}
	return ok(p), nil
}

// settle moves the waiting payments ps to paid or closed and records the
// notification each owes, in one transaction (one sync of the store
// however many there are); it returns how many moved (those that no
// longer waited, a double click or a close racing the buyer, did not) and
// the status they moved to. The time of the move is read once the
// transaction holds the store's write lock, and a payment past its expiry
// by that time is closed instead of paid: a click that read the clock
// before the expiry and then waited for the store past it (while a query
// answered TRADE_CLOSED, and the shop cancelled the order) takes no
// money.
func (s *Sandbox) settle(ctx context.Context, to payment.TradeStatus, ps ...*trade) (int, payment.TradeStatus, error) {
	var moved int
	got := to
	err := s.store.inTx(ctx, func(tx *sql.Tx) error {
		moved, got = 0, to
		now := s.cfg.Now()
		for _, p := range ps {
			st := to
			if st == payment.TradeSuccess && p.pastExpiry(now) {
				st, got = payment.TradeClosed, payment.TradeClosed
			}
			ok, err := finish(ctx, tx, p.TradeNo, string(st), now)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			moved++
			form, err := payment.NotificationForm(s.key, payment.Notification{
				OutTradeNo: p.OutTradeNo, TradeNo: p.TradeNo, TotalAmountCents: p.AmountCents,
				TradeStatus: st, NotifyID: newNotifyID(), NotifyTime: now, AppID: s.cfg.AppID,
			})
			if err != nil {
				return err
			}
			if err := insertNotification(ctx, tx, notification{
				NotifyID: form.Get("notify_id"), TradeNo: p.TradeNo, URL: p.NotifyURL, Body: form.Encode(),
			}, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, to, err
	}
	if moved > 0 {
		s.wake()
	}
	return moved, got, nil
}

// wake tells the notifier there is something new to send.
func (s *Sandbox) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
