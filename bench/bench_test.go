package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	var counts [nClasses]int64
	for _, status := range []int{202, 202, 409, 410, 410, 410, 429, 503, 200, 500, 403, 0} {
		counts[classify(status)]++
	}
	got := outcomesOf(counts)
	want := Outcomes{Accepted: 2, Duplicate: 1, SoldOut: 3, RateLimited: 1, Busy: 1, OK: 1, Other: 2, Err: 1}
	if got != want {
		t.Fatalf("outcomes %+v, want %+v", got, want)
	}
	if got.Total() != 12 {
		t.Fatalf("total %d", got.Total())
	}
	for _, c := range []class{cAccepted, cDuplicate, cSoldOut} {
		if !c.definitive() {
			t.Errorf("class %d should settle a buyer", c)
		}
	}
	for _, c := range []class{cRateLimited, cBusy, cOther, cErr} {
		if c.definitive() {
			t.Errorf("class %d should not settle a buyer", c)
		}
	}
}

func TestLatency(t *testing.T) {
	h := newHistogram()
	// 1..1000 ms: p50 is 500 ms, p99 990 ms, max 1000 ms.
	for ms := 1; ms <= 1000; ms++ {
		record(h, time.Duration(ms)*time.Millisecond)
	}
	record(h, -time.Second)   // clamped to the smallest value
	record(h, 10*time.Minute) // clamped to the largest
	l := latencyOf(h)
	near := func(name string, got, want float64) {
		t.Helper()
		if got < want*0.995 || got > want*1.005 {
			t.Errorf("%s = %.3f ms, want about %.3f", name, got, want)
		}
	}
	if l.Count != 1002 {
		t.Errorf("count %d", l.Count)
	}
	near("p50", l.P50, 500)
	near("p90", l.P90, 900)
	near("p99", l.P99, 990)
	near("p99.9", l.P999, 1000)
	near("max", l.Max, float64(histMax)/1000)
}

func TestCheckInvariants(t *testing.T) {
	good := Stats{Stock: 100, SQLStockLeft: 0, Orders: 100, Pending: 100, LedgerSum: 0, GateLeft: 0, Queued: 0}
	crowd := Crowd{Accepted: 100, Users: 300, Answered: 300, SoldOut: 200}
	for _, c := range CheckInvariants(good, crowd) {
		if !c.OK || c.Skip {
			t.Errorf("good stats: %s fails: %s", c.Name, c.Detail)
		}
	}

	broken := []struct {
		name  string
		st    Stats
		crowd Crowd
		fails string
	}{
		{"oversell", Stats{Stock: 100, Orders: 101, Pending: 101, SQLStockLeft: -1, LedgerSum: -1, GateLeft: -1}, Crowd{Accepted: 101, Users: 300, Answered: 300}, "I1 no oversell"},
		{"accepted twice", Stats{Stock: 100, Orders: 100, Pending: 100, SQLStockLeft: 0, LedgerSum: 0, GateLeft: 0}, Crowd{Accepted: 100, Users: 300, Answered: 300, SoldOut: 5, AcceptedTwice: 1}, "I2 no duplicate"},
		{"lost acceptance", Stats{Stock: 100, Orders: 99, Pending: 99, SQLStockLeft: 1, LedgerSum: 1, GateLeft: 1}, Crowd{Accepted: 100, Users: 50, Answered: 50}, "I3 no lost acceptance"},
		{"leak", Stats{Stock: 100, Orders: 90, Pending: 90, SQLStockLeft: 5, LedgerSum: 5, GateLeft: 5}, Crowd{Accepted: 90, Users: 90, Answered: 90}, "I4 no leak"},
		{"gate off", Stats{Stock: 100, Orders: 90, Pending: 90, SQLStockLeft: 10, LedgerSum: 10, GateLeft: 7}, Crowd{Accepted: 90, Users: 90, Answered: 90}, "I4 gate matches SQL"},
		{"ledger off", Stats{Stock: 100, Orders: 90, Pending: 90, SQLStockLeft: 10, LedgerSum: 11, GateLeft: 10}, Crowd{Accepted: 90, Users: 90, Answered: 90}, "I4 ledger"},
		{"202 not an order under its ticket", Stats{Stock: 100, Orders: 100, Pending: 100, SQLStockLeft: 0, LedgerSum: 0, GateLeft: 0},
			Crowd{Accepted: 100, Users: 300, Answered: 300, SoldOut: 200, Tickets: &TicketCheck{Accepted: 100, Orders: 99, Successes: 100, Asked: 100, Missing: []string{"user 7 ticket A: success order 3 ticket \"B\""}}},
			"I3 every 202 an order with its ticket"},
		{"order of a buyer never told success", Stats{Stock: 100, Orders: 100, Pending: 100, SQLStockLeft: 0, LedgerSum: 0, GateLeft: 0},
			Crowd{Accepted: 99, Users: 300, Answered: 300, SoldOut: 200, Tickets: &TicketCheck{Accepted: 99, Orders: 99, Successes: 99, Asked: 99}},
			"I3 no lost acceptance"},
		{"undersold", Stats{Stock: 100, Orders: 90, Pending: 90, SQLStockLeft: 10, LedgerSum: 10, GateLeft: 10}, Crowd{Accepted: 90, Users: 300, Answered: 300}, "I4 sold out"},
		{"sold out answered with units left", Stats{Stock: 100, Orders: 90, Pending: 90, SQLStockLeft: 10, LedgerSum: 10, GateLeft: 10}, Crowd{Accepted: 90, Users: 90, Answered: 90, SoldOut: 1}, "I4 sold out"},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			var failed []string
			for _, c := range CheckInvariants(b.st, b.crowd) {
				if !c.OK {
					failed = append(failed, c.Name)
				}
			}
			if len(failed) == 0 || failed[0] != b.fails {
				t.Fatalf("failed %v, want %q first", failed, b.fails)
			}
			r := &Result{Mode: ModePurchase, Settled: true, Invariants: CheckInvariants(b.st, b.crowd)}
			if len(r.Failed()) == 0 {
				t.Fatal("Result.Failed reports nothing")
			}
		})
	}

	t.Run("a 503 that went through is an order, not a lost 202", func(t *testing.T) {
		st := Stats{Stock: 100, Orders: 100, Pending: 100}
		c := Crowd{Accepted: 99, Users: 300, Answered: 300, SoldOut: 200}
		if lost := lostAcceptance(st, c); lost.OK {
			t.Fatalf("on counts alone 100 orders for 99 202s must fail: %+v", lost)
		}
		c.Tickets = &TicketCheck{Accepted: 99, Orders: 99, Successes: 100, Asked: 101}
		for _, ck := range CheckInvariants(st, c) {
			if !ck.OK {
				t.Errorf("%s fails: %s", ck.Name, ck.Detail)
			}
		}
	})

	t.Run("undersold but some buyers never answered", func(t *testing.T) {
		st := Stats{Stock: 100, Orders: 90, Pending: 90, SQLStockLeft: 10, LedgerSum: 10, GateLeft: 10}
		checks := CheckInvariants(st, Crowd{Accepted: 90, Users: 300, Answered: 290})
		last := checks[len(checks)-1]
		if !last.OK || !last.Skip {
			t.Fatalf("sold-out check %+v: want skipped", last)
		}
	})
	if r := (&Result{Mode: ModePurchase}); len(r.Failed()) != 1 {
		t.Fatalf("an unsettled run must fail: %v", r.Failed())
	}
}

func TestPlain(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%10 == 0 {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("hello"))
	}))
	defer srv.Close()

	res, err := Run(context.Background(), Config{URLOnly: srv.URL, Requests: 500, Conns: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 500 || res.Outcomes.OK != 450 || res.Outcomes.Busy != 50 || res.Latency.Count != 500 || res.OK {
		t.Fatalf("result %+v", res)
	}
	if res.RPS <= 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Fatalf("figures %+v", res)
	}

	// A fixed rate for a fixed time sends about rate × time requests.
	var progress strings.Builder
	res, err = Run(context.Background(), Config{URLOnly: srv.URL, Duration: 1500 * time.Millisecond, Rate: 200, Conns: 4, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 250 || res.Requests > 302 {
		t.Fatalf("%d requests at 200/s for 1.5s", res.Requests)
	}
	if !strings.Contains(progress.String(), "requests") {
		t.Fatalf("no progress line: %q", progress.String())
	}
	var out strings.Builder
	res.WriteText(&out)
	if !strings.Contains(out.String(), "requests/s") || !strings.Contains(out.String(), "p99.9") {
		t.Fatalf("report:\n%s", out.String())
	}
}

// TestLoginWaitsOutBudget: the admin login of a run started right after
// others meets the server's per-phone login budget (429, Retry-After) and
// waits it out instead of failing the run.
func TestLoginWaitsOutBudget(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"code":"rate_limited","message":"too many logins"}}`))
			return
		}
		w.Write([]byte(`{"token":"T"}`))
	}))
	defer srv.Close()
	b := &runner{cfg: Config{AdminPhone: "1", AdminPassword: "p"}, client: newClient(1)}
	var login struct{ Token string }
	if err := b.login(context.Background(), srv.URL, &login); err != nil || login.Token != "T" {
		t.Fatalf("login: %v %q", err, login.Token)
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("%d login attempts, want 3", n)
	}
}

// TestVerifyTickets: the buyers' /result against what the crowd was told.
// Buyer 1 holds the order of its 202; buyer 2's 202 ticket is not its
// order's; buyer 3 was only refused (never asked); buyer 4's 503 went
// through; buyer 5 met a 409 and holds nothing; buyer 6's read is refused
// 429 once, then answers.
func TestVerifyTickets(t *testing.T) {
	var asked sync.Map
	var limited atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/sales/9/result" {
			http.NotFound(w, r)
			return
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		n, _ := asked.LoadOrStore(tok, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		switch tok {
		case "u1":
			w.Write([]byte(`{"status":"success","order_id":1,"ticket":"T1"}`))
		case "u2":
			w.Write([]byte(`{"status":"success","order_id":2,"ticket":"OTHER"}`))
		case "u4":
			w.Write([]byte(`{"status":"success","order_id":4,"ticket":"T4"}`))
		case "u5":
			w.Write([]byte(`{"status":"none"}`))
		case "u6":
			if limited.CompareAndSwap(false, true) {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.Write([]byte(`{"status":"success","order_id":6,"ticket":"T6"}`))
		default:
			t.Errorf("asked the result of %q", tok)
		}
	}))
	defer srv.Close()
	users := []user{{1, "Bearer u1"}, {2, "Bearer u2"}, {3, "Bearer u3"}, {4, "Bearer u4"}, {5, "Bearer u5"}, {6, "Bearer u6"}}
	a := newAnswers(len(users))
	a.note(0, cAccepted, "T1")
	a.note(0, cDuplicate, "")
	a.note(1, cAccepted, "T2")
	a.note(2, cSoldOut, "")
	a.note(2, cRateLimited, "")
	a.note(3, cBusy, "")
	a.note(4, cDuplicate, "")
	a.note(5, cAccepted, "T6")
	b := &runner{client: newClient(4)}
	tc, err := b.verifyTickets(context.Background(), srv.URL, 9, users, a)
	if err != nil {
		t.Fatal(err)
	}
	if tc.Accepted != 3 || tc.Orders != 2 || tc.Successes != 4 || tc.Asked != 5 || len(tc.Missing) != 1 || !strings.Contains(tc.Missing[0], "ticket T2") {
		t.Fatalf("%+v", tc)
	}
	if _, ok := asked.Load("u3"); ok {
		t.Error("a buyer only refused was asked")
	}
	if n, _ := asked.Load("u6"); n == nil || n.(*atomic.Int32).Load() != 2 {
		t.Errorf("the 429 was not waited out: %v", n)
	}
}

// TestSubmitPayCountsOnlyTheRedirect: the provider's page redirects to the
// shop (303) when it took the money; a page shown instead (200: the
// payment closed at its expiry) is not a payment.
func TestSubmitPayCountsOnlyTheRedirect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ParseForm() != nil || r.PostForm.Get("result") != "pay" {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/pay/closed" {
			w.Write([]byte("<p>closed</p>"))
			return
		}
		http.Redirect(w, r, "/back", http.StatusSeeOther)
	}))
	defer srv.Close()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if err := submitPay(context.Background(), c, srv.URL+"/pay/open"); err != nil {
		t.Fatalf("paid: %v", err)
	}
	if err := submitPay(context.Background(), c, srv.URL+"/pay/closed"); err == nil {
		t.Fatal("a closed payment's page counted as paid")
	}
}

// TestStatsRidesOutServerFailures: a stats reading the server fails (a
// drill killed its database connection, an instance restarts behind the
// balancer) is tried again, so the run's checks go on; a refusal that is
// the client's (403) is not. Before, one 500 ended the whole run (found by
// a fault review).
func TestStatsRidesOutServerFailures(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := hits.Add(1); {
		case r.URL.Path == "/api/admin/sales/2/stats":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":"forbidden","message":"admins only"}}`))
		case n == 1:
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":{"code":"internal","message":"internal error"}}`))
		case n == 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"busy","message":"try again"}}`))
		default:
			w.Write([]byte(`{"orders":7,"queued":0}`))
		}
	}))
	defer srv.Close()
	b := &runner{cfg: Config{}, client: newClient(1)}
	st, err := b.stats(context.Background(), srv.URL, 1)
	if err != nil || st.Orders != 7 || hits.Load() != 3 {
		t.Fatalf("stats: %+v, %v after %d readings; want 7 orders after 3", st, err, hits.Load())
	}
	if _, err := b.stats(context.Background(), srv.URL, 2); err == nil || hits.Load() != 4 {
		t.Fatalf("a 403 reading: %v after %d readings, want an error at once", err, hits.Load())
	}
}

// TestProvisionRidesOutServerFailures: a bulk creation the server answers
// 503 (its database away for a moment) is tried again; a refusal (4xx)
// ends the run at once. A drill's bench stopped at the first 503.
func TestProvisionRidesOutServerFailures(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := hits.Add(1); {
		case r.Header.Get("Authorization") == "Bearer nobody":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":"forbidden","message":"admins only"}}`))
		case n == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"busy","message":"the database is unavailable; retry shortly"}}`))
		default:
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"users":[{"id":1,"token":"t1"},{"id":2,"token":"t2"}]}`))
		}
	}))
	defer srv.Close()
	b := &runner{cfg: Config{}, client: newClient(1), admin: "Bearer admin"}
	us, err := b.provision(context.Background(), srv.URL, 2)
	if err != nil || len(us) != 2 || hits.Load() != 2 {
		t.Fatalf("provision: %d buyers, %v after %d calls; want 2 after 2", len(us), err, hits.Load())
	}
	b.admin = "Bearer nobody"
	if _, err := b.provision(context.Background(), srv.URL, 2); err == nil || hits.Load() != 3 {
		t.Fatalf("a 403: %v after %d calls, want an error at once", err, hits.Load())
	}
}
