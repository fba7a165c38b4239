package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Payment end to end (issue 11): `seckill sandbox` and `seckill serve
// --pay-provider-url` run as separate processes, as in production; buyers
// pay on the sandbox's page the way a browser submits its form, and the
// sandbox's notifier tells serve. Then the faults: serve down when the
// buyer pays, the sandbox killed with notifications owed, a "fail" click
// followed by "pay" in another tab and a success that arrives after the
// deadline.

// payRig is one sandbox and one serve on fixed loopback ports (the
// sandbox keeps the notify URLs it was given, so a restarted serve must
// come back on the same address), sharing serve's data directory as the
// README says.
type payRig struct {
	*deployment
	dir                    string
	serveAddr, sandboxAddr string
	serveEnv               []string
	sandbox                *child
}

// newPayRig starts the sandbox (resending on Alipay's schedule scaled by
// 1/1000: 120 ms, 600 ms, 600 ms, 3.6 s, …), then serve pointed at it with
// payWindow and dbURL ("" for embedded SQLite).
func newPayRig(t *testing.T, dbURL string, payWindow time.Duration) *payRig {
	t.Helper()
	r := &payRig{dir: t.TempDir(), serveAddr: "127.0.0.1:" + freePort(t), sandboxAddr: "127.0.0.1:" + freePort(t)}
	r.serveEnv = []string{
		"SECKILL_ADDR=" + r.serveAddr, "SECKILL_BENCH_PROVISIONING=true",
		"SECKILL_PAY_WINDOW=" + payWindow.String(), "SECKILL_SWEEP_EVERY=200ms",
		"SECKILL_PAY_PROVIDER_URL=http://" + r.sandboxAddr + "/sandbox/gateway.do",
		"SECKILL_PAY_PROVIDER_KEY=" + filepath.Join(r.dir, "sandbox", "sandbox.pub.pem"),
	}
	if dbURL != "" {
		r.serveEnv = append(r.serveEnv, "SECKILL_DB="+dbURL)
	} else {
		dbURL = "sqlite:" + filepath.Join(r.dir, "seckill.db")
	}
	r.deployment = &deployment{t: t, db: dbURL, nodes: []*child{nil}}
	r.startSandbox() // first: it makes the key pair serve is told of
	r.startServe()
	t.Cleanup(func() {
		for _, c := range []*child{r.nodes[0], r.sandbox} {
			if c != nil && !c.dead.Load() {
				c.kill()
			}
		}
	})
	var login struct{ Token string }
	if code, err := r.nodes[0].call("POST", "/api/sessions", "", `{"phone":"19900000000","password":"admin-password"}`, &login); err != nil || code != 200 {
		t.Fatalf("admin login: %d %v", code, err)
	}
	r.admin = login.Token
	return r
}

func (r *payRig) startSandbox() {
	r.sandbox = startProcess(r.t, "sandbox payment provider listening on ",
		"SECKILL_TEST_CHILD=sandbox", "SECKILL_DATA="+r.dir, "SECKILL_SANDBOX_ADDR="+r.sandboxAddr,
		"SECKILL_SANDBOX_RETRY_SCALE=0.001")
}

func (r *payRig) startServe() { r.nodes[0] = startChild(r.t, r.dir, r.serveEnv...) }

// payBuyer is one provisioned buyer and, once bought, its order.
type payBuyer struct {
	benchUser
	order int64
}

// buy provisions n buyers for a sale of stock units at 1 yuan, and each
// buys one unit; it returns when every order is written.
func (r *payRig) buy(n int, stock int64) (int64, []*payBuyer) {
	r.t.Helper()
	sale, users := r.provision(n, stock)
	var out []*payBuyer
	for _, u := range users {
		b := &payBuyer{benchUser: u}
		var p struct{ Path string }
		if code, err := r.nodes[0].call("POST", fmt.Sprintf("/api/sales/%d/path", sale), u.Token, "", &p); err != nil || code != 200 {
			r.t.Fatalf("path: %d %v", code, err)
		}
		if code, err := r.nodes[0].call("POST", fmt.Sprintf("/api/sales/%d/purchase/%s", sale, p.Path), u.Token, "", nil); err != nil || code != 202 {
			r.t.Fatalf("purchase: %d %v", code, err)
		}
		r.waitFor(fmt.Sprintf("buyer %d's order", u.ID), func() bool {
			var res struct {
				Status  string `json:"status"`
				OrderID int64  `json:"order_id"`
			}
			code, err := r.nodes[0].call("GET", fmt.Sprintf("/api/sales/%d/result", sale), u.Token, "", &res)
			b.order = res.OrderID
			return err == nil && code == 200 && res.Status == "success" && res.OrderID != 0
		})
		out = append(out, b)
	}
	return sale, out
}

// waitFor polls cond every 50 ms for up to a minute.
func (r *payRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not after a minute", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type orderView struct {
	ID          int64     `json:"id"`
	OrderNo     string    `json:"order_no"`
	Status      string    `json:"status"`
	PayDeadline time.Time `json:"pay_deadline"`
}

// order is the buyer's order as GET /api/orders lists it.
func (r *payRig) order(b *payBuyer) orderView {
	r.t.Helper()
	var list struct{ Orders []orderView }
	if code, err := r.nodes[0].call("GET", "/api/orders", b.Token, "", &list); err != nil || code != 200 {
		r.t.Fatalf("orders: %d %v", code, err)
	}
	for _, o := range list.Orders {
		if o.ID == b.order {
			return o
		}
	}
	r.t.Fatalf("buyer %d does not see order %d in %+v", b.ID, b.order, list.Orders)
	return orderView{}
}

// waitStatus waits until the buyer's order is in status.
func (r *payRig) waitStatus(b *payBuyer, status string) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("order %d %s", b.order, status), func() bool { return r.order(b).Status == status })
}

// payURL asks serve to pay the buyer's order: the sandbox's page.
func (r *payRig) payURL(b *payBuyer) string {
	r.t.Helper()
	var p struct {
		PaymentID string `json:"payment_id"`
		PayURL    string `json:"pay_url"`
	}
	code, err := r.nodes[0].call("POST", fmt.Sprintf("/api/orders/%d/pay", b.order), b.Token, "", &p)
	if err != nil || code != 200 || !strings.HasPrefix(p.PayURL, "http://"+r.sandboxAddr+"/sandbox/pay/") {
		r.t.Fatalf("pay order %d: %d %v %+v", b.order, code, err, p)
	}
	return p.PayURL
}

// formClient does not follow redirects: the test looks at where it is sent.
var formClient = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

var (
	formRE   = regexp.MustCompile(`(?s)<form([^>]*)>(.*?)</form>`)
	attrRE   = regexp.MustCompile(`([a-z]+)="([^"]*)"`)
	buttonRE = regexp.MustCompile(`<button([^>]*)>`)
)

// payForm is the pay page's form as a browser sees it: where it posts,
// and the name and value of each submit button by value.
type payForm struct {
	action  string
	buttons map[string][2]string
}

// openPage loads the pay page (a browser tab) and reads its form; ok is
// false when the page has none (the payment no longer waits).
func (r *payRig) openPage(pageURL string) (f payForm, body string, ok bool) {
	r.t.Helper()
	resp, err := formClient.Get(pageURL)
	if err != nil {
		r.t.Fatalf("pay page: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		r.t.Fatalf("pay page: %d %s", resp.StatusCode, raw)
	}
	m := formRE.FindStringSubmatch(string(raw))
	if m == nil {
		return f, string(raw), false
	}
	attrs := func(s string) map[string]string {
		a := map[string]string{}
		for _, kv := range attrRE.FindAllStringSubmatch(s, -1) {
			a[kv[1]] = html.UnescapeString(kv[2])
		}
		return a
	}
	form := attrs(m[1])
	if !strings.EqualFold(form["method"], "post") {
		r.t.Fatalf("the pay page's form does not post: %s", m[0])
	}
	// No action: the form posts to the page's own URL.
	base, _ := url.Parse(pageURL)
	act, err := base.Parse(form["action"])
	if err != nil {
		r.t.Fatal(err)
	}
	f = payForm{action: act.String(), buttons: map[string][2]string{}}
	for _, b := range buttonRE.FindAllStringSubmatch(m[2], -1) {
		a := attrs(b[1])
		if a["type"] == "submit" || a["type"] == "" {
			f.buttons[a["value"]] = [2]string{a["name"], a["value"]}
		}
	}
	return f, string(raw), true
}

// click submits the form with the button whose value is v, as a browser
// does (url-encoded, the button's name=value), and returns the status
// and where the sandbox sends the buyer.
func (r *payRig) click(f payForm, v string) (int, string) {
	r.t.Helper()
	b, ok := f.buttons[v]
	if !ok {
		r.t.Fatalf("no %q button in %+v", v, f)
	}
	resp, err := formClient.PostForm(f.action, url.Values{b[0]: {b[1]}})
	if err != nil {
		r.t.Fatalf("click %s: %v", v, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Location")
}

// pay opens the page and clicks "pay": the sandbox sends the buyer back to
// the shop (303 to serve's "/" with the signed return fields).
func (r *payRig) pay(pageURL string) {
	r.t.Helper()
	f, body, ok := r.openPage(pageURL)
	if !ok {
		r.t.Fatalf("pay page without a form: %s", body)
	}
	code, loc := r.click(f, "pay")
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "http://"+r.serveAddr+"/?") || !strings.Contains(loc, "sign=") {
		r.t.Fatalf("pay click: %d to %q", code, loc)
	}
}

// notification is what sandbox.db says of the notifications of one order.
type sandboxNote struct {
	State     string
	Attempts  int
	LastError string
	Status    string // the trade's
	Refund    int64  // cents refunded
}

// notes reads the sandbox's own state for an order (SQLite in WAL mode
// reads beside the sandbox, or after it was killed).
func (r *payRig) notes(orderNo string) []sandboxNote {
	r.t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(r.dir, "sandbox", "sandbox.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		r.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT n.state, n.attempts, n.last_error, p.status, p.refund_cents
		FROM notifications n JOIN payments p ON p.trade_no = n.trade_no WHERE p.out_trade_no = ? ORDER BY n.rowid`, orderNo)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	var out []sandboxNote
	for rows.Next() {
		var n sandboxNote
		if err := rows.Scan(&n.State, &n.Attempts, &n.LastError, &n.Status, &n.Refund); err != nil {
			r.t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// waitNote waits until the order's one notification satisfies cond.
func (r *payRig) waitNote(orderNo string, cond func(n sandboxNote) bool) sandboxNote {
	r.t.Helper()
	var last []sandboxNote
	r.waitFor("notification of "+orderNo, func() bool {
		last = r.notes(orderNo)
		return len(last) == 1 && cond(last[0])
	})
	return last[0]
}

// socket is a buyer's WebSocket to serve.
type socket struct {
	c      *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
}

func (r *payRig) socket(b *payBuyer) *socket {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c, _, err := websocket.Dial(ctx, "ws://"+r.serveAddr+"/api/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + b.Token}}})
	if err != nil {
		cancel()
		r.t.Fatal(err)
	}
	s := &socket{c: c, ctx: ctx, cancel: cancel}
	r.t.Cleanup(func() { c.CloseNow(); cancel() })
	return s
}

// waitPush reads the socket until the order_status push of order says
// status.
func (s *socket) waitPush(t *testing.T, order int64, status string) {
	t.Helper()
	for {
		_, raw, err := s.c.Read(s.ctx)
		if err != nil {
			t.Fatalf("no %s push for order %d: %v", status, order, err)
		}
		var p struct {
			Type    string `json:"type"`
			OrderID int64  `json:"order_id"`
			Status  string `json:"status"`
		}
		if json.Unmarshal(raw, &p) == nil && p.Type == "order_status" && p.OrderID == order {
			if p.Status != status {
				t.Fatalf("order %d pushed %s, want %s", order, p.Status, status)
			}
			return
		}
	}
}

// ledger is, from SQL, what happened to one order: its status, its
// payments by outcome and its 'cancel' rows in the stock ledger.
type ledger struct {
	Status                       string
	Applied, RefundDue, Refunded int
	Cancels                      int
}

func (r *payRig) ledgers(sale int64) map[int64]ledger {
	r.t.Helper()
	driver, dsn := "pgx", r.db
	if p, ok := strings.CutPrefix(r.db, "sqlite:"); ok {
		driver, dsn = "sqlite", p+"?_pragma=busy_timeout(5000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		r.t.Fatal(err)
	}
	defer db.Close()
	// The sale id is a number: no placeholders, which differ by driver.
	rows, err := db.Query(fmt.Sprintf(`SELECT o.id, o.status,
		(SELECT COUNT(*) FROM payments p WHERE p.order_id = o.id AND p.outcome = 'applied'),
		(SELECT COUNT(*) FROM payments p WHERE p.order_id = o.id AND p.outcome = 'refund_due'),
		(SELECT COUNT(*) FROM payments p WHERE p.order_id = o.id AND p.outcome = 'refunded'),
		(SELECT COUNT(*) FROM stock_ledger l WHERE l.order_id = o.id AND l.reason = 'cancel')
		FROM orders o WHERE o.sale_id = %d`, sale))
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]ledger{}
	for rows.Next() {
		var id int64
		var l ledger
		if err := rows.Scan(&id, &l.Status, &l.Applied, &l.RefundDue, &l.Refunded, &l.Cancels); err != nil {
			r.t.Fatal(err)
		}
		out[id] = l
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// checkAtRest waits until the sale is at rest, then checks I1–I5 and that
// each order ended as want says: "paid" (one applied payment, no cancel
// row), "cancelled" (no payment, one cancel row) or "cancelled+refunded"
// (one refunded payment, one cancel row).
func (r *payRig) checkAtRest(sale int64, buyers []*payBuyer, want map[int64]string) {
	r.t.Helper()
	t := r.t
	var st lifecycleStats
	r.waitFor("the sale at rest", func() bool {
		var err error
		st, err = r.lifecycleStats(sale)
		return err == nil && st.Queued == 0 && st.ReturnsUnapplied == 0 && st.RefundsDue == 0 && st.GateLeft == st.SQLStockLeft
	})
	accepted := map[int64]string{}
	for _, b := range buyers {
		accepted[b.ID] = r.order(b).OrderNo
	}
	r.checkInvariants(sale, st.adminStats, accepted, false)
	paid, cancelled := 0, 0
	ls := r.ledgers(sale)
	for _, b := range buyers {
		l := ls[b.order]
		var ok bool
		switch want[b.order] {
		case "paid":
			paid++
			ok = l == ledger{Status: "paid", Applied: 1}
		case "cancelled":
			cancelled++
			ok = l == ledger{Status: "cancelled", Cancels: 1}
		case "cancelled+refunded":
			cancelled++
			ok = l == ledger{Status: "cancelled", Refunded: 1, Cancels: 1}
		}
		if !ok {
			t.Errorf("order %d: %+v, want %s", b.order, l, want[b.order])
		}
	}
	if st.Paid != int64(paid) || st.Cancelled != int64(cancelled) || st.Pending != 0 || st.Refunded != 0 {
		t.Errorf("stats %+v: want %d paid, %d cancelled", st, paid, cancelled)
	}
	if st.SQLStockLeft != st.Stock-int64(paid) {
		t.Errorf("I4: %d units left of %d with %d paid", st.SQLStockLeft, st.Stock, paid)
	}
}

func TestPaymentEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("payment end to end skipped in -short mode")
	}
	backends := []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"embedded", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES")) }},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			t.Run("pay-and-faults", func(t *testing.T) { payAndFaults(t, be.db(t)) })
			t.Run("fail-then-late-success", func(t *testing.T) { failThenLateSuccess(t, be.db(t)) })
		})
	}
}

// payAndFaults: three buyers pay with everything up; one pays while serve
// is down; two pay while serve is down and the sandbox is killed (one
// between resends, one right after the click), and the restarted sandbox
// delivers. Every order ends paid once.
func payAndFaults(t *testing.T, dbURL string) {
	r := newPayRig(t, dbURL, 2*time.Minute)
	sale, buyers := r.buy(6, 8)

	// Everything up: the push and the list say paid.
	for _, b := range buyers[:3] {
		ws := r.socket(b)
		r.pay(r.payURL(b))
		ws.waitPush(t, b.order, "paid")
		if o := r.order(b); o.Status != "paid" {
			t.Errorf("order %d pushed paid, listed %s", b.order, o.Status)
		}
		if n := r.waitNote(r.order(b).OrderNo, func(n sandboxNote) bool { return n.State == "delivered" }); n.Attempts != 1 {
			t.Errorf("order %d: delivered after %d tries, serve was up", b.order, n.Attempts)
		}
	}

	// (a) Serve is down when the buyer pays: the sandbox resends with
	// backoff until serve is back, and serve applies it once.
	b := buyers[3]
	no := r.order(b).OrderNo
	page := r.payURL(b)
	r.nodes[0].stop()
	r.pay(page)
	n := r.waitNote(no, func(n sandboxNote) bool { return n.Attempts >= 2 })
	if n.State != "pending" || n.LastError == "" || n.Status != "TRADE_SUCCESS" {
		t.Fatalf("with serve down: %+v", n)
	}
	r.startServe()
	r.waitStatus(b, "paid")
	n = r.waitNote(no, func(n sandboxNote) bool { return n.State == "delivered" })
	t.Logf("serve down: delivered on try %d", n.Attempts)

	// (b) The sandbox is killed -9 with notifications owed: one between
	// its resends, one right after the buyer's click. Restarted on its
	// data directory, it delivers both.
	b4, b5 := buyers[4], buyers[5]
	page4, page5 := r.payURL(b4), r.payURL(b5)
	no4 := r.order(b4).OrderNo
	r.nodes[0].stop()
	r.pay(page4)
	r.waitNote(no4, func(n sandboxNote) bool { return n.Attempts >= 1 && n.State == "pending" })
	r.pay(page5)
	r.sandbox.kill()
	r.startServe()
	ws4, ws5 := r.socket(b4), r.socket(b5)
	for _, b := range []*payBuyer{b4, b5} {
		if o := r.order(b); o.Status != "pending_payment" {
			t.Fatalf("order %d is %s before the sandbox is back", b.order, o.Status)
		}
	}
	r.startSandbox()
	ws4.waitPush(t, b4.order, "paid")
	ws5.waitPush(t, b5.order, "paid")
	for _, b := range []*payBuyer{b4, b5} {
		r.waitNote(r.order(b).OrderNo, func(n sandboxNote) bool { return n.State == "delivered" })
	}

	want := map[int64]string{}
	for _, b := range buyers {
		want[b.order] = "paid"
	}
	r.checkAtRest(sale, buyers, want)
}

// failThenLateSuccess: a buyer clicks "fail" in one tab (a declined
// attempt: nothing is notified, the payment waits still), then "pay" in a
// second tab opened before: that pays, once, and paying again is refused.
// Another buyer's success reaches serve only after the order's deadline
// passed and the sweeper cancelled it: the money goes back, the unit is
// back once.
func failThenLateSuccess(t *testing.T, dbURL string) {
	// The window leaves time for the clicks before the deadline on a
	// loaded machine; the late success then waits it out.
	r := newPayRig(t, dbURL, 8*time.Second)
	sale, buyers := r.buy(2, 2)
	b, late := buyers[0], buyers[1]

	page := r.payURL(b)
	tab1, _, _ := r.openPage(page)
	tab2, _, _ := r.openPage(page)
	if code, loc := r.click(tab1, "fail"); code != http.StatusOK || loc != "" {
		t.Fatalf("fail click: %d to %q, want the page saying it was declined", code, loc)
	}
	no := r.order(b).OrderNo
	if _, body, ok := r.openPage(page); !ok {
		t.Fatalf("after fail the page offers no Pay: %s", body)
	}
	if code, loc := r.click(tab2, "pay"); code != http.StatusSeeOther || !strings.Contains(loc, "sign=") {
		t.Fatalf("pay after a declined try: %d to %q", code, loc)
	}
	n := r.waitNote(no, func(n sandboxNote) bool { return n.State == "delivered" })
	if n.Status != "TRADE_SUCCESS" {
		t.Fatalf("after fail then pay: %+v", n)
	}
	if ns := r.notes(no); len(ns) != 1 {
		t.Fatalf("fail then pay made notifications %+v, want the payment's only", ns)
	}
	r.waitStatus(b, "paid")
	if code, err := r.nodes[0].call("POST", fmt.Sprintf("/api/orders/%d/pay", b.order), b.Token, "", nil); err != nil || code != http.StatusConflict {
		t.Fatalf("paying again after paying: %d %v, want 409", code, err)
	}

	// The late success: paid with serve down, the sandbox killed with the
	// notification owed, serve back after the deadline cancels the
	// order, and only then the sandbox.
	lateNo := r.order(late).OrderNo
	deadline := r.order(late).PayDeadline
	page = r.payURL(late)
	r.nodes[0].stop()
	r.pay(page)
	r.waitNote(lateNo, func(n sandboxNote) bool { return n.Attempts >= 1 && n.State == "pending" })
	r.sandbox.kill()
	time.Sleep(time.Until(deadline)) // the deadline, not a proof of nothing
	r.startServe()
	r.waitStatus(late, "cancelled")
	r.startSandbox()
	n = r.waitNote(lateNo, func(n sandboxNote) bool { return n.State == "delivered" && n.Refund != 0 })
	if n.Status != "TRADE_SUCCESS" || n.Refund != 100 {
		t.Errorf("the late success at the sandbox: %+v, want refunded 100 cents", n)
	}
	r.checkAtRest(sale, buyers, map[int64]string{b.order: "paid", late.order: "cancelled+refunded"})
}
