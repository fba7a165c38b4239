package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"seckill/bench"
	"seckill/internal/testenv"
)

// TestBrowserAdmin drives the shop's page in headless chromium: the admin
// logs in, is offered no Buy button, is told in plain words that a price
// above the original price is refused, sees the server's own message for a
// mistake the page does not check, and watches the live dashboard count the
// crowd of a `seckill bench` run to the last unit without a reload: units
// left, sold out, the orders counted and the sell-through chart drawn.
func TestBrowserAdmin(t *testing.T) {
	// Parallel with the other slow whole-server tests of this package
	// (issue 10: the suite without servers stays under a minute).
	t.Parallel()
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, chromiumPath+" is missing: apt-get install chromium (.ci/services.sh does)")
	}
	m := startServer(t, false)
	base := m.URL()
	ctx := newBrowser(t, 1280, 900, false)
	admin := browserLogin(t, base, "19900000000", "admin-password")
	lamp := createBrowserSale(t, base, admin, "Desk lamp", 3, time.Now().Add(-time.Minute), false)

	brun(t, ctx, chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-sale="`+lamp.id+`"]`)),
		chromedp.Click(chromedp.CSS(`#account button:not(.primary)`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="phone"]`), "19900000000"),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), "admin-password"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#admin-section`)))
	waitJS(t, ctx, `document.querySelector('[data-dash="`+lamp.id+`"]')`, 5*time.Second)
	if n := evalFloat(t, ctx, `document.querySelectorAll('button[data-buy]').length`); n != 0 {
		t.Errorf("the admin is offered %v Buy buttons", n)
	}

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

	// A crowd buys a sale out; the dashboard counts it.
	const users, stock = 120, 40
	done := make(chan error, 1)
	go func() {
		bctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		res, err := bench.Run(bctx, bench.Config{Target: base, AdminPhone: "19900000000", AdminPassword: "admin-password",
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
	waitJS(t, ctx, sel+`.dataset.status === 'sold_out' && `+sel+`.querySelector('[data-dash-left]').textContent === '0 / `+strconv.Itoa(stock)+` left'`, 60*time.Second)
	if err := <-done; err != nil {
		t.Fatalf("bench: %v", err)
	}
	waitJS(t, ctx, sel+`.querySelector('[data-stat="orders"]').textContent === '`+strconv.Itoa(stock)+`'`, 10*time.Second)
	if !evalBool(t, ctx, `(() => { const c = `+sel+`.querySelector('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
	  for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 100) return true; return false; })()`) {
		t.Error("the sell-through chart draws no line")
	}
	if os.Getenv("SECKILL_SCREENSHOTS") == "1" {
		png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(`#admin-section`)))
		if err != nil {
			t.Fatal(err)
		}
		writeScreenshot(t, "desktop", "admin", png)
	}
}
