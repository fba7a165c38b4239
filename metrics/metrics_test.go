package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"seckill"
	"seckill/metrics"
)

type fakeQueue struct {
	pending int64
	oldest  time.Time
	calls   int
}

func (q *fakeQueue) Pending(ctx context.Context, saleID int64) (int64, error) {
	q.calls++
	return q.pending, nil
}

func (q *fakeQueue) OldestPending(ctx context.Context) (time.Time, bool, error) {
	return q.oldest, q.pending > 0, nil
}

type fakeSales struct{ err error }

func (f fakeSales) Sales(ctx context.Context) ([]*seckill.Sale, error) {
	return []*seckill.Sale{{ID: 1}, {ID: 2}}, f.err
}

func (f fakeSales) SaleStats(ctx context.Context, id int64) (*seckill.SaleStats, error) {
	return &seckill.SaleStats{Pending: 3 * id, Paid: id, Cancelled: 1}, nil
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetrics(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	q := &fakeQueue{pending: 7, oldest: now.Add(-1500 * time.Millisecond)}
	m := metrics.New(metrics.Options{Queue: q, Sales: fakeSales{}, CacheTTL: time.Hour, Now: func() time.Time { return now }})

	m.ObserveHTTP("POST /api/sales/{id}/purchase/{path}", "", 202, 3*time.Millisecond)
	m.ObserveHTTP("POST /api/sales/{id}/purchase/{path}", "sold_out", 410, time.Millisecond)
	m.ObserveHTTP("POST /api/sales/{id}/purchase/{path}", "sold_out", 410, time.Millisecond)
	m.ObserveHTTP("", "not_found", 404, time.Millisecond)
	m.GateResult(seckill.Reserved, nil)
	m.GateResult(seckill.SoldOut, nil)
	m.GateResult(0, errors.New("gate down"))
	m.BatchWritten(10, 2, 5*time.Millisecond, nil)
	m.BatchWritten(4, 0, time.Millisecond, errors.New("sql down"))
	m.WebSockets().Inc()

	out := scrape(t, m)
	for _, line := range []string{
		`seckill_http_requests_total{code="",route="POST /api/sales/{id}/purchase/{path}",status="202"} 1`,
		`seckill_http_requests_total{code="sold_out",route="POST /api/sales/{id}/purchase/{path}",status="410"} 2`,
		`seckill_http_requests_total{code="not_found",route="unmatched",status="404"} 1`,
		`seckill_http_request_duration_seconds_count{route="POST /api/sales/{id}/purchase/{path}"} 3`,
		`seckill_gate_results_total{result="reserved"} 1`,
		`seckill_gate_results_total{result="sold_out"} 1`,
		`seckill_gate_results_total{result="duplicate"} 0`,
		`seckill_gate_results_total{result="error"} 1`,
		`seckill_writer_batch_size_count 2`,
		`seckill_writer_batch_duration_seconds_count 2`,
		`seckill_orders_written_total 8`,
		`seckill_orders_failed_total 2`,
		`seckill_writer_batch_errors_total 1`,
		`seckill_websocket_connections 1`,
		`seckill_queue_pending 7`,
		`seckill_queue_lag_seconds 1.5`,
		`seckill_queue_up 1`,
		`seckill_orders{status="pending_payment"} 9`,
		`seckill_orders{status="paid"} 3`,
		`seckill_orders{status="cancelled"} 2`,
		`seckill_orders{status="refunded"} 0`,
		`seckill_sales 2`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(out, line) {
			t.Errorf("scrape lacks %q", line)
		}
	}
	// A second scrape within the cache TTL reads nothing again.
	scrape(t, m)
	if q.calls != 1 {
		t.Errorf("queue read %d times, want 1 (cached)", q.calls)
	}
}

func TestScrapeErrors(t *testing.T) {
	m := metrics.New(metrics.Options{Sales: fakeSales{err: errors.New("sql down")}})
	if out := scrape(t, m); !strings.Contains(out, "seckill_orders_stats_up 0") || strings.Contains(out, "seckill_queue_pending") {
		t.Errorf("scrape:\n%s", out)
	}
}

// The hot path's hooks allocate nothing once a label set has been seen.
func TestObserveAllocs(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.ObserveHTTP("GET /x", "", 200, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() {
		m.ObserveHTTP("GET /x", "", 200, time.Millisecond)
		m.GateResult(seckill.Reserved, nil)
	}); n != 0 {
		t.Errorf("%v allocations per observation", n)
	}
}
