package payment

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// ClientConfig tells a Client which provider it talks to and as whom.
type ClientConfig struct {
	// GatewayURL is the provider's API endpoint: the sandbox's
	// http://HOST/sandbox/gateway.do, or Alipay's
	// https://openapi.alipay.com/gateway.do.
	GatewayURL string
	// AppID is our merchant id at the provider.
	AppID string
	// PrivateKey is ours: it signs requests.
	PrivateKey *rsa.PrivateKey
	// ProviderKey is the provider's public key: it checks answers and
	// notifications.
	ProviderKey *rsa.PublicKey
	// HTTPClient defaults to one with a 10 s timeout that holds at most
	// MaxGatewayConns connections to the gateway.
	HTTPClient *http.Client
	// Now is the clock of the requests' timestamps (default time.Now).
	Now func() time.Time
}

// MaxGatewayConns bounds the connections a Client holds to its gateway:
// further calls wait for one (within their timeout). Without it every
// call of a burst opened its own connection, each a file descriptor; with
// the sandbox served by the shop's own listener, a flood of pays while
// that listener was full held hundreds, until the process ran out and
// the embedded queue's store failed (found by review).
const MaxGatewayConns = 32

// Client is a Provider that talks to a provider's gateway over HTTP.
type Client struct {
	cfg ClientConfig
}

var _ Provider = (*Client)(nil)

// NewClient checks cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.GatewayURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("payment: gateway URL %q: want http(s)://host/path", cfg.GatewayURL)
	}
	if cfg.AppID == "" || cfg.PrivateKey == nil || cfg.ProviderKey == nil {
		return nil, errors.New("payment: the client needs an app id, our private key and the provider's public key")
	}
	if cfg.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxConnsPerHost, t.MaxIdleConnsPerHost = MaxGatewayConns, MaxGatewayConns
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: t}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg}, nil
}

// orderNoRE is what the provider takes as out_trade_no.
var orderNoRE = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)

// CreatePayment implements Provider (alipay.trade.precreate). The
// expiry is checked against the client's clock (ClientConfig.Now); the
// provider compares it with its own.
func (c *Client) CreatePayment(ctx context.Context, req PaymentRequest) (Payment, error) {
	if !orderNoRE.MatchString(req.OrderNo) {
		return Payment{}, fmt.Errorf("payment: order number %q: want 1–64 of [0-9A-Za-z_-]", req.OrderNo)
	}
	if req.AmountCents <= 0 || req.AmountCents > MaxAmountCents {
		return Payment{}, fmt.Errorf("payment: amount %d cents out of range", req.AmountCents)
	}
	if req.Subject == "" || len(req.Subject) > 256 {
		return Payment{}, errors.New("payment: subject must be 1–256 bytes")
	}
	if u, err := url.Parse(req.NotifyURL); err != nil || !u.IsAbs() {
		return Payment{}, fmt.Errorf("payment: notify URL %q is not absolute", req.NotifyURL)
	}
	biz := BizContent{OutTradeNo: req.OrderNo, TotalAmount: FormatYuan(req.AmountCents), Subject: req.Subject}
	if !req.ExpiresAt.IsZero() {
		// Down to the second the provider takes: the trade must not
		// outlive the time asked for, not even by a fraction.
		biz.TimeExpire = req.ExpiresAt.Truncate(time.Second).In(China).Format(TimeLayout)
	}
	extra := url.Values{"notify_url": {req.NotifyURL}}
	if req.ReturnURL != "" {
		extra.Set("return_url", req.ReturnURL)
	}
	r, err := c.call(ctx, MethodCreate, biz, extra)
	if err != nil {
		return Payment{}, err
	}
	if r.QRCode == "" {
		return Payment{}, fmt.Errorf("payment: %s: answer has no pay URL", MethodCreate)
	}
	id := r.TradeNo
	if id == "" {
		id = req.OrderNo
	}
	return Payment{ID: id, PayURL: r.QRCode}, nil
}

// VerifyNotification implements Provider with ParseNotification and our
// app id and the provider's key.
func (c *Client) VerifyNotification(form url.Values) (Notification, error) {
	return ParseNotification(c.cfg.ProviderKey, c.cfg.AppID, form)
}

// QueryPayment implements Provider (alipay.trade.query).
func (c *Client) QueryPayment(ctx context.Context, orderNo string) (Trade, error) {
	r, err := c.call(ctx, MethodQuery, BizContent{OutTradeNo: orderNo}, nil)
	if err != nil {
		return Trade{}, err
	}
	t := Trade{OutTradeNo: r.OutTradeNo, TradeNo: r.TradeNo, Status: TradeStatus(r.TradeStatus)}
	if t.OutTradeNo != orderNo || !t.Status.valid() {
		return Trade{}, fmt.Errorf("payment: %s: answer for %q with status %q", MethodQuery, t.OutTradeNo, t.Status)
	}
	if t.AmountCents, err = ParseYuan(r.TotalAmount); err != nil {
		return Trade{}, fmt.Errorf("payment: %s: %w", MethodQuery, err)
	}
	// The pay time is for the record: one missing or malformed leaves it
	// zero (the shop then records when it learned of the payment) rather
	// than hide a payment the status says was made.
	if paid, err := time.ParseInLocation(TimeLayout, r.SendPayDate, China); err == nil {
		t.PaidAt = paid
	}
	return t, nil
}

// Refund implements Provider (alipay.trade.refund, with the order number
// as out_request_no: one refund per order, so a repeat is a no-op).
func (c *Client) Refund(ctx context.Context, orderNo, tradeNo string, amountCents int64, reason string) error {
	if amountCents <= 0 || amountCents > MaxAmountCents {
		return fmt.Errorf("payment: refund of %d cents out of range", amountCents)
	}
	_, err := c.call(ctx, MethodRefund, BizContent{
		OutTradeNo: orderNo, TradeNo: tradeNo, RefundAmount: FormatYuan(amountCents),
		RefundReason: reason, OutRequestNo: orderNo,
	}, nil)
	return err
}

// ClosePayment implements Provider (alipay.trade.close).
func (c *Client) ClosePayment(ctx context.Context, orderNo string) error {
	_, err := c.call(ctx, MethodClose, BizContent{OutTradeNo: orderNo}, nil)
	return err
}

// call signs and sends one request and returns the provider's verified
// reply if it is a success, or the error its sub-code stands for.
func (c *Client) call(ctx context.Context, method string, biz BizContent, extra url.Values) (Reply, error) {
	bc, err := json.Marshal(biz)
	if err != nil {
		return Reply{}, err
	}
	form := url.Values{
		"app_id":      {c.cfg.AppID},
		"method":      {method},
		"format":      {"JSON"},
		"charset":     {"utf-8"},
		"sign_type":   {SignType},
		"timestamp":   {c.cfg.Now().In(China).Format(TimeLayout)},
		"version":     {"1.0"},
		"biz_content": {string(bc)},
	}
	for k, v := range extra {
		form[k] = v
	}
	sign, err := SignRequest(c.cfg.PrivateKey, form)
	if err != nil {
		return Reply{}, err
	}
	form.Set("sign", sign)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.GatewayURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Reply{}, err
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	resp, err := c.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return Reply{}, fmt.Errorf("payment: %s: %w", method, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Reply{}, fmt.Errorf("payment: %s: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, fmt.Errorf("payment: %s: provider answered %s", method, resp.Status)
	}
	r, err := UnmarshalReply(c.cfg.ProviderKey, method, body)
	if err != nil {
		return Reply{}, err
	}
	if r.Code == CodeSuccess {
		return r, nil
	}
	switch r.SubCode {
	case SubTradeNotExist:
		return r, ErrNotFound
	case SubTradeHasSuccess:
		return r, ErrTradePaid
	case SubTradeHasClose:
		return r, ErrTradeClosed
	case SubTradeStatusError:
		switch method {
		case MethodRefund:
			return r, ErrNotRefundable
		case MethodClose: // only a paid trade cannot be closed
			return r, ErrTradePaid
		}
	}
	return r, &ProviderError{Method: method, Code: r.Code, Msg: r.Msg, SubCode: r.SubCode, SubMsg: r.SubMsg}
}
