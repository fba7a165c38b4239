package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"seckill/bench"
)

// startServer runs the server in-process on a free port with bench
// provisioning on and no per-IP limit (every buyer here shares one IP).
func startServer(t testing.TB, pprof bool) *Main {
	t.Helper()
	m := NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DataDir = t.TempDir()
	m.Config.IPRate = 0
	m.Config.LogLevel = "error"
	m.Config.AdminPhone, m.Config.AdminPassword = "19900000000", "admin-password"
	m.Config.Ops = OpsConfig{Addr: "127.0.0.1:0", BenchProvisioning: true, Pprof: pprof}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// benchJSON runs `seckill bench --json` with the admin of startServer and
// args against m, and returns the result and the output.
func benchJSON(t *testing.T, m *Main, args ...string) (bench.Result, string) {
	t.Helper()
	var out, progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"--target", m.URL(), "--ops", m.OpsURL(), "--admin-phone", "19900000000", "--admin-password", "admin-password", "--json"}, args...)
	if err := benchCmd(ctx, args, &out, &progress); err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s\nout:\n%s", err, progress.String(), out.String())
	}
	var res bench.Result
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return res, out.String()
}

func TestBenchEndToEnd(t *testing.T) {
	m := startServer(t, false)
	res, report := benchJSON(t, m, "--users", "300", "--stock", "100", "--tries", "2", "--conns", "16")
	o := res.Outcomes
	if !res.OK || !res.Settled || res.Requests != 600 || o.Accepted != 100 || o.Accepted+o.Duplicate+o.SoldOut != 600 {
		t.Fatalf("result:\n%s", report)
	}
	if s := res.Stats; s == nil || s.Orders != 100 || s.SQLStockLeft != 0 || s.GateLeft != 0 || s.Queued != 0 {
		t.Fatalf("stats %+v", res.Stats)
	}
	if len(res.Invariants) != 8 { // I1, I2, two of I3 and four of I4
		t.Fatalf("invariants %+v", res.Invariants)
	}
	for _, c := range res.Invariants {
		if !c.OK || c.Skip {
			t.Errorf("%s: %+v", c.Name, c)
		}
		if c.Name == "I3 every 202 an order with its ticket" && !strings.HasPrefix(c.Detail, "100 of 100 buyers") {
			t.Errorf("every 202's ticket asked: %s", c.Detail)
		}
	}

	// The server counted the crowd in its metrics.
	body := get(t, m.OpsURL()+"/metrics", 200)
	for _, want := range []string{
		`seckill_http_requests_total{code="",route="POST /api/sales/{id}/purchase/{path}",status="202"} 100`,
		`seckill_gate_results_total{result="reserved"} 100`,
		`seckill_orders_written_total 100`,
		`seckill_orders{status="pending_payment"} 100`,
		`seckill_queue_pending 0`,
		`seckill_websocket_connections 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	get(t, m.OpsURL()+"/debug/pprof/", 404) // off without --pprof

	// A second run against the same server provisions under new phones.
	var out, progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := benchCmd(ctx, []string{
		"--target", m.URL(), "--admin-phone", "19900000000", "--admin-password", "admin-password",
		"--users", "50", "--stock", "100", "--tries", "1", "--conns", "4", "--quiet",
	}, &out, &progress); err != nil {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "I1 no oversell") || !strings.Contains(out.String(), "skip") {
		t.Fatalf("report:\n%s", out.String())
	}
}

// TestBenchPayRatio: half the winners pay through the in-process sandbox
// provider, the others let their orders lapse; the units come back and
// sell again to new buyers, the lapsed buyers are duplicates, I1–I5 hold.
func TestBenchPayRatio(t *testing.T) {
	// Parallel with the other slow whole-server tests of this package
	// (issue 10: the suite without servers stays under a minute).
	t.Parallel()
	// The payers must pay before their orders' deadline, and the resale
	// settle before the resold orders lapse too. How long paying takes is
	// the machine's: on a loaded one under -race, 50 payments once took
	// over 10 s and reached the shop after a 12 s window (they were
	// refunded as late, as they should be, and the run tested that path
	// instead). A run whose payments did not all land as paid is run again
	// on a fresh server with a window twice what that run's crowd and
	// payments took (at least twice the last); the checks are the same.
	window := 12 * time.Second
	var res bench.Result
	var report string
	for attempt := 1; ; attempt++ {
		var err error
		res, report, err = payRatioRun(t, window)
		lc, st := res.Lifecycle, res.Stats
		if lc != nil && st != nil && st.Paid < int64(lc.Payers) && attempt < 3 {
			took := time.Duration((res.ProvisionSeconds + res.PathsSeconds + res.Seconds + lc.PaySeconds + lc.SubmitSeconds) * float64(time.Second))
			next := max(2*window, 2*took)
			t.Logf("run %d with a %v pay window: %d of %d payers paid in time (%d pay refusals, %d refunded as late), the crowd and payments took %v; again with %v",
				attempt, window, st.Paid, lc.Payers, lc.PayFails, st.PaymentsRefunded, took.Round(time.Millisecond), next.Round(time.Second))
			window = next
			continue
		}
		if err != nil {
			t.Fatalf("bench: %v\n%s", err, report)
		}
		break
	}
	lc := res.Lifecycle
	if !res.OK || lc == nil {
		t.Fatalf("result:\n%s", report)
	}
	if lc.Winners != 100 || lc.Payers != 50 || lc.Paid != 50 || lc.Unpaid != 50 || lc.Returned != 50 || lc.Resold != 50 ||
		lc.ResaleUsers != 100 || lc.LapsedAccepted != 0 || lc.LapsedDuplicate < 50 || !lc.AllBack {
		t.Errorf("lifecycle %+v", lc)
	}
	if lc.NotificationsPerSecond <= 0 || lc.AllBackSeconds <= 0 || lc.AllBackSeconds > 5 {
		t.Errorf("figures: %.1f notifications/s, all back %.3fs after the last deadline", lc.NotificationsPerSecond, lc.AllBackSeconds)
	}
	if s := res.Stats; s == nil || s.Orders != 150 || s.Paid != 50 || s.Cancelled != 50 || s.Pending != 50 || s.SQLStockLeft != 0 || s.GateLeft != 0 {
		t.Errorf("stats %+v", res.Stats)
	}
	names := map[string]bool{}
	for _, c := range res.Invariants {
		names[c.Name] = true
		if !c.OK || c.Skip {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
	for _, want := range []string{"I1 no oversell", "I2 no duplicate", "I3 no lost acceptance", "I3 every 202 an order with its ticket", "I4 no leak", "I4 gate matches SQL", "I4 sold out", "I5 payments once", "I5 orders moved once", "I4 resold", "I2 lapsed stay buyers"} {
		if !names[want] {
			t.Errorf("no check %q", want)
		}
	}
	t.Logf("%s", report)
}

// payRatioRun runs the --pay-ratio 0.5 bench against a fresh server whose
// orders wait window for payment. It returns what the bench reported even
// when its checks failed (err).
func payRatioRun(t *testing.T, window time.Duration) (bench.Result, string, error) {
	t.Helper()
	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.IPRate, m.Config.LogLevel = "127.0.0.1:0", t.TempDir(), 0, "error"
	m.Config.AdminPhone, m.Config.AdminPassword = "19900000000", "admin-password"
	m.Config.Ops = OpsConfig{Addr: "127.0.0.1:0", BenchProvisioning: true}
	m.Config.PayWindow, m.Config.SweepEvery = window, 200*time.Millisecond
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	}()
	var out, progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+2*window)
	defer cancel()
	err := benchCmd(ctx, []string{"--target", m.URL(), "--ops", m.OpsURL(), "--admin-phone", "19900000000", "--admin-password", "admin-password", "--json",
		"--users", "300", "--stock", "100", "--tries", "2", "--conns", "16", "--pay-ratio", "0.5"}, &out, &progress)
	var res bench.Result
	if jerr := json.Unmarshal([]byte(out.String()), &res); err == nil && jerr != nil {
		err = jerr
	}
	if err != nil {
		return res, "progress:\n" + progress.String() + "\nout:\n" + out.String(), err
	}
	return res, out.String(), nil
}

func TestBenchPlainAndErrors(t *testing.T) {
	hello := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer hello.Close()
	var out, errOut strings.Builder
	if err := benchCmd(context.Background(), []string{"--url-only", hello.URL, "--requests", "200", "--conns", "4", "--quiet"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "200 200") {
		t.Fatalf("report:\n%s", out.String())
	}
	t.Setenv("SECKILL_ADMIN_PHONE", "")
	t.Setenv("SECKILL_ADMIN_PASSWORD", "")
	if err := benchCmd(context.Background(), []string{"--target", hello.URL}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("no admin: %v", err)
	}
	if err := benchCmd(context.Background(), []string{"--target", hello.URL, "--admin-phone", "1", "--admin-password", "x", "--pay-ratio", "1.5"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "--pay-ratio") {
		t.Fatalf("pay ratio 1.5: %v", err)
	}
}

func TestBenchRouteOffAndPprof(t *testing.T) {
	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel = "127.0.0.1:0", t.TempDir(), "error"
	m.Config.AdminPhone, m.Config.AdminPassword = "19900000000", "admin-password"
	m.Config.Ops = OpsConfig{Addr: "127.0.0.1:0", Pprof: true}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var out, errOut strings.Builder
	err := benchCmd(context.Background(), []string{"--target", m.URL(), "--admin-phone", "19900000000", "--admin-password", "admin-password", "--users", "5", "--quiet"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--bench-provisioning") {
		t.Fatalf("bench against a server without the route: %v", err)
	}
	if body := get(t, m.OpsURL()+"/debug/pprof/", 200); !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index: %.200s", body)
	}
}

func get(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d: %.300s", url, resp.StatusCode, status, b)
	}
	return string(b)
}
