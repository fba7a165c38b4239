package checkout

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"seckill"
	"seckill/payment"
	"seckill/payment/sandbox"
)

const testAppID = "2021000000000001"

// testProviderKey is the fake provider's key, made once: RSA keys are slow
// to generate under -race.
var testProviderKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// fakeProvider is a payment.Provider in memory: it verifies notifications
// signed with testProviderKey for testAppID and counts refunds and closes.
// Its refund is idempotent by order number, as the provider's contract
// says (payment.Provider.Refund): instances that retry the same refund at
// once move the money once.
type fakeProvider struct {
	mu      sync.Mutex
	refunds map[string]int           // order no → refunds that moved money (at most 1)
	asked   map[string]int           // order no → refunds asked
	created map[string]int           // order no → CreatePayment asked
	closed  map[string]bool          // order no → ClosePayment asked
	trades  map[string]payment.Trade // order no → what QueryPayment answers
	failRef atomic.Bool              // Refund fails (the provider is down)
	refuse  map[string]error         // order no → the provider's refusal of its refund, for good
	hang    atomic.Bool              // ClosePayment answers only when its context ends (the provider is blackholed)
	hangRef atomic.Bool              // so does Refund
	failQry atomic.Bool              // QueryPayment fails (the provider is down)
	queries atomic.Int64             // QueryPayment asked
	hung    atomic.Int64             // calls waiting so now
	expires map[string]time.Time     // order no → the last CreatePayment's ExpiresAt
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{refunds: map[string]int{}, asked: map[string]int{}, created: map[string]int{}, closed: map[string]bool{}, trades: map[string]payment.Trade{}, refuse: map[string]error{}, expires: map[string]time.Time{}}
}

func (p *fakeProvider) CreatePayment(_ context.Context, req payment.PaymentRequest) (payment.Payment, error) {
	p.mu.Lock()
	p.created[req.OrderNo]++
	p.expires[req.OrderNo] = req.ExpiresAt
	p.mu.Unlock()
	return payment.Payment{ID: "T" + req.OrderNo, PayURL: "http://provider.test/pay/T" + req.OrderNo}, nil
}

func (p *fakeProvider) VerifyNotification(form url.Values) (payment.Notification, error) {
	return payment.ParseNotification(&testProviderKey().PublicKey, testAppID, form)
}

func (p *fakeProvider) QueryPayment(_ context.Context, orderNo string) (payment.Trade, error) {
	p.queries.Add(1)
	if p.failQry.Load() {
		return payment.Trade{}, fmt.Errorf("provider down")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.trades[orderNo]
	if !ok {
		return payment.Trade{}, payment.ErrNotFound
	}
	return t, nil
}

func (p *fakeProvider) Refund(ctx context.Context, orderNo, _ string, _ int64, _ string) error {
	if p.hangRef.Load() {
		p.hung.Add(1)
		defer p.hung.Add(-1)
		<-ctx.Done()
		return ctx.Err()
	}
	if p.failRef.Load() {
		return fmt.Errorf("provider down")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked[orderNo]++
	if err := p.refuse[orderNo]; err != nil {
		return err
	}
	p.refunds[orderNo] = 1
	return nil
}

func (p *fakeProvider) ClosePayment(ctx context.Context, orderNo string) error {
	if p.hang.Load() {
		p.hung.Add(1)
		defer p.hung.Add(-1)
		<-ctx.Done()
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed[orderNo] = true
	return nil
}

// wasClosed reports whether ClosePayment closed the order's payment.
func (p *fakeProvider) wasClosed(orderNo string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed[orderNo]
}

// closes is how many orders' payments ClosePayment closed.
func (p *fakeProvider) closes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.closed)
}

// opened is how many times CreatePayment was asked for the order.
func (p *fakeProvider) opened(orderNo string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.created[orderNo]
}

// openPayment has the buyer of o open its payment (Engine.Pay), which
// marks it opened, so that a cancel closes it.
func openPayment(t *testing.T, e *Engine, o *seckill.Order) {
	t.Helper()
	if _, err := e.Pay(context.Background(), o.UserID, o.ID, "http://shop.test/n", ""); err != nil {
		t.Fatalf("pay order %d: %v", o.ID, err)
	}
}

// setTrade makes QueryPayment answer t for its order.
func (p *fakeProvider) setTrade(t payment.Trade) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trades[t.OutTradeNo] = t
}

func (p *fakeProvider) refunded(orderNo string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refunds[orderNo]
}

// sandboxPayments opens the sandbox provider on clock now (nil: the wall
// clock) with its notifier off (the test sends what is due with
// DeliverDue), serves it over HTTP through wrap (nil: as it is), and
// returns it with the shop's client of it, on the same clock.
func sandboxPayments(t *testing.T, now func() time.Time, wrap func(http.Handler) http.Handler) (*sandbox.Sandbox, *payment.Client) {
	t.Helper()
	return skewedSandbox(t, now, now, wrap)
}

// skewedSandbox is sandboxPayments with the provider on one clock and the
// shop's client on another (an instance's own, as serve gives it).
func skewedSandbox(t *testing.T, provider, instance func() time.Time, wrap func(http.Handler) http.Handler) (*sandbox.Sandbox, *payment.Client) {
	t.Helper()
	return openSandbox(t, sandbox.Config{Now: provider}, instance, wrap)
}

// openSandbox opens a manual sandbox with cfg (its store, keys and
// Manual filled in) behind wrap, and a client of it on the clock instance.
func openSandbox(t *testing.T, cfg sandbox.Config, instance func() time.Time, wrap func(http.Handler) http.Handler) (*sandbox.Sandbox, *payment.Client) {
	t.Helper()
	cfg.DataDir, cfg.Key, cfg.MerchantKey, cfg.Manual = t.TempDir(), testProviderKey(), &testMerchantKey().PublicKey, true
	sb, err := sandbox.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	var h http.Handler = sb
	if wrap != nil {
		h = wrap(sb)
	}
	gw := httptest.NewServer(h)
	t.Cleanup(gw.Close)
	client, err := payment.NewClient(payment.ClientConfig{
		GatewayURL: gw.URL + "/sandbox/gateway.do", AppID: sandbox.DefaultAppID,
		PrivateKey: testMerchantKey(), ProviderKey: &testProviderKey().PublicKey, Now: instance,
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb, client
}

// notifyEndpoint is the shop's notify URL: it hands the provider's
// notifications to e and answers "success" when e handled one.
func notifyEndpoint(t *testing.T, e *Engine) string {
	t.Helper()
	return switchableNotify(t, e, nil)
}

// switchableNotify is notifyEndpoint answering 503 while down is set (the
// shop unreachable, SQL down, a bad deploy); down may be nil.
func switchableNotify(t *testing.T, e *Engine, down *atomic.Bool) string {
	t.Helper()
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down != nil && down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := e.HandleNotification(r.Context(), r.PostForm); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "success")
	}))
	t.Cleanup(shop.Close)
	return shop.URL + "/notify"
}

// sharedClock is a seckill.Clock the test moves.
type sharedClock struct{ off atomic.Int64 }

func (c *sharedClock) Now(context.Context) (time.Time, error) {
	return time.Now().Add(time.Duration(c.off.Load())).UTC(), nil
}

// pastDeadlines moves the shared clock past the default pay window, before
// the end of the tests' sales (an hour: openSale), which the engine also
// reads on the shared clock (SaleTime).
func (c *sharedClock) pastDeadlines() { c.off.Store(int64(30 * time.Minute)) }

// lifecycleEngine is a recovered engine on v's backends with the fake
// provider and the shared clock.
func (v *env) lifecycleEngine(p *fakeProvider, clock *sharedClock) *Engine {
	v.t.Helper()
	b := v.backends()
	b.Payments, b.Clock = p, clock
	return v.recovered(Config{}, &b)
}

// notification is the signed form of a trade of o, as the provider sends
// it; change alters it before signing.
func notification(t *testing.T, o *seckill.Order, status payment.TradeStatus, change func(*payment.Notification)) url.Values {
	t.Helper()
	form, err := signedNotification(o, status, change)
	if err != nil {
		t.Fatal(err)
	}
	return form
}

// signedNotification is notification for any goroutine: it returns the
// error.
func signedNotification(o *seckill.Order, status payment.TradeStatus, change func(*payment.Notification)) (url.Values, error) {
	n := payment.Notification{
		OutTradeNo: o.OrderNo, TradeNo: "T" + o.OrderNo, TotalAmountCents: o.PriceCents,
		TradeStatus: status, NotifyID: fmt.Sprintf("N%d%s", o.ID, status), NotifyTime: time.Now(), AppID: testAppID,
	}
	if change != nil {
		change(&n)
	}
	return payment.NotificationForm(testProviderKey(), n)
}

func (v *env) order(id int64) *seckill.Order {
	v.t.Helper()
	o, err := v.db.Order(context.Background(), id)
	if err != nil {
		v.t.Fatal(err)
	}
	return o
}

func wantStatus(t *testing.T, o *seckill.Order, want seckill.OrderStatus) {
	t.Helper()
	if o.Status != want {
		t.Fatalf("order %d is %s, want %s", o.ID, o.Status, want)
	}
}

// TestNotifications: what the notify endpoint may receive, signed or not.
func TestNotifications(t *testing.T) {
	v := newEnv(t)
	s := v.openSale(4)
	us := v.users(4)
	v.writeOrders(s.ID, us...)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	pushes := subscribeResults(t, v.queue)
	ctx := context.Background()
	o := v.orderOf(s.ID, us[0])

	t.Run("Forged", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		form, err := payment.NotificationForm(other, payment.Notification{
			OutTradeNo: o.OrderNo, TradeNo: "X", TotalAmountCents: o.PriceCents, TradeStatus: payment.TradeSuccess,
			NotifyID: "n", NotifyTime: time.Now(), AppID: testAppID,
		})
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, e.HandleNotification(ctx, form), seckill.EBadSignature)
		wantStatus(t, v.order(o.ID), seckill.OrderPending)
	})
	t.Run("TamperedAfterSigning", func(t *testing.T) {
		form := notification(t, o, payment.TradeSuccess, nil)
		form.Set("total_amount", "0.01")
		wantCode(t, e.HandleNotification(ctx, form), seckill.EBadSignature)
		wantStatus(t, v.order(o.ID), seckill.OrderPending)
	})
	t.Run("WrongMerchant", func(t *testing.T) {
		form := notification(t, o, payment.TradeSuccess, func(n *payment.Notification) { n.AppID = "2021999999999999" })
		wantCode(t, e.HandleNotification(ctx, form), seckill.EBadSignature)
		wantStatus(t, v.order(o.ID), seckill.OrderPending)
	})
	t.Run("AmountMismatch", func(t *testing.T) {
		form := notification(t, o, payment.TradeSuccess, func(n *payment.Notification) { n.TotalAmountCents = 1 })
		wantCode(t, e.HandleNotification(ctx, form), seckill.EAmountMismatch)
		wantStatus(t, v.order(o.ID), seckill.OrderPending)
	})
	t.Run("UnknownOrder", func(t *testing.T) {
		form := notification(t, &seckill.Order{OrderNo: "nosuchorder", PriceCents: 100}, payment.TradeSuccess, nil)
		wantCode(t, e.HandleNotification(ctx, form), seckill.ENotFound)
	})
	t.Run("SuccessReplayedThenClosed", func(t *testing.T) {
		form := notification(t, o, payment.TradeSuccess, nil)
		for i := 0; i < 3; i++ {
			if err := e.HandleNotification(ctx, form); err != nil {
				t.Fatalf("notification #%d: %v", i+1, err)
			}
		}
		wantStatus(t, v.order(o.ID), seckill.OrderPaid)
		// Out of order: a close after the success changes nothing.
		if err := e.HandleNotification(ctx, notification(t, o, payment.TradeClosed, nil)); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, v.order(o.ID), seckill.OrderPaid)
		if n := p.refunded(o.OrderNo); n != 0 {
			t.Fatalf("a paid order was refunded %d times", n)
		}
		pushes.waitStatus(t, o, seckill.OrderPaid)
		// Paid orders can be neither cancelled nor paid again.
		_, err := e.Cancel(ctx, o.UserID, o.ID)
		wantCode(t, err, seckill.ENotCancellable)
		_, err = e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
		wantCode(t, err, seckill.ENotPayable)
	})
	t.Run("PaymentRacingTheSweeper", func(t *testing.T) {
		// The sweeper cancels first; the money then arrives: recorded and
		// refunded, the order stays cancelled, the unit stays back.
		o1 := v.orderOf(s.ID, us[1])
		openPayment(t, e, o1) // its buyer opened the page in time, and paid late
		clock.pastDeadlines()
		defer clock.off.Store(0)
		_, err := e.Pay(ctx, o1.UserID, o1.ID, "http://shop.test/n", "")
		wantCode(t, err, seckill.ENotPayable)
		p.failRef.Store(true) // the provider is down at first
		if n, err := e.Sweep(ctx); err != nil || n != 3 {
			t.Fatalf("Sweep = %d, %v; want 3 cancelled", n, err)
		}
		if err := e.HandleNotification(ctx, notification(t, o1, payment.TradeSuccess, nil)); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, v.order(o1.ID), seckill.OrderCancelled)
		p.failRef.Store(false)
		if n, err := e.RetryRefunds(ctx); err != nil || n != 1 {
			t.Fatalf("RetryRefunds = %d, %v; want 1", n, err)
		}
		if n := p.refunded(o1.OrderNo); n != 1 {
			t.Fatalf("refunded %d times, want 1", n)
		}
		// A replay now changes nothing and refunds at most again (the
		// provider's refund is idempotent by order number).
		if err := e.HandleNotification(ctx, notification(t, o1, payment.TradeSuccess, nil)); err != nil {
			t.Fatal(err)
		}
		st, err := e.Stats(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.PaymentsRefunded != 1 || st.RefundsDue != 0 || st.Cancelled != 3 || st.Paid != 1 || st.ReturnsUnapplied != 0 {
			t.Fatalf("stats %+v", st)
		}
		waitFor(t, "the sweeper to close the timed-out order's payment", func() bool { return p.wasClosed(o1.OrderNo) })
		v.checkAtRest(s.ID)
	})
}

// TestReconcilePayment: a success whose notification never came is found
// by asking the provider.
func TestReconcilePayment(t *testing.T) {
	v := newEnv(t)
	s := v.openSale(2)
	us := v.users(2)
	v.writeOrders(s.ID, us...)
	p := newFakeProvider()
	e := v.lifecycleEngine(p, &sharedClock{})
	ctx := context.Background()
	o := v.orderOf(s.ID, us[0])
	_, err := e.ReconcilePayment(ctx, o.ID)
	wantCode(t, err, seckill.ENotFound)
	p.trades[o.OrderNo] = payment.Trade{OutTradeNo: o.OrderNo, TradeNo: "T" + o.OrderNo, Status: payment.TradeSuccess, AmountCents: o.PriceCents}
	got, err := e.ReconcilePayment(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, got, seckill.OrderPaid)
	// Its notification arriving after all is a replay.
	if err := e.HandleNotification(ctx, notification(t, o, payment.TradeSuccess, nil)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, v.order(o.ID), seckill.OrderPaid)
	if n := p.refunded(o.OrderNo); n != 0 {
		t.Fatalf("refunded %d times", n)
	}
}

// TestSweepClosesOnlyOpenedPayments: of three lapsed orders the sweeper
// cancels, only the one whose buyer opened the payment has a trade at the
// provider, and only its payment is closed: a sale of lapsed orders no
// one opened sends the provider nothing (50,000 useless closes overflowed
// the closer's backlog, and opened payments stayed open).
func TestSweepClosesOnlyOpenedPayments(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(3)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	// The opened order is swept last (same deadline, highest id), and the
	// closer takes them in turn: once it is closed, nothing else is left.
	var o *seckill.Order
	for _, u := range us {
		if x := v.orderOf(s.ID, u); o == nil || x.ID > o.ID {
			o = x
		}
	}
	openPayment(t, e, o)
	clock.pastDeadlines()
	if n, err := e.Sweep(context.Background()); err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v; want 3 cancelled", n, err)
	}
	waitFor(t, "the closer to close the opened payment", func() bool { return p.wasClosed(o.OrderNo) })
	if n := p.closes(); n != 1 {
		t.Fatalf("%d payments closed, want 1 (the opened one)", n)
	}
	v.checkAtRest(s.ID)
}

// TestCancelClosesOnlyOpenedPayments: a buyer who cancels an order whose
// payment they never opened waits for no provider call.
func TestCancelClosesOnlyOpenedPayments(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(2)
	p := newFakeProvider()
	e := v.lifecycleEngine(p, &sharedClock{})
	ctx := context.Background()
	never, opened := v.orderOf(s.ID, us[0]), v.orderOf(s.ID, us[1])
	openPayment(t, e, opened)
	for _, o := range []*seckill.Order{never, opened} {
		got, err := e.Cancel(ctx, o.UserID, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.PayOpened != (o == opened) || p.wasClosed(o.OrderNo) != (o == opened) {
			t.Errorf("order %d: cancelled %+v, closed %v; want a close only of the opened one", o.ID, got, p.wasClosed(o.OrderNo))
		}
	}
	if n := p.closes(); n != 1 {
		t.Fatalf("%d payments closed, want 1", n)
	}
}

// markRace is the env's store whose MarkPayOpened runs before first: what
// commits between Pay's read of the order and its mark.
type markRace struct {
	envStore
	seckill.OrderLifecycle
	before func()
}

func (m *markRace) MarkPayOpened(ctx context.Context, orderID int64) error {
	m.before()
	return m.OrderLifecycle.MarkPayOpened(ctx, orderID)
}

// TestPayRacingTheSweep: the buyer opens the payment as its deadline
// passes; Pay finds the order pending and in time, then the sweeper
// cancels it before the mark. The mark is refused, and with it the
// payment: no trade is created that the sweep's cancel, which saw no
// mark, would leave open.
func TestPayRacingTheSweep(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(1)
	p, clock := newFakeProvider(), &sharedClock{}
	ctx := context.Background()
	var e *Engine
	race := &markRace{envStore: v.db, OrderLifecycle: v.db.(seckill.OrderLifecycle), before: func() {
		clock.pastDeadlines()
		if n, err := e.Sweep(ctx); err != nil || n != 1 {
			t.Errorf("Sweep = %d, %v; want 1 cancelled", n, err)
		}
	}}
	b := v.backends()
	b.Orders, b.Payments, b.Clock = race, p, clock
	e = v.recovered(Config{}, &b)
	o := v.orderOf(s.ID, us[0])
	_, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
	wantCode(t, err, seckill.ENotPayable)
	wantStatus(t, v.order(o.ID), seckill.OrderCancelled)
	if n := p.opened(o.OrderNo); n != 0 {
		t.Fatalf("CreatePayment asked %d times for an order cancelled before its mark", n)
	}
	if v.order(o.ID).PayOpened || p.closes() != 0 {
		t.Fatalf("order %+v, %d closes: want it unmarked and nothing to close", v.order(o.ID), p.closes())
	}
	v.checkAtRest(s.ID)
}

// TestPayAgainReusesTheOpenedPayment: a buyer who asks to pay again gets
// the payment opened a moment ago, without another mark or provider call;
// a cancelled order is refused, not answered from memory; after openedFor
// the provider is asked again.
func TestPayAgainReusesTheOpenedPayment(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(2)
	p, clock := newFakeProvider(), &sharedClock{}
	e := v.lifecycleEngine(p, clock)
	ctx := context.Background()
	o := v.orderOf(s.ID, us[0])
	first, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
		if err != nil || again != first {
			t.Fatalf("pay again: %+v, %v; want %+v", again, err, first)
		}
	}
	if n := p.opened(o.OrderNo); n != 1 {
		t.Fatalf("CreatePayment asked %d times, want 1", n)
	}
	// Another return URL (one per Host the buyer sends, without
	// --public-url) is no other ask: a provider keeps a trade's first
	// return URL. Before, each Host was a write and two signed calls
	// (found by review).
	for i := range 5 {
		if again, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", fmt.Sprintf("http://h%d.test/back", i)); err != nil || again != first {
			t.Fatalf("pay with another return URL: %+v, %v; want %+v", again, err, first)
		}
	}
	if n := p.opened(o.OrderNo); n != 1 {
		t.Fatalf("CreatePayment asked %d times with other return URLs, want 1", n)
	}
	// Another notify URL is another ask.
	if _, err := e.Pay(ctx, o.UserID, o.ID, "http://other.test/n", ""); err != nil || p.opened(o.OrderNo) != 2 {
		t.Fatalf("pay with another notify URL: %v, %d asks", err, p.opened(o.OrderNo))
	}
	// Someone else's order is not found, whatever was opened.
	if _, err := e.Pay(ctx, o.UserID+1000, o.ID, "http://shop.test/n", ""); seckill.ErrorCode(err) != seckill.ENotFound {
		t.Fatalf("another user's pay: %v", err)
	}
	// Expired from memory: asked again.
	e.opened.mu.Lock()
	for k, v := range e.opened.m {
		v.at = v.at.Add(-openedFor - time.Second)
		e.opened.m[k] = v
	}
	e.opened.mu.Unlock()
	if _, err := e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", ""); err != nil || p.opened(o.OrderNo) != 3 {
		t.Fatalf("pay after %v: %v, %d asks", openedFor, err, p.opened(o.OrderNo))
	}
	// Cancelled: refused, not answered from memory.
	if _, err := e.Cancel(ctx, o.UserID, o.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.Pay(ctx, o.UserID, o.ID, "http://shop.test/n", "")
	wantCode(t, err, seckill.ENotPayable)
	// Past the deadline: refused too.
	o2 := v.orderOf(s.ID, us[1])
	if _, err := e.Pay(ctx, o2.UserID, o2.ID, "http://shop.test/n", ""); err != nil {
		t.Fatal(err)
	}
	clock.pastDeadlines()
	_, err = e.Pay(ctx, o2.UserID, o2.ID, "http://shop.test/n", "")
	wantCode(t, err, seckill.ENotPayable)
	// The sweep cancels it; both units are back: I1–I5 at rest.
	if n, err := e.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 cancelled", n, err)
	}
	v.checkAtRest(s.ID)
}

// TestPaymentExpiresBeforeTheDeadline: the provider stops taking an
// order's money payMargin before the order's pay deadline (PayWindow/10,
// at most 2 s), so that a payment made in its last moment is heard of
// before the sweeper cancels the order, rather than refunded after.
func TestPaymentExpiresBeforeTheDeadline(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(1)
	p := newFakeProvider()
	e := v.lifecycleEngine(p, &sharedClock{}) // the default window: 10 minutes
	o := v.orderOf(s.ID, us[0])
	if _, err := e.Pay(context.Background(), o.UserID, o.ID, "http://shop.test/n", ""); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	got := p.expires[o.OrderNo]
	p.mu.Unlock()
	if want := o.PayDeadline.Add(-2 * time.Second); !got.Equal(want) {
		t.Fatalf("the payment expires at %v, want 2 s before the deadline %v", got, o.PayDeadline)
	}
	if m := (&Engine{cfg: Config{PayWindow: 3 * time.Second}}).payMargin(); m != 300*time.Millisecond {
		t.Fatalf("a 3 s window's margin is %v, want 300ms", m)
	}
}

// failingCreate is a provider whose CreatePayment fails with err.
type failingCreate struct {
	payment.Provider
	err error
}

func (f *failingCreate) CreatePayment(context.Context, payment.PaymentRequest) (payment.Payment, error) {
	return payment.Payment{}, f.err
}

// TestPayProviderAway: a provider that cannot be reached, does not answer
// in time, or answers "busy, try again" makes a pay busy (503, retried),
// not an internal error (found by review: a hung provider was a 500 for
// every payment); a provider's other refusal stays internal.
func TestPayProviderAway(t *testing.T) {
	v := newEnv(t)
	s, us := v.soldOut(1)
	f := &failingCreate{Provider: newFakeProvider()}
	b := v.backends()
	b.Payments, b.Clock = f, &sharedClock{}
	e := v.recovered(Config{}, &b)
	o := v.orderOf(s.ID, us[0])
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, seckill.EBusy},
		{"timeout", &url.Error{Op: "Post", URL: "http://provider.test/gateway.do", Err: os.ErrDeadlineExceeded}, seckill.EBusy},
		{"busy", &payment.ProviderError{Method: payment.MethodCreate, Code: payment.CodeUnavailable, Msg: "Service Currently Unavailable"}, seckill.EBusy},
		{"refusal", &payment.ProviderError{Method: payment.MethodCreate, Code: "40004", SubCode: "ACQ.SYSTEM_ERROR"}, seckill.EInternal},
	} {
		f.err = tt.err
		if _, err := e.Pay(context.Background(), o.UserID, o.ID, "http://shop.test/n", ""); seckill.ErrorCode(err) != tt.want {
			t.Errorf("%s: %v (code %q), want %q", tt.name, err, seckill.ErrorCode(err), tt.want)
		}
	}
}
