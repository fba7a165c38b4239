package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"seckill"
	"seckill/httpapi"
	"seckill/internal/testenv"
)

// chromiumPath is Debian's chromium, which .ci/services.sh installs.
const chromiumPath = "/usr/bin/chromium"

// phoneSkew is how far the browser's clock is off in the browser tests: a
// phone whose clock runs 37 s fast must still count down to the server's
// start.
const phoneSkew = 37 * time.Second

// pageHooks runs in the page before its own script. It makes Date.now
// run phoneSkew fast (window.__skew), and records in window.__unlock the true time (the
// system clock, which the server in this process reads too) at which each
// sale's Buy button turned on, for the test to compare with the start. It
// watches every change of the page, not samples of it that a loaded
// machine may space out: window.__zero notes the sales whose countdown
// read 00:00:00 with Buy off, window.__early what a countdown to the
// start read while Buy was on.
//
// It also records in window.__unlockLate how late the browser ran the
// timer whose callback turned Buy on: the true time Buy was seen on less
// the time that timer was due (0 when no timer did it). The page arms its
// timer for the start; on a loaded machine the browser runs it when it
// gets to it, which is the machine's delay, not the page's, and the test
// allows that much on top of its bounds.
var pageHooks = fmt.Sprintf(`(() => {
  const real = Date.now.bind(Date);
  window.__skew = %d; // a test may step the clock
  Date.now = () => real() + window.__skew;
  window.__unlock = {};
  window.__unlockLate = {};
  let due = null; // when the timer whose callback runs now was due (true time)
  const arm = window.setTimeout.bind(window);
  window.setTimeout = (fn, ms, ...args) => {
    if (typeof fn !== 'function') return arm(fn, ms, ...args);
    const at = real() + Math.max(0, Number(ms) || 0);
    return arm((...a) => {
      due = at;
      try {
        return fn(...a);
      } finally {
        // After the mutation observer's microtask, which the callback's
        // first change queued.
        queueMicrotask(() => { due = null; });
      }
    }, ms, ...args);
  };
  window.__zero = {};
  window.__early = {};
  const look = () => {
    for (const card of document.querySelectorAll('article[data-sale]')) {
      const id = card.getAttribute('data-sale');
      const b = card.querySelector('button[data-buy]');
      const countdown = (card.querySelector('.countdown') || {}).textContent || '';
      if (!b) continue;
      if (b.disabled && countdown === 'Starts in 00:00:00') window.__zero[id] = true;
      if (!b.disabled && countdown.startsWith('Starts in')) window.__early[id] = countdown;
      if (!b.disabled && card.getAttribute('data-status') === 'active' && !(id in window.__unlock)) {
        const now = real();
        window.__unlock[id] = now;
        window.__unlockLate[id] = due === null ? 0 : Math.max(0, now - due);
      }
    }
  };
  new MutationObserver(look).observe(document, {subtree: true, childList: true, attributes: true});
  // window.__resultPushes counts the order_result pushes the page's
  // sockets received; this listener runs before the page's own.
  window.__resultPushes = 0;
  const Socket = window.WebSocket;
  window.WebSocket = class extends Socket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        try { if (JSON.parse(ev.data).type === 'order_result') window.__resultPushes++; } catch {}
      });
    }
  };
})();`, phoneSkew.Milliseconds())

// TestBrowserBuyer drives the buyer's page in headless chromium, on a
// desktop and on a 390×844 phone, through a front door (a reverse proxy,
// as deployed): sign up, and find the session token in the HttpOnly cookie
// only (not in localStorage, sessionStorage or document.cookie, and no
// request with an Authorization header); watch a sale's countdown reach
// zero and Buy wake within 50 ms of the start by the server's clock (the
// browser's own clock being 37 s off), solve the captcha, buy and see the
// result by push with polling turned off, see a sold-out sale's Buy turn
// off without a reload; buy another sale, with the failure of an older
// request of the buyer's pushed while the 202 is on its way (the page
// waits for its own purchase's result), and cancel it after confirming,
// and see its card get the unit back; pay the first order on the sandbox
// provider's page, come back to the orders and see the order turn paid by
// push (the provider's notification is held until the page is back, and
// the page's order reads are held while it turns); see the offline banner
// while the server is down and go when it is back; log out and lose the
// cookie. With SECKILL_SCREENSHOTS=1 it writes the README's screenshots
// into docs/.
func TestBrowserBuyer(t *testing.T) { onEveryScreen(t, testBrowserBuyer) }

// onEveryScreen runs test as a subtest on each screen every browser test
// runs on (named desktop and phone), once chromium is there.
func onEveryScreen(t *testing.T, test func(t *testing.T, name string, width, height int64, mobile bool)) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, chromiumPath+" is missing: apt-get install chromium (.ci/services.sh does)")
	}
	for _, vp := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{
		{"desktop", 1280, 900, false},
		{"phone", 390, 844, true},
	} {
		t.Run(vp.name, func(t *testing.T) { test(t, vp.name, vp.width, vp.height, vp.mobile) })
	}
}

func testBrowserBuyer(t *testing.T, name string, width, height int64, mobile bool) {
	dir := t.TempDir()
	front := newFrontDoor(t)
	m := startBrowserServer(t, "127.0.0.1:0", dir, front.URL)
	defer func() { _ = m.Close() }()
	front.serve(t, m.URL())
	base := front.URL // the page's and the provider's way in
	direct := m.URL() // the test's own calls

	ctx := newBrowser(t, width, height, mobile)
	var resultPolls, handshakes atomic.Int32
	var pageErrs pageErrors
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if strings.Contains(e.Request.URL, "/result") {
				resultPolls.Add(1)
			}
		case *network.EventWebSocketHandshakeResponseReceived:
			// The server registers a socket before it answers the
			// handshake: from here on the socket gets the user's pushes.
			handshakes.Add(1)
		case *runtime.EventExceptionThrown:
			pageErrs.note(e)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pageHooks}); err != nil {
		t.Fatal(err)
	}

	// The sales: one opening in a few seconds (with a captcha), one on sale
	// with its last unit, one far ahead for the screenshots.
	admin := browserLogin(t, direct, "19900000000", "admin-password")
	start := time.Now().Add(5 * time.Second).Truncate(time.Second)
	flash := createBrowserSale(t, direct, admin, "Phone X flash sale", 5, start, true)
	last := createBrowserSale(t, direct, admin, "Last headphones", 1, time.Now().Add(-time.Minute), false)
	lamp := createBrowserSale(t, direct, admin, "Desk lamp", 3, time.Now().Add(-time.Minute), false)
	createBrowserSale(t, direct, admin, "Tomorrow's rice cooker", 100, time.Now().Add(20*time.Hour), true)
	startsAt := flash.startsAt

	// Sign up, with the page's plain word on a bad phone number first.
	brun(t, ctx, chromedp.Navigate(base+"/?nopoll"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-sale="`+flash.id+`"]`)),
		chromedp.Click(chromedp.CSS(`#account button.primary`)),
		chromedp.SendKeys(chromedp.CSS(`#register-form input[name="phone"]`), "12345"))
	if msg := evalString(t, ctx, `document.querySelector('#register-form input[name="phone"]').validationMessage`); msg != "Enter your 11-digit phone number, starting with 1." {
		t.Errorf("a bad phone says %q", msg)
	}
	evalBool(t, ctx, `(() => { const i = document.querySelector('#register-form input[name="phone"]'); i.value = ''; i.dispatchEvent(new Event('input')); return true; })()`)
	brun(t, ctx,
		chromedp.SendKeys(chromedp.CSS(`#register-form input[name="phone"]`), "13800000001"),
		chromedp.SendKeys(chromedp.CSS(`#register-form input[name="password"]`), "buyer-password"),
		chromedp.SendKeys(chromedp.CSS(`#register-form input[name="nickname"]`), "Lin"),
		chromedp.Click(chromedp.CSS(`#register-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#orders-section`)))
	checkTokenInCookieOnly(t, ctx, base)

	// The page knows the server's clock despite its own: the offset it
	// measured undoes the skew, to within half the round trip of its best
	// sample (the server's time may have been read anywhere in it): 50 ms,
	// or more on a machine so loaded that no trip was short (in CI once
	// 62 ms off).
	off, _ := strconv.Atoi(evalString(t, ctx, `document.documentElement.dataset.clockOffset || ''`))
	rtt, _ := strconv.Atoi(evalString(t, ctx, `document.documentElement.dataset.clockRtt || ''`))
	tol := max(50*time.Millisecond, time.Duration(rtt)*time.Millisecond/2+5*time.Millisecond)
	if d := time.Duration(off)*time.Millisecond + phoneSkew; d < -tol || d > tol {
		t.Errorf("the page's clock offset is %d ms (best round trip %d ms); the browser runs %v fast", off, rtt, phoneSkew)
	} else {
		t.Logf("the page's clock offset is off by %v (best round trip %d ms)", d, rtt)
	}

	// The countdown reaches zero, then Buy wakes at the start: the page's
	// hooks saw every change, however late the test looks.
	card := `article[data-sale="` + flash.id + `"]`
	waitJS(t, ctx, `!document.querySelector('`+card+` button[data-buy]').disabled`, time.Until(startsAt)+10*time.Second)
	if early := evalString(t, ctx, `window.__early['`+flash.id+`'] || ''`); early != "" {
		t.Fatalf("Buy is on while the countdown still runs (%q)", early)
	}
	if !evalBool(t, ctx, `!!window.__zero['`+flash.id+`']`) {
		t.Error("the countdown never read 00:00:00 before Buy woke")
	}
	pageAt, _ := strconv.ParseInt(evalString(t, ctx, `document.querySelector('`+card+`').dataset.unlockedAt || ''`), 10, 64)
	// However late the browser ran the timer that woke Buy (the machine's
	// delay), on top of 50 ms by the page's clock and tol by the server's.
	late := time.Duration(evalFloat(t, ctx, `window.__unlockLate['`+flash.id+`'] || 0`) * float64(time.Millisecond))
	if d := time.UnixMilli(pageAt).Sub(startsAt); d < 0 || d > 50*time.Millisecond+late {
		t.Errorf("by the page's server clock Buy woke %v after the start, want within [0, 50ms + %v the browser ran its timer late]", d, late)
	}
	trueAt := evalFloat(t, ctx, `window.__unlock['`+flash.id+`'] || 0`)
	trueD := time.UnixMicro(int64(trueAt * 1000)).Sub(startsAt)
	if trueD < -tol || trueD > tol+late {
		t.Errorf("by the server's clock Buy woke %v from the start, want within [-%v, %v + %v the browser ran its timer late]", trueD, tol, tol, late)
	}
	t.Logf("Buy woke %v after the start by the page's corrected clock, %v by the server's; the browser ran the timer %v late", time.UnixMilli(pageAt).Sub(startsAt), trueD, late)

	// Buy: the captcha's answer comes from the server's store (the test's
	// hook: no route serves it), the result by push alone.
	click(t, ctx, card+` button[data-buy]`)
	waitJS(t, ctx, `document.querySelector('#captcha-img[data-captcha-id]')`, 5*time.Second)
	id := evalString(t, ctx, `document.querySelector('#captcha-img').dataset.captchaId`)
	brun(t, ctx, chromedp.SendKeys(chromedp.CSS(`#captcha-answer`), captchaAnswer(t, m, "13800000001", id)))
	screenshot(t, ctx, name, "buy")
	click(t, ctx, `#buy-submit`)
	waitJS(t, ctx, `document.querySelector('#buy-status').dataset.result === 'success'`, 10*time.Second)
	if n := resultPolls.Load(); n != 0 {
		t.Errorf("the page polled /result %d times with polling off", n)
	}
	waitJS(t, ctx, `document.querySelector('`+card+` button[data-buy]').dataset.held === 'pending_payment'`, 5*time.Second)
	if got := evalString(t, ctx, `document.querySelector('`+card+` button[data-buy]').textContent`); got != "You got it — pay now" {
		t.Errorf("the bought sale's card says %q", got)
	}
	waitJS(t, ctx, `document.querySelector('#buy-order button[data-pay]')`, 5*time.Second)
	order := evalString(t, ctx, `document.querySelector('#buy-order').dataset.order || ''`)
	click(t, ctx, `#buy-close`)
	row := `#orders tr[data-order="` + order + `"]`
	waitJS(t, ctx, `document.querySelector('`+row+` [data-deadline]') !== null`, 5*time.Second)
	// The pay deadline counts down next to Pay and Cancel.
	if txt := evalString(t, ctx, `document.querySelector('`+row+`').textContent`); !strings.Contains(txt, "Pay within 00:") || !strings.Contains(txt, "Awaiting payment") {
		t.Errorf("the order shows no pay countdown: %q", txt)
	}
	if !evalBool(t, ctx, `!!document.querySelector('`+row+` button[data-pay]') && !!document.querySelector('`+row+` button[data-cancel]')`) {
		t.Error("an order awaiting payment offers no Pay and Cancel")
	}

	// Sold out: the dialog is open on the last unit when a rival takes
	// it; the page's purchase is refused and Buy goes off at once.
	lastCard := `article[data-sale="` + last.id + `"]`
	click(t, ctx, lastCard+` button[data-buy]`)
	waitJS(t, ctx, `document.querySelector('#buy-dialog').open && !document.querySelector('#buy-submit').hidden`, 5*time.Second)
	rivalBuys(t, direct, last.id)
	evalBool(t, ctx, `(document.querySelector('#buy-submit').click(), true)`)
	// The sale's push may turn the card off before the refusal is back.
	waitJS(t, ctx, `document.querySelector('`+lastCard+` button[data-buy]').disabled && /Sold out/.test(document.querySelector('#buy-status').textContent)`, 4*time.Second)
	status := evalString(t, ctx, `document.querySelector('#buy-status').textContent`)
	if !strings.Contains(status, "Sold out") || strings.Contains(status, "(sold_out)") {
		t.Errorf("the dialog says %q after the last unit went", status)
	}
	if evalBool(t, ctx, `(() => { const b = document.querySelector('#buy-submit'); return !b.hidden && !b.disabled; })()`) {
		t.Error("the dialog's Buy stays on for a sold-out sale")
	}
	click(t, ctx, `#buy-close`)
	// What can be bought comes first, then sold out, upcoming, ended.
	if order := evalString(t, ctx, `[...document.querySelectorAll('#sales article[data-sale]')].map((a) => a.dataset.status).join(' ')`); order != "active active sold_out upcoming" {
		t.Errorf("the cards are in the order %q", order)
	}

	// Cancel: the buyer buys a lamp, gives it up after confirming, and the
	// lamp's card shows the unit back on sale (its stock read again).
	lampCard := `article[data-sale="` + lamp.id + `"]`
	lampLeft := `document.querySelector('[data-left="` + lamp.id + `"]').textContent`
	click(t, ctx, lampCard+` button[data-buy]`)
	waitJS(t, ctx, `document.querySelector('#buy-dialog').open && !document.querySelector('#buy-submit').hidden`, 5*time.Second)
	// While the purchase's 202 is on its way, the failure of an older
	// request of the buyer's is pushed: one whose reservation was given
	// back before it reached the queue, refused when it landed late. It
	// names its own ticket, and the page waits for its purchase's.
	front.hold(holdPurchases)
	pushes := evalFloat(t, ctx, `window.__resultPushes`)
	click(t, ctx, `#buy-submit`)
	waitFor(t, "the page's purchase at the front door", func() bool { return front.arrived(holdPurchases) == 1 }, 5*time.Second)
	pushStaleFailure(t, m, "13800000001", lamp.id)
	waitJS(t, ctx, fmt.Sprintf(`window.__resultPushes > %v`, pushes), 5*time.Second)
	front.release(holdPurchases)
	waitJS(t, ctx, `document.querySelector('#buy-status').dataset.result === 'success' && document.querySelector('#buy-order').dataset.order`, 10*time.Second)
	lampRow := `#orders tr[data-order="` + evalString(t, ctx, `document.querySelector('#buy-order').dataset.order`) + `"]`
	click(t, ctx, `#buy-close`)
	waitJS(t, ctx, lampLeft+` === '2 / 3 left'`, 5*time.Second)
	click(t, ctx, lampRow+` button[data-cancel]`)
	waitJS(t, ctx, `document.querySelector('#confirm-dialog').open`, 5*time.Second)
	if q := evalString(t, ctx, `document.querySelector('#confirm-text').textContent`); !strings.Contains(q, "Cancel order") || !strings.Contains(q, "goes back on sale") {
		t.Errorf("the cancel asks %q", q)
	}
	click(t, ctx, `#confirm-yes`)
	waitJS(t, ctx, `document.querySelector('`+lampRow+`').dataset.status === 'cancelled'`, 5*time.Second)
	waitJS(t, ctx, lampLeft+` === '3 / 3 left'`, 5*time.Second)
	if got := evalString(t, ctx, `document.querySelector('`+lampRow+` .badge').textContent + '|' + document.querySelector('`+lampCard+` button[data-buy]').textContent`); got != "Cancelled|Order cancelled" {
		t.Errorf("the cancelled order and its card say %q", got)
	}
	if evalBool(t, ctx, `!!document.querySelector('`+lampRow+` button')`) {
		t.Error("a cancelled order still offers Pay or Cancel")
	}
	// The keyboard focus stays on a card's button while the cards are
	// drawn again (a rival takes a lamp: the lamp's card is rebuilt).
	flashBuy := `article[data-sale="` + flash.id + `"] button[data-buy]`
	if !evalBool(t, ctx, `(() => { const b = document.querySelector('`+flashBuy+`'); b.focus(); return document.activeElement === b; })()`) {
		t.Fatal("could not focus the first sale's button")
	}
	rivalBuysAs(t, direct, lamp.id, "13900000010")
	waitJS(t, ctx, lampLeft+` === '2 / 3 left'`, 5*time.Second)
	if !evalBool(t, ctx, `document.activeElement && document.activeElement.matches('`+flashBuy+`')`) {
		t.Errorf("after the cards were drawn again the focus is on %s", evalString(t, ctx, `document.activeElement.outerHTML.slice(0, 80)`))
	}
	screenshot(t, ctx, name, "sales")
	screenshotOrders(t, ctx, name)

	// Pay: the buyer goes to the provider's page in this tab and pays. The
	// provider's notification waits at the front door until the page is
	// back on the orders with its socket open; then the page's order reads
	// wait there too, so "paid" can only come by push.
	front.hold(holdNotify)
	sockets := handshakes.Load()
	click(t, ctx, row+` button[data-pay]`)
	waitPage(t, ctx, `location.pathname.startsWith('/sandbox/pay/') && document.querySelector('button[value="pay"]')`, 10*time.Second)
	click(t, ctx, `button[value="pay"]`)
	waitPage(t, ctx, `location.pathname === '/' && document.querySelector('`+row+`') && document.querySelector('`+row+`').dataset.status === 'pending_payment'`, 10*time.Second)
	waitFor(t, "the page's socket after the return", func() bool { return handshakes.Load() > sockets }, 5*time.Second)
	if evalString(t, ctx, `location.search`) != "" {
		t.Errorf("the provider's return fields stay in the address: %q", evalString(t, ctx, `location.search`))
	}
	if !evalBool(t, ctx, `document.querySelector('`+row+`').classList.contains('returned')`) {
		t.Error("the order paid for is not marked on return")
	}
	front.hold(holdOrderReads)
	if n := front.release(holdNotify); n == 0 {
		t.Error("no notification from the provider came while the page came back")
	}
	waitJS(t, ctx, `document.querySelector('`+row+`').dataset.status === 'paid'`, 10*time.Second)
	// At most the one read the push asks for (the time of payment), and
	// no poll before it.
	if n := front.release(holdOrderReads); n > 1 {
		t.Errorf("the page read its orders %d times while the payment came in", n)
	} else {
		t.Logf("paid by push; %d order read held meanwhile", n)
	}
	waitJS(t, ctx, `!document.querySelector('`+row+` [data-deadline]') && !/–/.test(document.querySelector('`+row+` td:nth-child(6)').textContent)`, 5*time.Second)
	if got := evalString(t, ctx, `document.querySelector('`+row+` .badge').textContent`); got != "Paid" {
		t.Errorf("the paid order says %q", got)
	}
	if evalBool(t, ctx, `!!document.querySelector('`+row+` button')`) {
		t.Error("a paid order still offers Pay or Cancel")
	}

	// Offline: the server stops, the banner shows and Buy is off; the
	// server comes back on the same port and data, the banner goes.
	addr := strings.TrimPrefix(direct, "http://")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, `!document.querySelector('#offline').hidden`, 10*time.Second)
	if !evalBool(t, ctx, `[...document.querySelectorAll('button[data-buy]')].every((b) => b.disabled)`) {
		t.Error("a Buy button stays on while the server is down")
	}
	m = startBrowserServer(t, addr, dir, front.URL)
	waitJS(t, ctx, `document.querySelector('#offline').hidden`, 10*time.Second)
	waitJS(t, ctx, `document.querySelector('#orders-section') && !document.querySelector('#orders-section').hidden`, 5*time.Second)

	// The phone's clock steps back a minute (it synced): the page's
	// offset follows at its next sample of the server's time (the sales
	// refresh every 5 s), not once the samples from before age out —
	// though theirs were quicker round trips (the front door now holds
	// each request 200 ms).
	front.delay.Store(int64(200 * time.Millisecond))
	n0 := evalString(t, ctx, `(window.__skew -= 60000, document.documentElement.dataset.clockSamples)`)
	waitJS(t, ctx, `document.documentElement.dataset.clockSamples !== '`+n0+`'`, 12*time.Second)
	off, _ = strconv.Atoi(evalString(t, ctx, `document.documentElement.dataset.clockOffset || ''`))
	if want := -(phoneSkew - time.Minute).Milliseconds(); off < int(want)-1000 || off > int(want)+1000 {
		t.Errorf("after the phone's clock stepped back a minute, the page's first sample left its offset at %d ms, want about %d", off, want)
	}
	front.delay.Store(0)

	// Log out: the server clears the cookie.
	click(t, ctx, `#account button`)
	waitJS(t, ctx, `document.querySelector('#orders-section').hidden`, 5*time.Second)
	if tok := sessionCookie(t, ctx, base); tok != nil {
		t.Errorf("the session cookie outlives the logout: %+v", tok)
	}
	if n := front.authorized.Load(); n != 0 {
		t.Errorf("the page sent %d requests with an Authorization header", n)
	}

	pageErrs.report(t)
}

// pageErrors collects a page's uncaught exceptions.
type pageErrors struct {
	sync.Mutex
	list []string
}

func (p *pageErrors) note(e *runtime.EventExceptionThrown) {
	msg := e.ExceptionDetails.Text
	if e.ExceptionDetails.Exception != nil {
		msg += " " + e.ExceptionDetails.Exception.Description
	}
	p.Lock()
	p.list = append(p.list, msg)
	p.Unlock()
}

// report fails the test with each exception noted.
func (p *pageErrors) report(t *testing.T) {
	t.Helper()
	p.Lock()
	defer p.Unlock()
	for _, e := range p.list {
		t.Errorf("page error: %s", e)
	}
}

// The kinds of request the front door can hold.
const (
	holdNotify       = "the provider's notifications"
	holdOrderReads   = "the page's order reads"
	holdAdminSockets = "the admin's socket handshakes"
	holdPurchases    = "the page's purchases"
)

// frontDoor is a reverse proxy in front of the server, as a deployment
// has one (passing Host unchanged): the page and the sandbox provider
// reach the server through it, at URL. The test holds kinds of request
// at it, and it counts the requests that carry an Authorization header
// (the test's own calls go to the server directly). When the server is
// down it drops the connection, as the server's own address would.
type frontDoor struct {
	URL        string
	ln         net.Listener
	authorized atomic.Int32
	// retryAfter, when set before serve, replaces the Retry-After of
	// every 429 passing through.
	retryAfter string
	// delay holds every request this long (ns) before passing it on.
	delay atomic.Int64

	mu    sync.Mutex
	gates map[string]chan struct{} // kind -> closed on release
	held  map[string]int           // kind -> requests held since hold
}

func newFrontDoor(t *testing.T) *frontDoor {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &frontDoor{URL: "http://" + ln.Addr().String(), ln: ln, gates: map[string]chan struct{}{}, held: map[string]int{}}
}

// serve passes requests on to the server at target until the test ends.
func (f *frontDoor) serve(t *testing.T, target string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // the server checks Origin against it
		},
		ModifyResponse: func(r *http.Response) error {
			if r.StatusCode == http.StatusTooManyRequests && f.retryAfter != "" {
				r.Header.Set("Retry-After", f.retryAfter)
			}
			return nil
		},
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) { panic(http.ErrAbortHandler) },
		ErrorLog:     log.New(io.Discard, "", 0),
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			f.authorized.Add(1)
		}
		if d := time.Duration(f.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		if gate := f.gate(r); gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(f.ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// gate returns the gate r waits at, counting it, or nil.
func (f *frontDoor) gate(r *http.Request) chan struct{} {
	var kind string
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/payments/notify":
		kind = holdNotify
	case r.Method == http.MethodGet && (r.URL.Path == "/api/orders" || strings.HasPrefix(r.URL.Path, "/api/orders/")):
		kind = holdOrderReads
	case r.URL.Path == "/api/admin/ws":
		kind = holdAdminSockets
	case r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/purchase/"):
		kind = holdPurchases
	default:
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	gate := f.gates[kind]
	if gate != nil {
		f.held[kind]++
	}
	return gate
}

// hold makes requests of kind wait until release.
func (f *frontDoor) hold(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gates[kind] = make(chan struct{})
	f.held[kind] = 0
}

// arrived returns how many requests of kind arrived since hold.
func (f *frontDoor) arrived(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[kind]
}

// release lets the held requests of kind go on, and the next ones pass;
// it returns how many arrived since hold.
func (f *frontDoor) release(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gate := f.gates[kind]; gate != nil {
		close(gate)
	}
	delete(f.gates, kind)
	return f.held[kind]
}

// sessionCookie returns the browser's session cookie for base, or nil.
func sessionCookie(t *testing.T, ctx context.Context, base string) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == httpapi.CookieName {
			return c
		}
	}
	return nil
}

// checkTokenInCookieOnly checks that the page, logged in, holds its
// session in an HttpOnly cookie and nowhere a script can read it.
func checkTokenInCookieOnly(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	c := sessionCookie(t, ctx, base)
	if c == nil || c.Value == "" {
		t.Fatal("no session cookie after the login")
	}
	if !c.HTTPOnly {
		t.Error("the session cookie is not HttpOnly")
	}
	seen := evalString(t, ctx, `JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])`)
	if strings.Contains(seen, c.Value) {
		t.Errorf("a script can read the session token: %s", seen)
	}
}

// newBrowser starts headless chromium on a fresh profile with a viewport
// of width×height (a phone's, touch and all, when mobile) and returns its
// context, closed at the end of the test.
func newBrowser(t *testing.T, width, height int64, mobile bool) context.Context {
	t.Helper()
	return newBrowserLang(t, "en-US", width, height, mobile)
}

// newBrowserLang is newBrowser speaking lang (navigator.language).
func newBrowserLang(t *testing.T, lang string, width, height int64, mobile bool) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", lang),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	vp := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
	if mobile {
		vp = []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch}
	}
	// Open the tab first: Listen then sees every event of the page.
	brun(t, ctx, chromedp.EmulateViewport(width, height, vp...))
	if lang == "en-US" {
		return ctx
	}
	// Headless chromium's navigator.language does not follow --lang: the
	// tab is told the language (navigator.language and Accept-Language)
	// by emulation, with its own user agent.
	ver, err := chromedp.CallBrowser(ctx, browser.GetVersion, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ver.UserAgent, AcceptLanguage: lang}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func brun(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// eval returns the value of the JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func evalString(t *testing.T, ctx context.Context, expr string) string {
	return eval[string](t, ctx, expr)
}
func evalBool(t *testing.T, ctx context.Context, expr string) bool { return eval[bool](t, ctx, expr) }
func evalFloat(t *testing.T, ctx context.Context, expr string) float64 {
	return eval[float64](t, ctx, expr)
}

// click clicks the element of the CSS selector once it is there and on,
// from the page's script: a card's node may be replaced between a
// mouse event's aim and its landing.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	q := "document.querySelector(" + strconv.Quote(sel) + ")"
	waitJS(t, ctx, q+` && !`+q+`.disabled`, 5*time.Second)
	evalBool(t, ctx, `(`+q+`.click(), true)`)
}

// waitJS waits until expr is true in the page, failing after timeout.
func waitJS(t *testing.T, ctx context.Context, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			status, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('#buy-status')||{}).textContent || ''`))
			t.Fatalf("after %v still not true: %s (dialog status %q)", timeout, expr, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPage is waitJS across a navigation: while the next document loads,
// evaluating fails, and it tries again.
func waitPage(t *testing.T, ctx context.Context, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still not true: %s (%v)", timeout, expr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor waits until cond holds, failing after timeout.
func waitFor(t *testing.T, what string, cond func() bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// screenshot writes docs/browser-<what>-<viewport>.png when
// SECKILL_SCREENSHOTS=1, so that a test run in CI leaves the tree alone.
func screenshot(t *testing.T, ctx context.Context, viewport, what string) {
	t.Helper()
	if os.Getenv("SECKILL_SCREENSHOTS") != "1" {
		return
	}
	evalBool(t, ctx, `(window.scrollTo(0, 0), true)`)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	writeScreenshot(t, viewport, what, png)
}

func screenshotOrders(t *testing.T, ctx context.Context, viewport string) {
	t.Helper()
	if os.Getenv("SECKILL_SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(`#orders-section`)))
	if err != nil {
		t.Fatal(err)
	}
	writeScreenshot(t, viewport, "orders", png)
}

func writeScreenshot(t *testing.T, viewport, what string, png []byte) {
	t.Helper()
	p := filepath.Join("..", "..", "docs", "browser-"+what+"-"+viewport+".png")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startBrowserServer runs `seckill serve` in this process on addr and the
// data directory dir (embedded backends, no operations listener), with
// admin 19900000000 / admin-password, reached by browsers and the payment
// provider at publicURL; tune changes the configuration first.
func startBrowserServer(t *testing.T, addr, dir, publicURL string, tune ...func(*Config)) *Main {
	t.Helper()
	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel = addr, dir, "error"
	m.Config.PublicURL = publicURL
	m.Config.Ops.Addr = "off"
	m.Config.AdminPhone, m.Config.AdminPassword = "19900000000", "admin-password"
	for _, f := range tune {
		f(&m.Config)
	}
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	return m
}

// captchaAnswer reads the answer of captcha id, issued to the buyer with
// this phone, from the server's store: the test's way through the captcha,
// in process, with no route for it. It puts the captcha back, so the
// page's answer is checked as usual.
func captchaAnswer(t *testing.T, m *Main, phone, id string) string {
	t.Helper()
	ctx := context.Background()
	u, err := m.db.UserByPhone(ctx, phone)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.shared.captchas.TakeCaptcha(ctx, id, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.shared.captchas.PutCaptcha(ctx, id, *c); err != nil {
		t.Fatal(err)
	}
	return c.Answer
}

// pushStaleFailure publishes on the result bus the failure of an older
// request of the buyer's in the sale (reason expired, under a ticket of
// its own), as the writer does for a request whose reservation the
// reconciler gave back before it reached the queue.
func pushStaleFailure(t *testing.T, m *Main, phone, saleID string) {
	t.Helper()
	u, err := m.db.UserByPhone(context.Background(), phone)
	if err != nil {
		t.Fatal(err)
	}
	sale, err := strconv.ParseInt(saleID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	err = m.engine.Results().PublishResults(context.Background(), []seckill.OrderResult{{SaleID: sale, UserID: u.ID,
		Result: seckill.Result{Status: seckill.ResultFailed, Reason: seckill.EExpired, Ticket: "an-older-ticket"}}})
	if err != nil {
		t.Fatal(err)
	}
}

type browserSale struct {
	id       string
	startsAt time.Time
}

func browserLogin(t *testing.T, base, phone, password string) string {
	t.Helper()
	var out struct{ Token string }
	apiCall(t, "POST", base+"/api/sessions", "", map[string]string{"phone": phone, "password": password}, 200, &out)
	return out.Token
}

func createBrowserSale(t *testing.T, base, token, name string, stock int, start time.Time, captcha bool) browserSale {
	t.Helper()
	var out struct {
		Sale struct {
			ID       int64     `json:"id"`
			StartsAt time.Time `json:"starts_at"`
		}
	}
	apiCall(t, "POST", base+"/api/admin/sales", token, map[string]any{
		"name": name, "description": "Genuine, shipped in 48 h.", "price_cents": 99900, "original_price_cents": 199900,
		"stock": stock, "starts_at": start.UTC(), "ends_at": start.Add(2 * time.Hour).UTC(), "require_captcha": captcha,
	}, 201, &out)
	return browserSale{id: strconv.FormatInt(out.Sale.ID, 10), startsAt: out.Sale.StartsAt}
}

// rivalBuys has another buyer take a unit of the sale (no captcha) and
// waits until the order is written.
func rivalBuys(t *testing.T, base, saleID string) { rivalBuysAs(t, base, saleID, "13900000009") }

// rivalBuysAs is rivalBuys by a new buyer of the given phone.
func rivalBuysAs(t *testing.T, base, saleID, phone string) {
	t.Helper()
	apiCall(t, "POST", base+"/api/users", "", map[string]string{"phone": phone, "password": "rival-password"}, 201, nil)
	tok := browserLogin(t, base, phone, "rival-password")
	var path struct{ Path string }
	apiCall(t, "POST", base+"/api/sales/"+saleID+"/path", tok, nil, 200, &path)
	apiCall(t, "POST", base+"/api/sales/"+saleID+"/purchase/"+path.Path, tok, nil, 202, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var res struct{ Status string }
		apiCall(t, "GET", base+"/api/sales/"+saleID+"/result", tok, nil, 200, &res)
		if res.Status == "success" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rival's purchase: %q", res.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
