package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seckill/httpapi"
)

// sum adds up a series.
func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// dashSale finds the sale in a dashboard, or fails.
func dashSale(t *testing.T, m httpapi.DashMessage, sale int64) httpapi.DashSale {
	t.Helper()
	for _, s := range m.Sales {
		if s.SaleID == sale {
			return s
		}
	}
	t.Fatalf("sale %d is not on the dashboard: %+v", sale, m)
	return httpapi.DashSale{}
}

func (s *stack) dashboard() httpapi.DashMessage {
	s.t.Helper()
	r := s.do("GET", "/api/admin/dashboard", s.admin, nil)
	want(s.t, r, 200, "")
	var m httpapi.DashMessage
	if err := json.Unmarshal(r.Body, &m); err != nil {
		s.t.Fatal(err)
	}
	return m
}

// TestDashboardSeries: the dashboard counts a sale's admissions, its
// refusals by reason (at the path and at the purchase) and its written
// orders over the last minutes; an id that is no sale is counted nowhere;
// only an admin reads it.
func TestDashboardSeries(t *testing.T) {
	s := newStack(t, options{})
	toks, _ := s.buyers(4)
	sale := s.activeSale(2, false)
	other := s.activeSale(5, false)
	for _, tok := range toks[:2] {
		want(t, s.purchase(tok, sale, s.path(tok, sale)), 202, "")
	}
	want(t, s.purchase(toks[2], sale, s.path(toks[2], sale)), 410, "sold_out")
	want(t, s.purchase(toks[0], sale, s.path(toks[0], sale)), 409, "duplicate")
	want(t, s.purchase(toks[3], other, "not-the-path"), 403, "bad_path")
	want(t, s.do("POST", "/api/sales/999999/path", toks[3], nil), 404, "not_found")
	want(t, s.purchase(toks[3], 999999, "x"), 404, "not_found")
	s.settle(sale)
	// The orders series counts the results the writer publishes on the
	// result bus, which reach the dashboard after the orders are in SQL:
	// wait for both.
	m := s.dashboard()
	for deadline := time.Now().Add(10 * time.Second); sum(dashSale(t, m, sale).Series.Orders) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		m = s.dashboard()
	}
	if m.Window != httpapi.DashWindow {
		t.Errorf("window %d, want %d", m.Window, httpapi.DashWindow)
	}
	if len(m.Sales) != 2 {
		t.Errorf("%d sales on the dashboard, want the 2 created", len(m.Sales))
	}
	d := dashSale(t, m, sale)
	if d.State != httpapi.SaleStateSoldOut || d.Left != 0 || d.Stock != 2 || d.Stats == nil || d.Stats.Orders != 2 {
		t.Errorf("sale: state %s, %d/%d left, stats %+v", d.State, d.Left, d.Stock, d.Stats)
	}
	if n := len(d.Series.Admitted); n != httpapi.DashWindow || len(d.Series.Orders) != n {
		t.Errorf("series of %d seconds, want %d", n, httpapi.DashWindow)
	}
	if end := d.Series.Start + int64(len(d.Series.Admitted)) - 1; end < time.Now().Unix()-1 || end > time.Now().Unix() {
		t.Errorf("the series ends at %d, now is %d", end, time.Now().Unix())
	}
	got := fmt.Sprintf("admitted %d orders %d sold_out %d duplicate %d refused codes %d",
		sum(d.Series.Admitted), sum(d.Series.Orders), sum(d.Series.Refused["sold_out"]), sum(d.Series.Refused["duplicate"]), len(d.Series.Refused))
	if got != "admitted 2 orders 2 sold_out 1 duplicate 1 refused codes 2" {
		t.Errorf("sale: %s", got)
	}
	o := dashSale(t, m, other)
	if sum(o.Series.Admitted) != 0 || sum(o.Series.Refused["bad_path"]) != 1 || len(o.Series.Refused) != 1 {
		t.Errorf("the other sale: %+v", o.Series)
	}

	want(t, s.do("GET", "/api/admin/dashboard", toks[0], nil), 403, "forbidden")
	want(t, s.do("GET", "/api/admin/dashboard", "", nil), 401, "unauthenticated")
}

// nextOf reads messages until one of a type among types, and returns
// its type and body.
func nextOf(t *testing.T, c *websocket.Conn, types ...string) (string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m struct{ Type string }
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(types, m.Type) {
			return m.Type, b
		}
	}
}

// dashPush reads messages until a dashboard one, skipping the sale
// pushes an admin's socket gets too.
func dashPush(t *testing.T, c *websocket.Conn) httpapi.DashMessage {
	t.Helper()
	_, b := nextOf(t, c, httpapi.PushDash)
	var m httpapi.DashMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDashboardStream: an admin's GET /api/admin/ws streams the dashboard
// (each message with the series' last seconds); a buyer's session and no
// session are refused before any upgrade, and a buyer's own socket never
// carries the dashboard.
func TestDashboardStream(t *testing.T) {
	ticks := make(saleTicker)
	s := newStack(t, options{ws: httpapi.WSConfig{DashTicks: ticks}})
	url := strings.Replace(s.serve(), "/api/ws", "/api/admin/ws", 1)
	buyerURL := s.serve()
	toks, ids := s.buyers(2)

	refused(t, url, nil, 401, "unauthenticated")
	refused(t, url, bearer(toks[0]), 403, "forbidden")
	want(t, s.do("GET", "/api/admin/ws", toks[0], nil), 403, "forbidden")

	sale := s.activeSale(1, false)
	admin := dialWS(t, url, bearer(s.admin))
	buyer := dialWS(t, buyerURL, bearer(toks[0]))
	want(t, s.purchase(toks[0], sale, s.path(toks[0], sale)), 202, "")
	ticks.tick()
	m := dashPush(t, admin)
	d := dashSale(t, m, sale)
	if len(d.Series.Admitted) != httpapi.DashTail {
		t.Errorf("a streamed message carries %d seconds, want %d", len(d.Series.Admitted), httpapi.DashTail)
	}
	if sum(d.Series.Admitted) != 1 {
		t.Errorf("streamed admissions %v, want 1", d.Series.Admitted)
	}
	// The sale sells out; the next message says so (its stats may lag by
	// their cache, its state and refusals do not).
	want(t, s.purchase(toks[1], sale, s.path(toks[1], sale)), 410, "sold_out")
	ticks.tick()
	d = dashSale(t, dashPush(t, admin), sale)
	if d.State != httpapi.SaleStateSoldOut || sum(d.Series.Refused["sold_out"]) != 1 {
		t.Errorf("after the sell-out: state %s, refusals %v", d.State, d.Series.Refused)
	}

	// Had the buyer's socket been given the dashboard, both ticks' messages
	// would be queued on it before this marker.
	if s.api.SendUser(ids[0], map[string]string{"type": "marker"}) != 1 {
		t.Fatal("the buyer's socket is not open")
	}
	if typ, b := nextOf(t, buyer, httpapi.PushDash, "marker"); typ != "marker" {
		t.Fatalf("a buyer's socket carries the dashboard: %s", b)
	}
}

// TestDashboardStreamEndsWithSession: an admin socket whose session ended
// by other means than a logout on this instance — here the password's
// rotation, as at a restart of another instance with a new
// --admin-password; a logout or revocation elsewhere alike — gets no more
// of the dashboard: the stream checks its sockets' sessions. It used to
// stream to the socket for as long as it stayed open.
func TestDashboardStreamEndsWithSession(t *testing.T) {
	ticks := make(saleTicker)
	s := newStack(t, options{ws: httpapi.WSConfig{DashTicks: ticks}})
	url := strings.Replace(s.serve(), "/api/ws", "/api/admin/ws", 1)
	s.activeSale(1, false)
	admin := dialWS(t, url, bearer(s.admin))
	ticks.tick() // read before the rotation
	dashPush(t, admin)

	if _, err := s.accounts.EnsureAdmin(context.Background(), "19900000000", "rotated-password"); err != nil {
		t.Fatal(err)
	}
	ticks.tick()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := admin.Read(ctx)
		if ctx.Err() != nil {
			t.Fatal("the socket of the ended session stayed open")
		}
		if err != nil {
			return // closed
		}
		var m struct{ Type string }
		if json.Unmarshal(b, &m) == nil && m.Type == httpapi.PushDash {
			t.Fatalf("the dashboard streamed to an ended session: %.120s", b)
		}
	}
}

// TestDashboardCluster: two instances on one bus (two servers on one
// engine and queue, as behind a load balancer) each show the admissions
// and refusals both answered, each instance's once: an instance hears its
// own counts on the bus too and must not add them again. On the in-memory
// queue and on embedded NATS.
func TestDashboardCluster(t *testing.T) {
	for _, sqlite := range []bool{false, true} {
		t.Run(fmt.Sprintf("sqlite=%v", sqlite), func(t *testing.T) {
			const every = 20 * time.Millisecond
			a := newStack(t, options{sqlite: sqlite, dashShare: every})
			other := httpapi.New(httpapi.Config{
				Engine: a.engine, Accounts: a.accounts, Orders: a.db,
				Results: a.engine.Results(), DashBus: a.queue, DashShare: every,
			})
			t.Cleanup(func() { _ = other.Close() })
			b := *a // the same stack, answered by the other server
			b.h, b.api = other, other

			toks, _ := a.buyers(3)
			sale := a.activeSale(3, false)
			for _, tok := range toks[:2] {
				want(t, a.purchase(tok, sale, a.path(tok, sale)), 202, "")
			}
			want(t, a.purchase(toks[2], sale, "not-the-path"), 403, "bad_path")

			// B shows what A answered…
			traffic := func(s *stack) string {
				d := dashSale(t, s.dashboard(), sale)
				return fmt.Sprintf("admitted %d bad_path %d", sum(d.Series.Admitted), sum(d.Series.Refused["bad_path"]))
			}
			await(t, "A's counts on B", func() bool { return traffic(&b) == "admitted 2 bad_path 1" })
			// …then answers a purchase itself, which A shows. A's own
			// message was published before B's, and the bus delivers in
			// one order: once A shows B's count it has heard its own.
			want(t, b.purchase(toks[2], sale, b.path(toks[2], sale)), 202, "")
			await(t, "B's count on A", func() bool {
				return sum(dashSale(t, a.dashboard(), sale).Series.Admitted) >= 3
			})
			for name, s := range map[string]*stack{"A": a, "B": &b} {
				if got := traffic(s); got != "admitted 3 bad_path 1" {
					t.Errorf("%s: %s, want admitted 3 bad_path 1", name, got)
				}
			}
		})
	}
}

// await polls cond until it holds, or fails after 10 s.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDashboardClusterClocksApart: two instances whose own clocks are
// four minutes apart (design.md: minutes, not only seconds) show the same
// dashboard: the same counts, the same seconds, the same server time.
// Each counts on the shared clock (the database's, through the engine's
// skew) and keeps the others' counts under those seconds. Before, each
// counted under its own clock's second: the instance behind dropped the
// other's counts as too far ahead, the one ahead showed the other's four
// minutes in the past, out of every streamed tail.
func TestDashboardClusterClocksApart(t *testing.T) {
	for _, off := range []time.Duration{-4 * time.Minute, 4 * time.Minute} {
		t.Run(off.String(), func(t *testing.T) {
			const every = 20 * time.Millisecond
			a := newStack(t, options{dashShare: every})
			b := a.instance(func() time.Time { return time.Now().Add(off) }, every)

			toks, _ := a.buyers(4)
			sale := a.activeSale(4, false)
			for _, tok := range toks[:2] {
				want(t, a.purchase(tok, sale, a.path(tok, sale)), 202, "")
			}
			want(t, a.purchase(toks[2], sale, "not-the-path"), 403, "bad_path")
			want(t, b.purchase(toks[2], sale, b.path(toks[2], sale)), 202, "")
			want(t, b.purchase(toks[3], sale, "not-the-path"), 403, "bad_path")

			traffic := func(s *stack) string {
				d := dashSale(t, s.dashboard(), sale)
				return fmt.Sprintf("admitted %d bad_path %d orders %d", sum(d.Series.Admitted), sum(d.Series.Refused["bad_path"]), sum(d.Series.Orders))
			}
			const all = "admitted 3 bad_path 2 orders 3"
			var got [2]string
			deadline := time.Now().Add(10 * time.Second)
			for got = [2]string{traffic(a), traffic(b)}; got != [2]string{all, all} && time.Now().Before(deadline); got = [2]string{traffic(a), traffic(b)} {
				time.Sleep(10 * time.Millisecond)
			}
			if got != [2]string{all, all} {
				t.Errorf("the instance on the right clock shows %s, the one %v off %s; want both %s", got[0], off, got[1], all)
			}
			ma, mb := a.dashboard(), b.dashboard()
			if d := mb.ServerTime.Sub(ma.ServerTime); d < -time.Second || d > time.Second {
				t.Errorf("server times %v apart; want the same within a second", d)
			}
			sa, sb := dashSale(t, ma, sale).Series, dashSale(t, mb, sale).Series
			if d := sb.Start - sa.Start; d < -1 || d > 1 {
				t.Errorf("the series start %d s apart; want the same second within one", d)
			}
		})
	}
}
