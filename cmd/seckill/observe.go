package main

import (
	"flag"
	"net/http"
	"net/http/pprof"

	"seckill/httpapi"
	"seckill/metrics"
)

// OpsConfig is the observability and benchmarking part of `seckill serve`.
type OpsConfig struct {
	// Pprof mounts net/http/pprof under /debug/pprof/ on the main listener.
	Pprof bool
	// BenchProvisioning enables POST /api/admin/bench/users, the admin's
	// bulk creation of buyer accounts with sessions for `seckill bench`.
	BenchProvisioning bool
}

func (c *OpsConfig) flags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve net/http/pprof under /debug/pprof/ (profiles reveal internals: enable only where trusted)")
	fs.BoolVar(&c.BenchProvisioning, "bench-provisioning", c.BenchProvisioning, "enable POST /api/admin/bench/users for `seckill bench` (admin only; never on a real sale)")
}

// openMetrics creates the metrics over the opened queue and database.
func (m *Main) openMetrics() *metrics.Metrics {
	m.metrics = metrics.New(metrics.Options{Queue: m.queue, Sales: m.db})
	m.log.Info("observability", "metrics", "/metrics", "pprof", m.Config.Ops.Pprof, "bench_provisioning", m.Config.Ops.BenchProvisioning)
	return m.metrics
}

// benchUsers is the bulk user creator of the bench route, nil (route off)
// unless --bench-provisioning.
func (m *Main) benchUsers() httpapi.BulkUsers {
	if !m.Config.Ops.BenchProvisioning {
		return nil
	}
	return m.db
}

// withOps serves GET /metrics, and pprof when enabled, in front of the API
// on the main listener.
func (m *Main) withOps(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics.Handler())
	if m.Config.Ops.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", api)
	return mux
}
