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
		s.log.Warn("sandbox: cannot check a request", "err", err)
		fail(nil, payment.CodeInvalidParameter, payment.SubInvalidSignature, "the sandbox has no merchant key: "+err.Error())
		return
	}
	if err := payment.VerifyRequest(mk, form); err != nil {
		fail(nil, payment.CodeInvalidParameter, payment.SubInvalidSignature, err.Error())
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

// create registers a payment, or returns the waiting one of the same
// order and amount.
func (s *Sandbox) create(r *http.Request, biz payment.BizContent, notifyURL, returnURL string) (payment.Reply, error) {
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
	}
	var p *trade
	var rep payment.Reply
	err = s.store.inTx(r.Context(), func(tx *sql.Tx) error {
		old, err := s.store.byOrderNo(r.Context(), tx, biz.OutTradeNo)
		switch {
		case errors.Is(err, errNoPayment):
		case err != nil:
			return err
		case old.Status == string(payment.TradeSuccess):
			rep = refuse(payment.SubTradeHasSuccess, "already paid")
			return nil
		case old.Status == string(payment.TradeClosed):
			rep = refuse(payment.SubTradeHasClose, "closed")
			return nil
		case old.AmountCents != cents:
			rep = refuse(payment.SubDiscordantRepeat, "another amount for this out_trade_no")
			return nil
		default:
			p = old
			return nil
		}
		p = &trade{
			TradeNo: newTradeNo(s.cfg.Now()), OutTradeNo: biz.OutTradeNo, AmountCents: cents,
			Subject: biz.Subject, NotifyURL: notifyURL, ReturnURL: returnURL,
			Status: string(payment.TradeWaiting), CreatedAt: s.cfg.Now(),
		}
		return insertPayment(r.Context(), tx, p)
	})
	if err != nil || p == nil {
		return rep, err
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

// queryStatus is the status a query shows: a payment refunded in full is
// closed, as at the real provider.
func queryStatus(p *trade) payment.TradeStatus {
	if p.Status == string(payment.TradeSuccess) && p.RefundCents == p.AmountCents {
		return payment.TradeClosed
	}
	return payment.TradeStatus(p.Status)
}

func (s *Sandbox) query(ctx context.Context, biz payment.BizContent) (payment.Reply, error) {
	p, err := s.find(ctx, s.store.db, biz)
	if errors.Is(err, errNoPayment) {
		return refuse(payment.SubTradeNotExist, "no such trade"), nil
	}
	if err != nil {
		return payment.Reply{}, err
	}
	rep := ok(p)
	rep.TradeStatus = string(queryStatus(p))
	rep.TotalAmount = payment.FormatYuan(p.AmountCents)
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
	moved, err := s.settle(ctx, p, payment.TradeClosed)
	if err != nil {
		return payment.Reply{}, err
	}
	if !moved {
		if p, err = s.store.byTradeNo(ctx, s.store.db, p.TradeNo); err != nil {
			return payment.Reply{}, err
		}
		if p.Status != string(payment.TradeClosed) {
			return refuse(payment.SubTradeStatusError, "the trade was paid"), nil
		}
	}
	return ok(p), nil
}

// settle moves a waiting payment to paid or closed and records the
// notification it owes, in one transaction; false if it was not waiting.
func (s *Sandbox) settle(ctx context.Context, p *trade, to payment.TradeStatus) (bool, error) {
	now := s.cfg.Now()
	form, err := payment.NotificationForm(s.key, payment.Notification{
		OutTradeNo: p.OutTradeNo, TradeNo: p.TradeNo, TotalAmountCents: p.AmountCents,
		TradeStatus: to, NotifyID: newNotifyID(), NotifyTime: now, AppID: s.cfg.AppID,
	})
	if err != nil {
		return false, err
	}
	var moved bool
	err = s.store.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if moved, err = finish(ctx, tx, p.TradeNo, string(to), now); err != nil || !moved {
			return err
		}
		return insertNotification(ctx, tx, notification{
			NotifyID: form.Get("notify_id"), TradeNo: p.TradeNo, URL: p.NotifyURL, Body: form.Encode(),
		}, now)
	})
	if moved {
		s.wake()
	}
	return moved, err
}

// wake tells the notifier there is something new to send.
func (s *Sandbox) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
