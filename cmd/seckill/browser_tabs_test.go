package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestBrowserOtherTabsPurchase: a page that did not place the purchase (a
// second tab, or one reloaded while the purchase is queued) has no ticket
// to tell a late failure of an older request of the buyer's from the
// outcome of their purchase. The older request's failure (expired, its
// reservation given back) is pushed first, then the success of the
// purchase another tab placed: the card must end on the order, not stay
// on the failure. (Before, the first final result of a sale was kept and
// the success ignored: the card offered Buy to a buyer holding an order.)
// Then the page is reloaded (it knows the order from the orders list
// only) and another late failure is pushed: the card stays on the order.
func TestBrowserOtherTabsPurchase(t *testing.T) {
	t.Parallel()
	const phone, password = "13800000003", "buyer-password"
	m, base, lamp := lampAndBuyer(t, phone, password)

	ctx := newBrowser(t, 1280, 900, false)
	var handshakes atomic.Int32
	if err := chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*network.EventWebSocketHandshakeResponseReceived); ok {
			handshakes.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pageHooks}); err != nil {
		t.Fatal(err)
	}
	card := `article[data-sale="` + lamp.id + `"]`
	brun(t, ctx, chromedp.Navigate(base+"/?nopoll"),
		chromedp.WaitVisible(chromedp.CSS(card)),
		chromedp.Click(chromedp.CSS(`#account button`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="phone"]`), phone),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#orders-section`)))
	waitFor(t, "the page's socket", func() bool { return handshakes.Load() > 0 }, 5*time.Second)

	pushes := evalFloat(t, ctx, `window.__resultPushes`)
	pushStaleFailure(t, m, phone, lamp.id)
	waitJS(t, ctx, fmt.Sprintf(`window.__resultPushes > %v`, pushes), 5*time.Second)

	// The other tab (here the API, as the same buyer) buys.
	tok := browserLogin(t, base, phone, password)
	var p struct{ Path string }
	apiCall(t, "POST", base+"/api/sales/"+lamp.id+"/path", tok, nil, 200, &p)
	apiCall(t, "POST", base+"/api/sales/"+lamp.id+"/purchase/"+p.Path, tok, nil, 202, nil)
	waitJS(t, ctx, `document.querySelector('`+card+` button[data-buy]').dataset.held === 'pending_payment'`, 10*time.Second)
	if got := evalString(t, ctx, `document.querySelector('`+card+` button[data-buy]').textContent`); got != "You got it — pay now" {
		t.Errorf("the card of the sale the buyer holds an order in says %q", got)
	}

	// Reloaded, the page knows the order from the orders list alone, and
	// no success will come: a failure of yet another older request, pushed
	// now, must not take the order away.
	sockets := handshakes.Load()
	brun(t, ctx, chromedp.Reload())
	waitJS(t, ctx, `document.querySelector('`+card+` button[data-buy]') && document.querySelector('`+card+` button[data-buy]').dataset.held === 'pending_payment'`, 10*time.Second)
	waitFor(t, "the reloaded page's socket", func() bool { return handshakes.Load() > sockets }, 5*time.Second)
	pushes = evalFloat(t, ctx, `window.__resultPushes`)
	pushStaleFailure(t, m, phone, lamp.id)
	waitJS(t, ctx, fmt.Sprintf(`window.__resultPushes > %v`, pushes), 5*time.Second)
	if got := evalString(t, ctx, `(() => { const b = document.querySelector('`+card+` button[data-buy]'); return (b.dataset.held || '-') + '|' + b.textContent; })()`); got != "pending_payment|You got it — pay now" {
		t.Errorf("after a late failure on the reloaded page, the card of the sale the buyer holds an order in says %q", got)
	}
}

// TestBrowserSessionEndsWithDialogOpen: the buy dialog is open when another
// tab logs the session out. The page closes the dialog (its Buy could only
// answer "log in first", with no way to from there), asks for a login,
// and after it opens the purchase again.
func TestBrowserSessionEndsWithDialogOpen(t *testing.T) {
	t.Parallel()
	const phone, password = "13800000005", "buyer-password"
	_, base, lamp := lampAndBuyer(t, phone, password)

	ctx := newBrowser(t, 1280, 900, false)
	card := `article[data-sale="` + lamp.id + `"]`
	login := []chromedp.Action[chromedp.Void]{
		chromedp.Click(chromedp.CSS(`#account button`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="phone"]`), phone),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	}
	brun(t, ctx, append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(base + "/"), chromedp.WaitVisible(chromedp.CSS(card))}, login...)...)
	waitJS(t, ctx, `!document.querySelector('#orders-section').hidden`, 5*time.Second)
	click(t, ctx, card+` button[data-buy]`)
	waitJS(t, ctx, `document.querySelector('#buy-dialog').open`, 5*time.Second)

	// Another tab of the same browser logs out: same cookie, same site.
	evalBool(t, ctx, `(fetch('/api/sessions', { method: 'DELETE' }), true)`)
	waitJS(t, ctx, `!document.querySelector('#buy-dialog').open && document.querySelector('#login-form') && document.querySelector('#login-form').offsetParent !== null`, 10*time.Second)

	brun(t, ctx, login[1:]...)
	waitJS(t, ctx, `document.querySelector('#buy-dialog').open && document.querySelector('#buy-title').textContent === 'Desk lamp'`, 10*time.Second)
}

// lampAndBuyer starts a server with a desk lamp on sale and a buyer.
func lampAndBuyer(t *testing.T, phone, password string) (*Main, string, browserSale) {
	t.Helper()
	m := startBrowserServer(t, "127.0.0.1:0", t.TempDir(), "")
	t.Cleanup(func() { _ = m.Close() })
	base := m.URL()
	admin := browserLogin(t, base, "19900000000", "admin-password")
	lamp := createBrowserSale(t, base, admin, "Desk lamp", 3, time.Now().Add(-time.Minute), false)
	apiCall(t, "POST", base+"/api/users", "", map[string]string{"phone": phone, "password": password}, 201, nil)
	return m, base, lamp
}

// TestBrowserDialogKeepsQuestionAcrossSoldOut: the buy dialog is open on
// a captcha sale's last unit while rivals take it and give it back, three
// times. The dialog goes sold out and back to Buy each time, keeping the
// question it showed and the answer typed: before, each return asked for
// a new question, and twenty flaps used up the buyer's supply (3 minutes
// without a question while the unit was on sale).
func TestBrowserDialogKeepsQuestionAcrossSoldOut(t *testing.T) {
	t.Parallel()
	d := openCaptchaDialog(t, "Last kettle", 1, "13800000006")
	m, base, sale, ctx, asks := d.m, d.base, d.sale, d.ctx, &d.asks
	const password = "buyer-password"
	question := evalString(t, ctx, `document.querySelector('#captcha-img').dataset.captchaId`)
	brun(t, ctx, chromedp.SendKeys(chromedp.CSS(`#captcha-answer`), "1"))

	for i := range 3 {
		rival := fmt.Sprintf("1390000002%d", i)
		apiCall(t, "POST", base+"/api/users", "", map[string]string{"phone": rival, "password": password}, 201, nil)
		tok := browserLogin(t, base, rival, password)
		var c struct {
			CaptchaID string `json:"captcha_id"`
		}
		apiCall(t, "GET", base+"/api/sales/"+sale.id+"/captcha", tok, nil, 200, &c)
		var p struct{ Path string }
		apiCall(t, "POST", base+"/api/sales/"+sale.id+"/path", tok, map[string]string{"captcha_id": c.CaptchaID, "answer": captchaAnswer(t, m, rival, c.CaptchaID)}, 200, &p)
		apiCall(t, "POST", base+"/api/sales/"+sale.id+"/purchase/"+p.Path, tok, nil, 202, nil)
		waitJS(t, ctx, `document.querySelector('#buy-submit').hidden`, 10*time.Second)
		var orders struct{ Orders []struct{ ID int64 } }
		waitFor(t, "the rival's order", func() bool {
			apiCall(t, "GET", base+"/api/orders", tok, nil, 200, &orders)
			return len(orders.Orders) == 1
		}, 10*time.Second)
		apiCall(t, "POST", fmt.Sprintf("%s/api/orders/%d/cancel", base, orders.Orders[0].ID), tok, nil, 200, nil)
		waitJS(t, ctx, `!document.querySelector('#buy-submit').hidden && !document.querySelector('#captcha-box').hidden`, 10*time.Second)
	}
	if got := evalString(t, ctx, `document.querySelector('#captcha-img').dataset.captchaId + '|' + document.querySelector('#captcha-answer').value`); got != question+"|1" {
		t.Errorf("after three flaps the dialog shows question|answer %q, want %q", got, question+"|1")
	}
	if n := asks.Load(); n != 1 {
		t.Errorf("the page asked for %d questions, want 1", n)
	}
}

// TestBrowserNewQuestionDoubleClick: two quick presses of New ask for one
// question, not two (the second of two asks, refused at the supply's cap,
// used to wipe the question the first brought, for 3 minutes).
func TestBrowserNewQuestionDoubleClick(t *testing.T) {
	t.Parallel()
	d := openCaptchaDialog(t, "Kettle", 3, "13800000008")
	ctx, asks := d.ctx, &d.asks
	first := evalString(t, ctx, `document.querySelector('#captcha-img').dataset.captchaId`)
	evalBool(t, ctx, `(() => { const b = document.querySelector('#captcha-refresh'); b.click(); b.click(); return true; })()`)
	waitJS(t, ctx, `!!document.querySelector('#captcha-img').dataset.captchaId && document.querySelector('#captcha-img').dataset.captchaId !== '`+first+`'`, 5*time.Second)
	time.Sleep(300 * time.Millisecond) // a second ask, if any, has gone out
	if n := asks.Load(); n != 2 {
		t.Errorf("opening the dialog and a double press of New asked for %d questions, want 2", n)
	}
}

// captchaDialog is a buyer's page with the buy dialog open on a captcha
// sale, and the count of captcha questions the page asked for.
type captchaDialog struct {
	m    *Main
	base string
	sale browserSale
	ctx  context.Context
	asks atomic.Int32
}

// openCaptchaDialog starts a server with a captcha sale of stock units,
// logs a new buyer in on a page and opens the sale's buy dialog.
func openCaptchaDialog(t *testing.T, name string, stock int, phone string) *captchaDialog {
	t.Helper()
	d := &captchaDialog{}
	d.m = startBrowserServer(t, "127.0.0.1:0", t.TempDir(), "")
	t.Cleanup(func() { _ = d.m.Close() })
	d.base = d.m.URL()
	admin := browserLogin(t, d.base, "19900000000", "admin-password")
	d.sale = createBrowserSale(t, d.base, admin, name, stock, time.Now().Add(-time.Minute), true)
	const password = "buyer-password"
	apiCall(t, "POST", d.base+"/api/users", "", map[string]string{"phone": phone, "password": password}, 201, nil)
	d.ctx = newBrowser(t, 1280, 900, false)
	if err := chromedp.Listen(d.ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && strings.Contains(e.Request.URL, "/captcha") {
			d.asks.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(d.ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	card := `article[data-sale="` + d.sale.id + `"]`
	brun(t, d.ctx, chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.CSS(card)),
		chromedp.Click(chromedp.CSS(`#account button`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="phone"]`), phone),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	waitJS(t, d.ctx, `!document.querySelector('#orders-section').hidden`, 5*time.Second)
	click(t, d.ctx, card+` button[data-buy]`)
	waitJS(t, d.ctx, `!!document.querySelector('#captcha-img').dataset.captchaId`, 5*time.Second)
	return d
}

// TestBrowserBusyPurchaseKeepsPath: a purchase answered 503 busy (with
// Retry-After) is tried again with the path already earned: no new
// question is asked or answered, and the retry buys. (Before, each busy
// answer spent a question; twenty used up the supply.)
func TestBrowserBusyPurchaseKeepsPath(t *testing.T) {
	t.Parallel()
	const phone = "13800000010"
	d := openCaptchaDialog(t, "Tea", 3, phone)
	var first atomic.Bool
	if err := chromedp.Listen(d.ctx, func(ev any) {
		e, ok := ev.(*fetch.EventRequestPaused)
		if !ok {
			return
		}
		go func() {
			if first.CompareAndSwap(false, true) {
				_, _ = chromedp.Call(d.ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: e.RequestID, ResponseCode: 503,
					ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}, {Name: "Retry-After", Value: "1"}},
					Body:            []byte(`{"error":{"code":"busy","message":"try again shortly"}}`)})
				return
			}
			_, _ = chromedp.Call(d.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
		}()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(d.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/purchase/*"}}}); err != nil {
		t.Fatal(err)
	}
	id := evalString(t, d.ctx, `document.querySelector('#captcha-img').dataset.captchaId`)
	brun(t, d.ctx, chromedp.SendKeys(chromedp.CSS(`#captcha-answer`), captchaAnswer(t, d.m, phone, id)))
	click(t, d.ctx, `#buy-submit`)
	waitFor(t, "the busy answer", first.Load, 5*time.Second)
	waitJS(t, d.ctx, `!document.querySelector('#buy-submit').disabled && document.querySelector('#captcha-box').hidden`, 5*time.Second)
	click(t, d.ctx, `#buy-submit`)
	waitJS(t, d.ctx, `document.querySelector('#buy-status').dataset.result === 'success'`, 10*time.Second)
	if n := d.asks.Load(); n != 1 {
		t.Errorf("a busy purchase and its retry asked for %d questions, want 1", n)
	}
}
