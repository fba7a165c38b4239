package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"

	"seckill/internal/testenv"
)

// BenchmarkAdmission is what an admission costs the server beside
// net/http's reading and writing: each operation is one buyer's first
// press in an open sale, answered 202, through serve's own handler on the
// embedded default (SQLite, the in-process gate, embedded JetStream, two
// order writers), from 64 goroutines per core as a crowd's connections
// would. The timer runs until every 202 is an order in SQL, so the
// writer's work is in it too. cpu-µs/op is the process's CPU per
// admission, the figure to compare on a shared machine; in a crowd the
// kernel's part of net/http comes on top (BENCHMARKS.md, run AD).
// SECKILL_BENCH_CPUPROFILE=FILE profiles the timed part alone (-cpuprofile
// would mostly show the setup: the buyers' sessions and paths).
//
//	go test -run '^$' -bench Admission -benchtime 20000x ./cmd/seckill/
func BenchmarkAdmission(b *testing.B) {
	m := startServer(b, false)
	h, base := m.srv.Handler, m.URL()
	var login struct{ Token string }
	apiCall(b, "POST", base+"/api/sessions", "", map[string]string{"phone": "19900000000", "password": "admin-password"}, 200, &login)
	var sale struct{ Sale struct{ ID int64 } }
	now := time.Now()
	apiCall(b, "POST", base+"/api/admin/sales", login.Token, map[string]any{
		"name": "admission", "description": "BenchmarkAdmission", "price_cents": 100, "original_price_cents": 200, "stock": b.N, "require_captcha": false,
		"starts_at": now.Add(-time.Second), "ends_at": now.Add(time.Hour),
	}, 201, &sale)

	// The buyers, each with the hidden path a browser asks for first.
	presses := make([]*http.Request, 0, b.N)
	for len(presses) < b.N {
		var out struct{ Users []struct{ Token string } }
		apiCall(b, "POST", base+"/api/admin/bench/users", login.Token, map[string]any{
			"count": min(b.N-len(presses), 10000), "prefix": fmt.Sprintf("1%05d", 10000+len(presses)/10000),
		}, 201, &out)
		for _, u := range out.Users {
			var p struct{ Path string }
			apiCall(b, "POST", fmt.Sprintf("%s/api/sales/%d/path", base, sale.Sale.ID), u.Token, nil, 200, &p)
			r := httptest.NewRequest("POST", fmt.Sprintf("/api/sales/%d/purchase/%s", sale.Sale.ID, p.Path), nil)
			r.Header.Set("Authorization", "Bearer "+u.Token)
			r.RemoteAddr = "127.0.0.1:40000"
			presses = append(presses, r)
		}
	}

	var next atomic.Int64
	b.SetParallelism(64)
	b.ReportAllocs()
	stopProfile := profileCPU(b, os.Getenv("SECKILL_BENCH_CPUPROFILE"))
	cpu0 := testenv.CPUTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := testenv.NewDiscardWriter()
		for pb.Next() {
			w.Reset()
			h.ServeHTTP(w, presses[next.Add(1)-1])
			if w.Status != http.StatusAccepted {
				b.Errorf("status %d, want 202", w.Status)
				return
			}
		}
	})
	// Until the orders are in SQL: the writer's share is the admission's.
	var st struct{ Orders, Queued int64 }
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		apiCall(b, "GET", fmt.Sprintf("%s/api/admin/sales/%d/stats", base, sale.Sale.ID), login.Token, nil, 200, &st)
		if st.Orders >= int64(b.N) && st.Queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("after a minute %d of %d orders in SQL, %d queued", st.Orders, b.N, st.Queued)
		}
	}
	b.StopTimer()
	stopProfile()
	if cpu := testenv.CPUTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "admissions/s")
}

// profileCPU writes a CPU profile to file (when set) until the returned
// function is called.
func profileCPU(b *testing.B, file string) (stop func()) {
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}
