// Package metrics exposes what seckill does as Prometheus metrics, on a
// registry of its own: HTTP requests by route and outcome, stock gate
// results, the order queue's depth and lag, the order writer's batches,
// orders by status (read from SQL when scraped), WebSocket connections, and
// the Go runtime and process collectors.
//
// It implements the hooks the other packages define (checkout.Observer, the
// Observe func of httpapi.Config) without those packages importing it; cmd
// wires them together.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"seckill"
	"seckill/checkout"
)

var _ checkout.Observer = (*Metrics)(nil)

// Queue is what the metrics read of the order queue when scraped.
type Queue interface {
	// Pending counts requests stored and not yet acked (all sales for 0).
	Pending(ctx context.Context, saleID int64) (int64, error)
}

// QueueAger is implemented by queues that can cheaply tell when their
// oldest pending request was stored (ok is false when none is pending).
// With it the metrics also report the queue's lag.
type QueueAger interface {
	OldestPending(ctx context.Context) (at time.Time, ok bool, err error)
}

// Sales is what the metrics read of SQL when scraped, to count orders by
// status across sales.
type Sales interface {
	Sales(ctx context.Context) ([]*seckill.Sale, error)
	SaleStats(ctx context.Context, id int64) (*seckill.SaleStats, error)
}

// Options says where the metrics read state from on a scrape; nil fields
// leave their metrics out.
type Options struct {
	Queue Queue
	Sales Sales
	// CacheTTL is how long a scrape's reading of the queue and of SQL is
	// reused by the next scrapes; default 2s. It bounds what scraping costs
	// the database however often it happens.
	CacheTTL time.Duration
	// Timeout bounds one reading; default 2s.
	Timeout time.Duration
	// Now is the clock of the queue lag; default time.Now.
	Now func() time.Time
}

// Metrics holds the collectors. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	routeMu  sync.RWMutex
	routes   map[string]*routeMetrics

	gate [5]prometheus.Counter // 0: error, else by seckill.GateResult

	batchSize    prometheus.Histogram
	batchLatency prometheus.Histogram
	written      prometheus.Counter
	refused      prometheus.Counter
	batchErrors  prometheus.Counter

	websockets prometheus.Gauge
}

// routeMetrics are the children of one route, resolved once so that
// observing a request costs two map lookups and no allocation.
type routeMetrics struct {
	latency prometheus.Observer
	mu      sync.RWMutex
	byOut   map[outcome]prometheus.Counter
}

type outcome struct {
	code   string
	status int
}

// New returns the metrics registered on a new registry.
func New(opt Options) *Metrics {
	if opt.CacheTTL <= 0 {
		opt.CacheTTL = 2 * time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seckill_http_requests_total",
			Help: "HTTP requests answered, by route pattern, status and error code (empty on success).",
		}, []string{"route", "status", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "seckill_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		routes: map[string]*routeMetrics{},
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "seckill_writer_batch_size",
			Help:    "Messages per batch of the order writer.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
		}),
		batchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "seckill_writer_batch_duration_seconds",
			Help:    "Time to write one batch of the order writer: SQL transaction and acks.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_orders_written_total",
			Help: "Queued purchases the order writer settled in SQL as orders (a redelivered one counts again).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_orders_failed_total",
			Help: "Queued purchases SQL refused (no stock or no sale): each is a failed result.",
		}),
		batchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_writer_batch_errors_total",
			Help: "Batches whose SQL transaction failed; their messages are redelivered.",
		}),
		websockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "seckill_websocket_connections",
			Help: "Open WebSocket connections.",
		}),
	}
	gate := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seckill_gate_results_total",
		Help: "Answers of the stock gate: reserved, duplicate, sold_out, limited (the buyer's purchase bucket was empty), or error.",
	}, []string{"result"})
	m.gate[0] = gate.WithLabelValues("error")
	for _, r := range []seckill.GateResult{seckill.Reserved, seckill.Duplicate, seckill.SoldOut, seckill.Limited} {
		m.gate[r] = gate.WithLabelValues(r.String())
	}
	m.reg.MustRegister(
		m.requests, m.latency, gate,
		m.batchSize, m.batchLatency, m.written, m.refused, m.batchErrors, m.websockets,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if opt.Queue != nil {
		m.reg.MustRegister(newQueueCollector(opt))
	}
	if opt.Sales != nil {
		m.reg.MustRegister(newOrdersCollector(opt))
	}
	return m
}

// Registry is the registry the metrics are on, for adding more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveHTTP records one answered request: the ServeMux pattern that
// served it ("" for none), the application error code ("" on success), the
// status and the time taken. It has the signature of httpapi.Config.Observe.
func (m *Metrics) ObserveHTTP(route, code string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.routeMu.RLock()
	rm := m.routes[route]
	m.routeMu.RUnlock()
	if rm == nil {
		rm = m.route(route)
	}
	rm.latency.Observe(d.Seconds())
	out := outcome{code, status}
	rm.mu.RLock()
	c := rm.byOut[out]
	rm.mu.RUnlock()
	if c == nil {
		rm.mu.Lock()
		if c = rm.byOut[out]; c == nil {
			c = m.requests.WithLabelValues(route, strconv.Itoa(status), code)
			rm.byOut[out] = c
		}
		rm.mu.Unlock()
	}
	c.Inc()
}

func (m *Metrics) route(route string) *routeMetrics {
	m.routeMu.Lock()
	defer m.routeMu.Unlock()
	if rm := m.routes[route]; rm != nil {
		return rm
	}
	rm := &routeMetrics{latency: m.latency.WithLabelValues(route), byOut: map[outcome]prometheus.Counter{}}
	m.routes[route] = rm
	return rm
}

// GateResult counts one answer of the stock gate (checkout.Observer).
func (m *Metrics) GateResult(r seckill.GateResult, err error) {
	if err != nil || r < seckill.Reserved || r > seckill.Limited {
		m.gate[0].Inc()
		return
	}
	m.gate[r].Inc()
}

// BatchWritten records one batch of the order writer (checkout.Observer).
func (m *Metrics) BatchWritten(n, failed int, d time.Duration, err error) {
	m.batchSize.Observe(float64(n))
	m.batchLatency.Observe(d.Seconds())
	if err != nil {
		m.batchErrors.Inc()
		return
	}
	m.written.Add(float64(n - failed))
	m.refused.Add(float64(failed))
}

// WebSockets is the gauge of open WebSocket connections: Inc on accept, Dec
// on close.
func (m *Metrics) WebSockets() prometheus.Gauge { return m.websockets }
