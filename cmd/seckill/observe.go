package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"seckill/account"
	"seckill/internal/connlimit"
	"seckill/metrics"
)

// OpsConfig is the observability and benchmarking part of `seckill serve`.
type OpsConfig struct {
	// Addr is the operations listener: GET /metrics, /healthz, /readyz and,
	// with Pprof, /debug/pprof/. Loopback by default; "" or "off" turns it
	// off. Never the public listener: metrics and profiles are internals,
	// and /debug/pprof/cmdline shows every flag, --secret included.
	Addr string
	// Pprof mounts net/http/pprof under /debug/pprof/ on the operations
	// listener.
	Pprof bool
	// BenchProvisioning enables POST /api/admin/bench/users, the admin's
	// bulk creation of buyer accounts with sessions for `seckill bench`.
	BenchProvisioning bool
}

// defaultOpsAddr keeps the operations listener off every network but the
// machine's own.
const defaultOpsAddr = "127.0.0.1:9090"

func (c *OpsConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "ops-addr", c.Addr, "operations listener for /metrics, /healthz, /readyz and /debug/pprof/ (\"off\" or empty: none); keep it on loopback or a private interface")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve net/http/pprof under /debug/pprof/ on the operations listener (its cmdline shows every flag: keep --ops-addr private)")
	fs.BoolVar(&c.BenchProvisioning, "bench-provisioning", c.BenchProvisioning, "enable POST /api/admin/bench/users for 'seckill bench' (admin only; never on a real sale)")
}

// enabled reports whether the operations listener runs.
func (c OpsConfig) enabled() bool {
	return c.Addr != "" && !strings.EqualFold(c.Addr, "off")
}

// openMetrics creates the metrics over the opened queue and database.
func (m *Main) openMetrics() *metrics.Metrics {
	m.metrics = metrics.New(metrics.Options{Queue: m.queue, Sales: m.db})
	return m.metrics
}

// benchUsers is the bulk user creator of the bench route, nil (route off)
// unless --bench-provisioning.
func (m *Main) benchUsers() account.BulkUsers {
	if !m.Config.Ops.BenchProvisioning {
		return nil
	}
	return m.db
}

// listenOps starts the operations listener, unless it is off.
func (m *Main) listenOps() error {
	c := m.Config.Ops
	m.log.Info("observability", "ops_addr", c.Addr, "pprof", c.Pprof, "bench_provisioning", c.BenchProvisioning)
	if !c.enabled() {
		if c.Pprof {
			m.log.Warn("--pprof has no effect without the operations listener (--ops-addr)")
		}
		return nil
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("operations listener: %w", err)
	}
	// Bounded too: its connections take descriptors from the same
	// process (found by review: 1,250 kept-alive health checks reached
	// the open-file limit and latched the embedded queue's store).
	opsLn := connlimit.New(ln, maxOpsConns, 0, nil)
	m.opsLn = opsLn
	if !isLoopback(ln.Addr()) {
		m.log.Warn("the operations listener is reachable from other machines: keep it on a private network",
			"ops_addr", ln.Addr().String(), "pprof", c.Pprof)
	}
	// No read or write timeout: a CPU profile or a trace answers after
	// the seconds it was asked for (a read deadline passing meanwhile
	// would cancel it). An idle keep-alive connection goes after a minute.
	m.opsSrv = &http.Server{Handler: m.opsHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, ConnState: opsLn.ConnState}
	m.serveOn("operations", m.opsSrv, m.opsLn)
	return nil
}

// maxOpsConns bounds the operations listener's connections: scrapers,
// health checks and a profile or two. They come out of the descriptors
// that --max-conns leaves to the process.
const maxOpsConns = 64

// opsHandler serves the operations routes: metrics, the health checks
// (only here, never on the public listener) and pprof when enabled.
func (m *Main) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics.Handler())
	health := m.api.Health()
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)
	if m.Config.Ops.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// isLoopback reports whether a listener's address is on loopback only.
func isLoopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().IsLoopback()
}

// OpsURL is where the operations listener listens, "" when it is off.
func (m *Main) OpsURL() string {
	if m.opsLn == nil {
		return ""
	}
	return "http://" + m.opsLn.Addr().String()
}
