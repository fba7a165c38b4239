package sandbox_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"seckill/payment"
	"seckill/payment/sandbox"
)

// testdata/merchant.pem and other.pem are throwaway keys generated for
// these tests; they protect nothing.
func testKey(t *testing.T, name string) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	k, err := payment.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clock is a fake clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// shop is a test merchant: it records every notification it gets and
// answers what answer says.
type shop struct {
	srv    *httptest.Server
	mu     sync.Mutex
	forms  []url.Values
	answer func(n int, form url.Values) string // n counts from 1
	got    chan url.Values
}

func newShop(t *testing.T, answer func(n int, form url.Values) string) *shop {
	t.Helper()
	s := &shop{answer: answer, got: make(chan url.Values, 100)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/notify" {
			http.NotFound(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		s.forms = append(s.forms, r.PostForm)
		n := len(s.forms)
		s.mu.Unlock()
		s.got <- r.PostForm
		io.WriteString(w, s.answer(n, r.PostForm))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *shop) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.forms) }

// env is a sandbox served over HTTP and a merchant client for it.
type env struct {
	sb     *sandbox.Sandbox
	srv    *httptest.Server
	client *payment.Client
	clock  *clock
	dir    string
}

func newEnv(t *testing.T, dir string, cfg sandbox.Config) *env {
	t.Helper()
	e := &env{dir: dir}
	merchant := testKey(t, "merchant")
	cfg.DataDir = dir
	if cfg.MerchantKey == nil && cfg.MerchantKeyFile == "" {
		cfg.MerchantKey = &merchant.PublicKey
	}
	if cfg.Now == nil {
		e.clock = &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
		cfg.Now = e.clock.Now
	}
	sb, err := sandbox.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.sb = sb
	t.Cleanup(func() { sb.Close() })
	e.srv = httptest.NewServer(sb)
	t.Cleanup(e.srv.Close)
	e.client, err = payment.NewClient(payment.ClientConfig{
		GatewayURL: e.srv.URL + "/sandbox/gateway.do", AppID: sandbox.DefaultAppID,
		PrivateKey: merchant, ProviderKey: sb.PublicKey(), Now: cfg.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) create(t *testing.T, sh *shop, orderNo string, cents int64) payment.Payment {
	t.Helper()
	p, err := e.client.CreatePayment(context.Background(), request(sh, orderNo, cents))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// request is what create asks the sandbox for.
func request(sh *shop, orderNo string, cents int64) payment.PaymentRequest {
	return payment.PaymentRequest{
		OrderNo: orderNo, AmountCents: cents, Subject: "Phone X <script>alert(1)</script>",
		NotifyURL: sh.srv.URL + "/notify", ReturnURL: sh.srv.URL + "/return?from=sandbox#orders",
	}
}

// noRedirect is a browser that shows us the redirect instead of following it.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// openPage GETs the pay page as a browser does.
func openPage(t *testing.T, payURL string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(payURL)
	return readPage(t, resp, err)
}

// readPage reads the page of resp.
func readPage(t *testing.T, resp *http.Response, err error) (*http.Response, string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// postPage presses a button of the pay page as press does and reads the
// page answered.
func postPage(t *testing.T, payURL, result string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.PostForm(payURL, url.Values{"result": {result}})
	return readPage(t, resp, err)
}

// post sends form to the gateway as it is and reads the answer, checked
// with the sandbox's key.
func (e *env) post(t *testing.T, method string, form url.Values) payment.Reply {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+"/sandbox/gateway.do", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := payment.UnmarshalReply(e.sb.PublicKey(), method, body)
	if err != nil {
		t.Fatalf("%s answer: %v", method, err)
	}
	return r
}

// press POSTs the pay page's form with the button result ("pay", "fail").
func press(t *testing.T, payURL, result string) *http.Response {
	t.Helper()
	resp, err := noRedirect.PostForm(payURL, url.Values{"result": {result}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func (e *env) deliver(t *testing.T, wantTries int) {
	t.Helper()
	n, err := e.sb.DeliverDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != wantTries {
		t.Fatalf("DeliverDue made %d tries, want %d", n, wantTries)
	}
}

func (e *env) notifications(t *testing.T, tradeNo string) []sandbox.NotificationState {
	t.Helper()
	ns, err := e.sb.Notifications(context.Background(), tradeNo)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestFlowPayNotifyRetries(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
	sh := newShop(t, func(n int, _ url.Values) string {
		if n <= 2 {
			return "fail"
		}
		return "success"
	})
	p := e.create(t, sh, "T1", 1234)
	if !strings.HasPrefix(p.PayURL, e.srv.URL+"/sandbox/pay/") || !strings.HasSuffix(p.PayURL, p.ID) {
		t.Fatalf("pay URL %q for payment %q", p.PayURL, p.ID)
	}
	if again := e.create(t, sh, "T1", 1234); again != p {
		t.Fatalf("creating again gave %+v, want %+v", again, p)
	}
	_, err := e.client.CreatePayment(ctx, payment.PaymentRequest{OrderNo: "T1", AmountCents: 1, Subject: "x", NotifyURL: sh.srv.URL})
	var pe *payment.ProviderError
	if !errors.As(err, &pe) || pe.SubCode != payment.SubDiscordantRepeat {
		t.Fatalf("another amount for the same order: %v", err)
	}
	if tr, err := e.client.QueryPayment(ctx, "T1"); err != nil || tr.Status != payment.TradeWaiting {
		t.Fatalf("query before paying: %+v, %v", tr, err)
	}

	// The pay page: a plain form, escaped, no scripts.
	resp, page := openPage(t, p.PayURL)
	if resp.StatusCode != 200 || !strings.Contains(page, "12.34") || !strings.Contains(page, `value="pay"`) ||
		!strings.Contains(page, `value="fail"`) || strings.Contains(page, "<script") {
		t.Fatalf("pay page %d:\n%s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}

	pressed := e.clock.Now()
	resp = press(t, p.PayURL, "pay")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), sh.srv.URL+"/return?") ||
		loc.Query().Get("from") != "sandbox" || loc.Fragment != "orders" || loc.Query().Get("out_trade_no") != "T1" {
		t.Fatalf("after pay: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The query says when it was paid (send_pay_date, to the second).
	tr, err := e.client.QueryPayment(ctx, "T1")
	paidAt := tr.PaidAt
	tr.PaidAt = time.Time{}
	if err != nil || tr != (payment.Trade{OutTradeNo: "T1", TradeNo: p.ID, Status: payment.TradeSuccess, AmountCents: 1234}) {
		t.Fatalf("query after paying: %+v, %v", tr, err)
	}
	if paidAt.Before(pressed.Truncate(time.Second)) || paidAt.After(e.clock.Now()) {
		t.Errorf("query after paying: paid at %v, want between %v and now", paidAt, pressed)
	}
	// A second click changes nothing and owes nothing more.
	if resp := press(t, p.PayURL, "fail"); resp.StatusCode != 200 {
		t.Fatalf("second click: %d", resp.StatusCode)
	}

	// First try at once: the shop says fail.
	e.deliver(t, 1)
	first := <-sh.got
	n, err := e.client.VerifyNotification(first)
	if err != nil {
		t.Fatalf("the notification does not verify: %v", err)
	}
	want := payment.Notification{OutTradeNo: "T1", TradeNo: p.ID, TotalAmountCents: 1234, TradeStatus: payment.TradeSuccess,
		NotifyID: n.NotifyID, NotifyTime: n.NotifyTime, AppID: sandbox.DefaultAppID}
	if n != want || n.NotifyID == "" || !n.NotifyTime.Equal(e.clock.Now()) {
		t.Fatalf("notification %+v", n)
	}
	if err := payment.CheckAmount(n, 1234); err != nil {
		t.Fatal(err)
	}

	// The schedule: 2 minutes after the first failed try, 10 after the second.
	for i, wait := range []time.Duration{2 * time.Minute, 10 * time.Minute} {
		e.clock.Advance(wait - time.Nanosecond)
		e.deliver(t, 0)
		if got := sh.count(); got != i+1 {
			t.Fatalf("the shop got %d notifications before the wait of %v was over", got, wait)
		}
		e.clock.Advance(time.Nanosecond)
		e.deliver(t, 1)
		again := <-sh.got
		if again.Encode() != first.Encode() {
			t.Fatalf("resent notification differs:\n%s\n%s", again.Encode(), first.Encode())
		}
	}
	// The third try got "success": nothing more, ever.
	ns := e.notifications(t, p.ID)
	if len(ns) != 1 || ns[0].State != "delivered" || ns[0].Attempts != 3 {
		t.Fatalf("notifications %+v", ns)
	}
	e.clock.Advance(48 * time.Hour)
	e.deliver(t, 0)
	if got := sh.count(); got != 3 {
		t.Fatalf("the shop got %d notifications, want 3", got)
	}
}

func TestScheduleGivesUpAfterEightTries(t *testing.T) {
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
	sh := newShop(t, func(int, url.Values) string { return "" })
	p := e.create(t, sh, "T1", 100)
	press(t, p.PayURL, "pay")
	e.deliver(t, 1)
	for _, wait := range sandbox.AlipaySchedule {
		e.clock.Advance(wait - time.Nanosecond)
		e.deliver(t, 0)
		e.clock.Advance(time.Nanosecond)
		e.deliver(t, 1)
	}
	ns := e.notifications(t, p.ID)
	if len(ns) != 1 || ns[0].State != "abandoned" || ns[0].Attempts != 8 {
		t.Fatalf("notifications %+v", ns)
	}
	e.clock.Advance(100 * time.Hour)
	e.deliver(t, 0)
	if sh.count() != 8 {
		t.Fatalf("%d tries, want 8", sh.count())
	}
	// The shop can still learn it by asking.
	if tr, err := e.client.QueryPayment(context.Background(), "T1"); err != nil || tr.Status != payment.TradeSuccess {
		t.Fatalf("query: %+v, %v", tr, err)
	}
}

// The notifier itself (not DeliverDue by hand) on a compressed schedule:
// 2 min and 10 min become 12 ms and 60 ms.
func TestNotifierScaledSchedule(t *testing.T) {
	e := newEnv(t, t.TempDir(), sandbox.Config{RetryScale: 1e-4, Now: time.Now})
	sh := newShop(t, func(n int, _ url.Values) string {
		if n <= 2 {
			return "fail"
		}
		return "success"
	})
	p := e.create(t, sh, "T1", 100)
	start := time.Now()
	press(t, p.PayURL, "pay")
	var at []time.Duration
	for range 3 {
		select {
		case <-sh.got:
			at = append(at, time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d notifications arrived", len(at))
		}
	}
	// Never early: the waits are lower bounds, counted by the notifier
	// from when it sent a try, which the shop sees a little later; 3/4 of
	// them leaves room for that and still fails a schedule halved.
	if at[1]-at[0] < 9*time.Millisecond || at[2]-at[1] < 45*time.Millisecond {
		t.Fatalf("tries at %v: resent before the (scaled) schedule", at)
	}
	waitFor(t, func() bool {
		ns := e.notifications(t, p.ID)
		return len(ns) == 1 && ns[0].State == "delivered" && ns[0].Attempts == 3
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
	}
}

// A notification the sandbox owes survives a restart: one the shop
// refused before it, and one whose try the restart cut short.
func TestRestartStillDelivers(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	up := false
	block := make(chan struct{})
	sh := newShop(t, func(n int, f url.Values) string {
		mu.Lock()
		ok := up
		mu.Unlock()
		if ok {
			return "success"
		}
		if f.Get("out_trade_no") == "T2" {
			<-block // the sandbox goes down while this try is in flight
		}
		return "busy"
	})

	// 1e-3: T1's retries come every 120 ms or more, so it is still owed
	// (not given up) whenever the restart comes.
	e := newEnv(t, dir, sandbox.Config{RetryScale: 1e-3, Now: time.Now})
	p1 := e.create(t, sh, "T1", 100)
	press(t, p1.PayURL, "pay")
	<-sh.got // refused
	waitFor(t, func() bool { ns := e.notifications(t, p1.ID); return len(ns) == 1 && ns[0].Attempts >= 1 })
	// The retry of T1 and the first try of T2 hang in the shop while
	// the sandbox is closed.
	p2 := e.create(t, sh, "T2", 200)
	press(t, p2.PayURL, "pay")
	<-sh.got
	e.srv.Close()
	closed := make(chan error)
	go func() { closed <- e.sb.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a hanging try")
	}
	close(block)
	mu.Lock()
	up = true
	mu.Unlock()

	e2 := newEnv(t, dir, sandbox.Config{RetryScale: 1e-3, Now: time.Now})
	if !e2.sb.PublicKey().Equal(e.sb.PublicKey()) {
		t.Fatal("the sandbox made a new key on restart")
	}
	for _, id := range []string{p1.ID, p2.ID} {
		waitFor(t, func() bool {
			ns := e2.notifications(t, id)
			return len(ns) == 1 && ns[0].State == "delivered"
		})
	}
	ns := e2.notifications(t, p2.ID)
	if ns[0].Attempts != 1 {
		t.Fatalf("T2: %d tries recorded; the one cut short by Close must not count", ns[0].Attempts)
	}
}

func TestRefund(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
	sh := newShop(t, func(int, url.Values) string { return "success" })
	p := e.create(t, sh, "T1", 1234)
	if err := e.client.Refund(ctx, "T1", p.ID, 1234, "late"); !errors.Is(err, payment.ErrNotRefundable) {
		t.Fatalf("refund before paying: %v", err)
	}
	if err := e.client.Refund(ctx, "T404", "", 1234, "late"); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("refund of an unknown order: %v", err)
	}
	press(t, p.PayURL, "pay")
	var pe *payment.ProviderError
	if err := e.client.Refund(ctx, "T1", p.ID, 1235, "late"); !errors.As(err, &pe) || pe.SubCode != payment.SubRefundAmount {
		t.Fatalf("refund of more than was paid: %v", err)
	}
	if err := e.client.Refund(ctx, "T1", "2026wrong", 1234, "late"); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("refund with another trade number: %v", err)
	}
	for range 3 { // idempotent by order number
		if err := e.client.Refund(ctx, "T1", p.ID, 1234, "paid after the order was cancelled"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.client.Refund(ctx, "T1", "", 1000, "again"); !errors.As(err, &pe) || pe.SubCode != payment.SubDiscordantRepeat {
		t.Fatalf("second refund of another amount: %v", err)
	}
	if tr, err := e.client.QueryPayment(ctx, "T1"); err != nil || tr.Status != payment.TradeClosed || tr.AmountCents != 1234 {
		t.Fatalf("query after a full refund: %+v, %v", tr, err)
	}
	// A refund is the shop's own doing: no notification for it.
	e.deliver(t, 1) // the payment's
	if ns := e.notifications(t, p.ID); len(ns) != 1 {
		t.Fatalf("notifications %+v", ns)
	}
}

func TestFailAndClose(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
	sh := newShop(t, func(int, url.Values) string { return "success" })

	// Fail: a declined attempt. The payment waits still, nothing is
	// notified, the page says so and offers Pay again, which then pays.
	p0 := e.create(t, sh, "T0", 50)
	if resp := press(t, p0.PayURL, "fail"); resp.StatusCode != http.StatusOK {
		t.Fatalf("fail: %d, want the page again", resp.StatusCode)
	}
	if _, page := postPage(t, p0.PayURL, "fail"); !strings.Contains(page, "declined") || !strings.Contains(page, `value="pay"`) {
		t.Fatalf("the page after Fail:\n%s", page)
	}
	if tr, err := e.client.QueryPayment(ctx, "T0"); err != nil || tr.Status != payment.TradeWaiting {
		t.Fatalf("after Fail: %+v, %v", tr, err)
	}
	if again := e.create(t, sh, "T0", 50); again != p0 {
		t.Fatalf("creating again after Fail gave %+v, want %+v", again, p0)
	}
	if resp := press(t, p0.PayURL, "pay"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay after Fail: %d", resp.StatusCode)
	}
	e.deliver(t, 1)
	if n, err := e.client.VerifyNotification(<-sh.got); err != nil || n.TradeStatus != payment.TradeSuccess || n.OutTradeNo != "T0" {
		t.Fatalf("notification after Fail then Pay: %+v, %v", n, err)
	}

	// Fail past the expiry closes the payment, as Pay does.
	req := request(sh, "T1", 100)
	req.ExpiresAt = e.clock.Now().Add(time.Minute)
	p1, err := e.client.CreatePayment(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	if resp := press(t, p1.PayURL, "fail"); resp.StatusCode != http.StatusOK {
		t.Fatalf("fail past the expiry: %d", resp.StatusCode)
	}
	// Close: the shop gives up on the order.
	p2 := e.create(t, sh, "T2", 200)
	if err := e.client.ClosePayment(ctx, "T2"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.ClosePayment(ctx, "T2"); err != nil {
		t.Fatalf("closing twice: %v", err)
	}
	if resp := press(t, p2.PayURL, "pay"); resp.StatusCode != 200 {
		t.Fatalf("paying a closed payment: %d, want the page", resp.StatusCode)
	}
	e.deliver(t, 2)
	for range 2 {
		n, err := e.client.VerifyNotification(<-sh.got)
		if err != nil || n.TradeStatus != payment.TradeClosed {
			t.Fatalf("notification %+v, %v", n, err)
		}
	}
	for _, order := range []string{"T1", "T2"} {
		_, err := e.client.CreatePayment(ctx, payment.PaymentRequest{OrderNo: order, AmountCents: 100, Subject: "x", NotifyURL: sh.srv.URL})
		if !errors.Is(err, payment.ErrTradeClosed) {
			t.Fatalf("%s: paying again: %v", order, err)
		}
		if tr, err := e.client.QueryPayment(ctx, order); err != nil || tr.Status != payment.TradeClosed {
			t.Fatalf("%s: %+v, %v", order, tr, err)
		}
	}
	// Paid: too late to close.
	p3 := e.create(t, sh, "T3", 300)
	press(t, p3.PayURL, "pay")
	if err := e.client.ClosePayment(ctx, "T3"); !errors.Is(err, payment.ErrTradePaid) {
		t.Fatalf("closing a paid payment: %v", err)
	}
	if _, err := e.client.CreatePayment(ctx, payment.PaymentRequest{OrderNo: "T3", AmountCents: 300, Subject: "x", NotifyURL: sh.srv.URL}); !errors.Is(err, payment.ErrTradePaid) {
		t.Fatalf("paying twice: %v", err)
	}
	if err := e.client.ClosePayment(ctx, "T404"); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("closing an unknown order: %v", err)
	}
	if _, err := e.client.QueryPayment(ctx, "T404"); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("query of an unknown order: %v", err)
	}
	resp, err := http.Get(e.srv.URL + "/sandbox/pay/2026nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown pay page: %d", resp.StatusCode)
	}
}

// Requests not signed by the merchant are refused; answers not signed by
// the sandbox are not believed.
func TestGatewayChecksSignatures(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true})
	sh := newShop(t, func(int, url.Values) string { return "success" })
	req := payment.PaymentRequest{OrderNo: "T1", AmountCents: 100, Subject: "x", NotifyURL: sh.srv.URL}
	other := testKey(t, "other")
	client := func(appID string, key *rsa.PrivateKey, provider *rsa.PublicKey) *payment.Client {
		c, err := payment.NewClient(payment.ClientConfig{GatewayURL: e.srv.URL + "/sandbox/gateway.do",
			AppID: appID, PrivateKey: key, ProviderKey: provider})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var pe *payment.ProviderError
	_, err := client(sandbox.DefaultAppID, other, e.sb.PublicKey()).CreatePayment(ctx, req)
	if !errors.As(err, &pe) || pe.SubCode != payment.SubInvalidSignature {
		t.Fatalf("request signed by another key: %v", err)
	}
	_, err = client("2021999", testKey(t, "merchant"), e.sb.PublicKey()).CreatePayment(ctx, req)
	if !errors.As(err, &pe) || pe.SubCode != payment.SubInvalidAppID {
		t.Fatalf("another app id: %v", err)
	}
	_, err = client(sandbox.DefaultAppID, testKey(t, "merchant"), &other.PublicKey).CreatePayment(ctx, req)
	if !errors.Is(err, payment.ErrBadSignature) {
		t.Fatalf("answer checked with another key: %v", err)
	}
	// A tampered request: signed, then changed.
	form := url.Values{"app_id": {sandbox.DefaultAppID}, "method": {payment.MethodQuery}, "sign_type": {"RSA2"},
		"biz_content": {`{"out_trade_no":"T1"}`}}
	sign, _ := payment.SignRequest(testKey(t, "merchant"), form)
	form.Set("sign", sign)
	form.Set("biz_content", `{"out_trade_no":"T2"}`)
	if r := e.post(t, payment.MethodQuery, form); r.SubCode != payment.SubInvalidSignature {
		t.Fatalf("tampered request: %+v", r)
	}
}

// The sandbox may start before the shop made its key: it reads the file
// when a request first needs it. Until then a request is refused without
// naming the file (its caller is not authenticated).
func TestMerchantKeyFileReadLate(t *testing.T) {
	dir := t.TempDir()
	path := payment.MerchantKeyPath(dir)
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true, MerchantKeyFile: payment.PublicKeyPath(path)})
	sh := newShop(t, func(int, url.Values) string { return "success" })
	early := url.Values{"app_id": {sandbox.DefaultAppID}, "method": {payment.MethodQuery}, "sign_type": {"RSA2"},
		"biz_content": {`{"out_trade_no":"T1"}`}, "sign": {"x"}}
	if r := e.post(t, payment.MethodQuery, early); r.SubCode != payment.SubInvalidSignature || strings.Contains(r.SubMsg, dir) || strings.Contains(r.SubMsg, "/") {
		t.Fatalf("a request before the merchant key exists: %+v; want refused without the key's path", r)
	}
	key, err := payment.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := payment.NewClient(payment.ClientConfig{GatewayURL: e.srv.URL + "/sandbox/gateway.do",
		AppID: sandbox.DefaultAppID, PrivateKey: key, ProviderKey: e.sb.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePayment(context.Background(), payment.PaymentRequest{OrderNo: "T1", AmountCents: 100, Subject: "x", NotifyURL: sh.srv.URL}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st == nil {
		t.Fatal(err)
	}
	if p := e.sb.PublicKeyPath(); p == "" {
		t.Fatal("no public key path")
	} else if st, err := os.Stat(strings.TrimSuffix(p, ".pub.pem") + ".pem"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("sandbox key file: %v %v", st.Mode(), err)
	}
}

// TestPayPageRefusesOtherSites: a Pay or Fail posted from another site's
// page (its Origin, "null", or Sec-Fetch-Site: cross-site) is refused 403
// and moves nothing; the page's own origin, the public URL's, and a client
// without Origin pass. Before, any site's form that knew a trade number
// could pay it (found by review).
func TestPayPageRefusesOtherSites(t *testing.T) {
	e := newEnv(t, t.TempDir(), sandbox.Config{Manual: true, PublicURL: "https://pay.example"})
	sh := newShop(t, func(int, url.Values) string { return "success" })
	p := e.create(t, sh, "T1", 1234)
	payURL := e.srv.URL + "/sandbox/pay/" + p.ID // the server's own, not the public URL
	post := func(result string, header map[string]string) int {
		req, _ := http.NewRequest("POST", payURL, strings.NewReader(url.Values{"result": {result}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, h := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Origin": "null"},
		{"Origin": "http://pay.example"}, // the public URL's host on another scheme
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": e.srv.URL, "Sec-Fetch-Site": "cross-site"},
	} {
		if code := post("pay", h); code != http.StatusForbidden {
			t.Errorf("pay with %v: %d, want 403", h, code)
		}
	}
	if tr, err := e.client.QueryPayment(context.Background(), "T1"); err != nil || tr.Status != payment.TradeWaiting {
		t.Fatalf("after the refused posts: %+v, %v, want still waiting", tr, err)
	}
	if code := post("fail", map[string]string{"Origin": e.srv.URL, "Sec-Fetch-Site": "same-origin"}); code != http.StatusOK {
		t.Errorf("fail from the page itself: %d, want 200", code)
	}
	if code := post("fail", map[string]string{"Origin": "https://pay.example"}); code != http.StatusOK {
		t.Errorf("fail from the public URL's origin: %d, want 200", code)
	}
	if code := post("pay", nil); code != http.StatusSeeOther {
		t.Errorf("pay without Origin: %d, want 303", code)
	}
}
