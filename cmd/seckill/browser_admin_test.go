package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"seckill/bench"
)

// socketHook runs in the admin's page before its own script and keeps the
// page's WebSockets in window.__sockets, so that the test can cut them.
const socketHook = `(() => {
  const W = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends W {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
})();`

// dashReadURL matches the requests by which the dashboard polls: the
// dashboard itself and the per-sale stats.
var dashReadURL = regexp.MustCompile(`/api/admin/(dashboard|sales/\d+/stats)(\?|$)`)

// TestBrowserAdmin drives the shop's page in headless chromium, on a
// desktop and on a 390×844 phone: the admin logs in, is offered no Buy
// button, is told in plain words that a price above the original price is
// refused, sees the server's own message for a mistake the page does not
// check, and watches the live dashboard, streamed on the admin's socket,
// count the crowd of a `seckill bench` run to the last unit without a
// reload and without one poll: units left, sold out, admissions, orders
// and refusals by reason, each drawn on its chart. With the stream cut
// and its handshakes held, the dashboard says so and polls; when the
// socket is back it streams again. On the phone nothing is wider than the
// screen. With SECKILL_SCREENSHOTS=1 it writes docs/browser-admin-*.png.
func TestBrowserAdmin(t *testing.T) {
	// Parallel with the other slow whole-server tests of this package
	// (issue 10: the suite without servers stays under a minute).
	t.Parallel()
	onEveryScreen(t, testBrowserAdmin)
}

func testBrowserAdmin(t *testing.T, name string, width, height int64, mobile bool) {
	m := startServer(t, false)
	direct := m.URL()
	front := newFrontDoor(t)
	front.serve(t, direct)
	base := front.URL // the page's way in; the test and the bench go direct
	ctx := newBrowser(t, width, height, mobile)
	var dashReads atomic.Int32
	var pageErrs pageErrors
	if err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if dashReadURL.MatchString(e.Request.URL) {
				dashReads.Add(1)
			}
		case *runtime.EventExceptionThrown:
			pageErrs.note(e)
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer pageErrs.report(t)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: socketHook}); err != nil {
		t.Fatal(err)
	}
	admin := browserLogin(t, direct, "19900000000", "admin-password")
	lamp := createBrowserSale(t, direct, admin, "Desk lamp", 3, time.Now().Add(-time.Minute), false)
	past := createBrowserSale(t, direct, admin, "Last year's kettle", 3, time.Now().Add(-4*time.Hour), false)

	brun(t, ctx, chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-sale="`+lamp.id+`"]`)),
		chromedp.Click(chromedp.CSS(`#account button:not(.primary)`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="phone"]`), "19900000000"),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), "admin-password"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#admin-section`)))
	waitJS(t, ctx, `document.querySelector('[data-dash="`+lamp.id+`"] [data-series="admitted"]')`, 5*time.Second)
	waitJS(t, ctx, `document.querySelector('#dash-mode').dataset.mode === 'stream'`, 5*time.Second)
	if n := evalFloat(t, ctx, `document.querySelectorAll('button[data-buy]').length`); n != 0 {
		t.Errorf("the admin is offered %v Buy buttons", n)
	}
	// A sale that ended hours ago has no row, until its card's Stats asks.
	if evalBool(t, ctx, `!!document.querySelector('[data-dash="`+past.id+`"]') || !document.querySelector('[data-dash-hidden="1"]')`) {
		t.Error("the dashboard shows a sale that ended two hours ago, or does not say it hides it")
	}
	click(t, ctx, `button[data-stats="`+past.id+`"]`)
	waitJS(t, ctx, `!!document.querySelector('[data-dash="`+past.id+`"]') && !document.querySelector('[data-dash-hidden]')`, 5*time.Second)

	// A price above the original: the page says so before sending...
	fill := `(() => {
	  const f = document.querySelector('#sale-form');
	  const p = (n) => String(n).padStart(2, '0');
	  const local = (d) => d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
	  f.name.value = 'Kettle'; f.price.value = '30'; f.original_price.value = '20'; f.stock.value = '5';
	  f.starts_at.value = local(new Date(Date.now() + 3600000)); f.ends_at.value = local(new Date(Date.now() + 7200000));
	  return true;
	})()`
	evalBool(t, ctx, fill)
	click(t, ctx, `#sale-form button[type="submit"]`)
	const refused = `document.querySelector('#sale-form [data-error]').textContent`
	waitJS(t, ctx, `/must not be above the original price/.test(`+refused+`)`, 3*time.Second)
	t.Logf("the form says: %s", evalString(t, ctx, refused))
	// What the page does not check itself, the server's own words explain.
	evalBool(t, ctx, `(() => { const f = document.querySelector('#sale-form'); f.original_price.value = '40'; f.ends_at.value = f.starts_at.value; return true; })()`)
	click(t, ctx, `#sale-form button[type="submit"]`)
	waitJS(t, ctx, `/ends_at must be after starts_at/.test(`+refused+`)`, 3*time.Second)

	// A crowd buys a sale out; the stream brings the dashboard every count
	// of it, and the page asks for none.
	const users, stock = 120, 40
	reads := dashReads.Load()
	done := make(chan error, 1)
	go func() {
		bctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		res, err := bench.Run(bctx, bench.Config{Target: direct, AdminPhone: "19900000000", AdminPassword: "admin-password",
			Users: users, Stock: stock, StartIn: 6 * time.Second, Conns: 8})
		if err == nil && len(res.Failed()) > 0 {
			err = fmt.Errorf("broken invariants: %v", res.Failed())
		}
		done <- err
	}()
	row := `[...document.querySelectorAll('[data-dash]')].find((r) => /bench/.test(r.textContent))`
	waitJS(t, ctx, row, 15*time.Second)
	id := evalString(t, ctx, row+`.dataset.dash`)
	sel := `document.querySelector('[data-dash="` + id + `"]')`
	text := func(q string) string { return sel + `.querySelector('` + q + `').textContent` }
	waitJS(t, ctx, sel+`.dataset.status === 'sold_out' && `+text(`[data-dash-left]`)+` === '0 / `+strconv.Itoa(stock)+` left'`, 60*time.Second)
	if err := <-done; err != nil {
		t.Fatalf("bench: %v", err)
	}
	n := strconv.Itoa(stock)
	waitJS(t, ctx, text(`[data-series="admitted"]`)+` === '`+n+`' && `+text(`[data-series="orders"]`)+` === '`+n+`' && `+text(`[data-stat="orders"]`)+` === '`+n+`'`, 10*time.Second)
	waitJS(t, ctx, sel+`.querySelector('[data-refused="sold_out"]')`, 5*time.Second)
	t.Logf("the dashboard: %s admitted, %s orders (peak %s/s), %s refused, %s of them sold out",
		evalString(t, ctx, text(`[data-series="admitted"]`)), evalString(t, ctx, text(`[data-series="orders"]`)),
		evalString(t, ctx, text(`[data-series="peak"]`)), evalString(t, ctx, text(`[data-series="refused"]`)),
		evalString(t, ctx, text(`[data-refused="sold_out"]`)))
	if got := dashReads.Load() - reads; got != 0 {
		t.Errorf("the page read the dashboard %d times while its stream was up", got)
	}
	// Each chart has drawn its line or bars: sell-through and refusals in
	// red (sold out), admissions in green.
	drawn := func(chart, pixel string) bool {
		return evalBool(t, ctx, `(() => { const c = `+sel+`.querySelector('canvas[data-chart="`+chart+`"]'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		  for (let i = 0; i < d.length; i += 4) { const [r, g, b] = [d[i], d[i + 1], d[i + 2]]; if (`+pixel+`) return true; } return false; })()`)
	}
	for _, c := range []struct{ chart, pixel string }{
		{"sold", `r > 200 && g < 100`}, {"flow", `g > 130 && r < 80 && b < 120`}, {"refused", `r > 200 && g < 100`},
	} {
		if !drawn(c.chart, c.pixel) {
			t.Errorf("the %s chart draws nothing", c.chart)
		}
	}
	if mobile {
		// Usable on the phone: nothing runs off the screen.
		if !evalBool(t, ctx, `document.documentElement.scrollWidth <= window.innerWidth && [...document.querySelectorAll('#admin-section canvas, #admin-section button')].every((e) => e.getBoundingClientRect().right <= window.innerWidth)`) {
			t.Errorf("the dashboard is wider than the phone: %v px in %v", evalFloat(t, ctx, `document.documentElement.scrollWidth`), evalFloat(t, ctx, `window.innerWidth`))
		}
	}
	if os.Getenv("SECKILL_SCREENSHOTS") == "1" {
		png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(`#dashboard`)))
		if err != nil {
			t.Fatal(err)
		}
		writeScreenshot(t, name, "admin", png)
	}

	// The stream is cut and cannot come back (its handshakes wait at the
	// front door): the dashboard says so and polls; once the socket is
	// back it streams again.
	front.hold(holdAdminSockets)
	reads = dashReads.Load()
	evalBool(t, ctx, `(window.__sockets.forEach((s) => s.close()), true)`)
	waitJS(t, ctx, `document.querySelector('#dash-mode').dataset.mode === 'poll' && /down/.test(document.querySelector('#dash-mode').textContent)`, 5*time.Second)
	waitFor(t, "a poll of the dashboard", func() bool { return dashReads.Load() > reads }, 5*time.Second)
	if front.release(holdAdminSockets) == 0 {
		t.Error("the page did not try to open its socket again")
	}
	waitJS(t, ctx, `document.querySelector('#dash-mode').dataset.mode === 'stream'`, 10*time.Second)
}
