package main

import (
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// TestBrowserBuyerChinese drives the buyer's page in a browser that speaks
// Chinese (navigator.language zh-CN), on a desktop and on a 390×844 phone:
// the page is in Chinese; a Buy pressed while logged out asks to log in and,
// once logged in, opens that sale's purchase by itself; a rate-limited
// answer (429) counts down, in Chinese, from the seconds its Retry-After
// names (3 here, set by the front door; the server's own is 1), keeps Buy
// off until the wait is over, then shows a new question.
func TestBrowserBuyerChinese(t *testing.T) {
	t.Parallel()
	onEveryScreen(t, testBrowserBuyerChinese)
}

func testBrowserBuyerChinese(t *testing.T, _ string, width, height int64, mobile bool) {
	front := newFrontDoor(t)
	front.retryAfter = "3"
	// One token per buyer, back after 2.5 s: the captcha takes it, so the
	// answer's POST …/path is refused 429; after the 3 s wait the page
	// gets a new question.
	m := startBrowserServer(t, "127.0.0.1:0", t.TempDir(), front.URL, func(c *Config) { c.UserRate, c.UserBurst = 0.4, 1 })
	t.Cleanup(func() { _ = m.Close() })
	front.serve(t, m.URL())
	direct := m.URL()
	admin := browserLogin(t, direct, "19900000000", "admin-password")
	sale := createBrowserSale(t, direct, admin, "Phone X flash sale", 5, time.Now().Add(-time.Minute), true)
	apiCall(t, "POST", direct+"/api/users", "", map[string]string{"phone": "13800000002", "password": "buyer-password"}, 201, nil)

	ctx := newBrowserLang(t, "zh-CN", width, height, mobile)
	var pageErrs pageErrors
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			pageErrs.note(e)
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer pageErrs.report(t)
	card := `article[data-sale="` + sale.id + `"]`
	brun(t, ctx, chromedp.Navigate(front.URL+"/"), chromedp.WaitVisible(chromedp.CSS(card)))
	if got := evalString(t, ctx, `navigator.language + '|' + document.documentElement.lang + '|' + document.querySelector('[data-i18n="sales"]').textContent + '|' + document.querySelector('`+card+` button[data-buy]').textContent`); got != "zh-CN|zh-CN|秒杀活动|立即抢购" {
		t.Errorf("language, page language, heading, Buy: %q", got)
	}

	// Logged out, Buy asks for the login and remembers the sale.
	click(t, ctx, card+` button[data-buy]`)
	waitJS(t, ctx, `!document.querySelector('#auth').hidden && !document.querySelector('#login-form').hidden`, 5*time.Second)
	if got := evalString(t, ctx, `document.querySelector('#toast').textContent`); got != "请先登录，登录后继续购买。" {
		t.Errorf("a logged-out Buy says %q", got)
	}
	if evalBool(t, ctx, `document.querySelector('#buy-dialog').open`) {
		t.Error("the purchase opened before the login")
	}
	brun(t, ctx,
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="phone"]`), "13800000002"),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name="password"]`), "buyer-password"))
	click(t, ctx, `#login-form button[type="submit"]`)
	// The purchase resumes: the sale's dialog, its captcha loaded.
	waitJS(t, ctx, `document.querySelector('#buy-dialog').open && document.querySelector('#captcha-img[data-captcha-id]')`, 5*time.Second)
	if got := evalString(t, ctx, `document.querySelector('#buy-title').textContent + '|' + document.querySelector('#buy-submit').textContent`); got != "Phone X flash sale|提交答案并抢购" {
		t.Errorf("the resumed purchase shows %q", got)
	}

	// The answer is refused for the rate: a countdown from Retry-After.
	id := evalString(t, ctx, `document.querySelector('#captcha-img').dataset.captchaId`)
	brun(t, ctx, chromedp.SendKeys(chromedp.CSS(`#captcha-answer`), captchaAnswer(t, m, "13800000002", id)))
	click(t, ctx, `#buy-submit`)
	status := `document.querySelector('#buy-status').textContent`
	waitJS(t, ctx, status+` === '操作太频繁，请 3 秒后再试。'`, 5*time.Second)
	if !evalBool(t, ctx, `document.querySelector('#buy-submit').disabled`) {
		t.Error("Buy is on during the wait")
	}
	waitJS(t, ctx, status+` === '操作太频繁，请 2 秒后再试。'`, 3*time.Second)
	waitJS(t, ctx, status+` === '操作太频繁，请 1 秒后再试。'`, 3*time.Second)
	waitJS(t, ctx, status+` === '现在可以重试了。' && !document.querySelector('#buy-submit').disabled && document.querySelector('#captcha-img').dataset.captchaId && document.querySelector('#captcha-img').dataset.captchaId !== '`+id+`'`, 3*time.Second)
}
