package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMemoryFromMetrics(t *testing.T) {
	metrics := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.29281792e+08
go_memstats_heap_inuse_bytes 1.3e+08
go_memstats_stack_inuse_bytes 4.0e+07
go_goroutines 10043
seckill_websocket_connections 10000
seckill_http_requests_total{code="",route="GET /api/ws",status="101"} 10000
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(metrics))
	}))
	defer srv.Close()
	b := &runner{client: newClient(1)}
	m, err := b.memory(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := ServerMemory{RSS: 229281792, HeapInuse: 130_000_000, StackInuse: 40_000_000, Goroutines: 10043, WebSockets: 10000}
	if m != want {
		t.Fatalf("memory %+v, want %+v", m, want)
	}
	metrics = "go_goroutines 5\n"
	if _, err := b.memory(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "process_resident_memory_bytes") {
		t.Fatalf("metrics without RSS: %v", err)
	}
	if _, err := b.memory(context.Background(), srv.URL+"/nothing"); err == nil {
		t.Fatal("no metrics: no error")
	}
}

func TestWSIdleChecks(t *testing.T) {
	good := WSIdle{Sockets: 100, Opened: 100, After: ServerMemory{WebSockets: 100}}
	if f := good.failed(); len(f) != 0 {
		t.Fatalf("good run fails: %v", f)
	}
	for name, w := range map[string]WSIdle{
		"not all opened":        {Sockets: 100, Opened: 99, After: ServerMemory{WebSockets: 99}},
		"closed while idle":     {Sockets: 100, Opened: 100, ClosedEarly: 1, After: ServerMemory{WebSockets: 99}},
		"server counts too few": {Sockets: 100, Opened: 100, After: ServerMemory{WebSockets: 98}},
	} {
		r := &Result{Mode: ModeWSIdle, WS: &w}
		if len(r.Failed()) != 1 {
			t.Errorf("%s: failed %v, want one", name, r.Failed())
		}
	}
}
