package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"seckill/internal/testenv"
)

// The handler's own cost of a purchase, without the network: what the
// server spends on a press besides net/http's reading and writing, which
// hello-world pays as well. The crowds of BENCHMARKS.md are mostly these
// presses (409 for a buyer who won, 410 once sold out), so this is the
// part of a press that makes seckill slower than hello-world.
//
//	go test -run '^$' -bench Purchase -benchmem ./httpapi/

// press returns a purchase request of token on url, made once and sent
// again and again (the handler reads nothing from its body).
func press(url, token string) *http.Request {
	r := httptest.NewRequest("POST", url, nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}

// observeNothing stands in for serve's metrics, so that the benchmark
// goes through the observed path serve takes.
func observeNothing(string, string, int, time.Duration) {}

// BenchmarkPurchaseDuplicate: a buyer who won presses again, answered
// 409 from what this instance knows.
func BenchmarkPurchaseDuplicate(b *testing.B) {
	s := newStack(b, options{})
	s.withBench(observeNothing)
	sale := s.activeSale(10, false)
	tokens, _ := s.buyers(1)
	p := s.path(tokens[0], sale)
	want(b, s.purchase(tokens[0], sale, p), 202, "")
	pressAgain(b, s.h, press(fmt.Sprintf("/api/sales/%d/purchase/%s", sale, p), tokens[0]), http.StatusConflict)
}

// BenchmarkPurchaseSoldOut: a press after the sale sold out, answered 410
// from the local sold-out flag.
func BenchmarkPurchaseSoldOut(b *testing.B) {
	s := newStack(b, options{})
	s.withBench(observeNothing)
	sale := s.activeSale(1, false)
	tokens, _ := s.buyers(2)
	p0, p1 := s.path(tokens[0], sale), s.path(tokens[1], sale)
	want(b, s.purchase(tokens[0], sale, p0), 202, "")
	want(b, s.purchase(tokens[1], sale, p1), 410, "sold_out")
	pressAgain(b, s.h, press(fmt.Sprintf("/api/sales/%d/purchase/%s", sale, p1), tokens[1]), http.StatusGone)
}

// pressAgain sends r to h b.N times, each answered with status.
func pressAgain(b *testing.B, h http.Handler, r *http.Request, status int) {
	w := testenv.NewDiscardWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeHTTP(w, r)
		if w.Status != status {
			b.Fatalf("status %d, want %d", w.Status, status)
		}
	}
}

// BenchmarkHelloHandler is the baseline of the two above: bench/hello's
// handler, on the same writer.
func BenchmarkHelloHandler(b *testing.B) {
	body := []byte("hello, world\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	r := httptest.NewRequest("GET", "/", nil)
	w := testenv.NewDiscardWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeHTTP(w, r)
	}
}
