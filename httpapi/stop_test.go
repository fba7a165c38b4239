package httpapi_test

import (
	"fmt"
	"testing"
	"time"

	"seckill/httpapi"
)

// TestStopSale: an admin ends a running sale early; purchases are refused
// as ended at once, sockets hear the sale end, and an upcoming sale
// stopped never opens.
func TestStopSale(t *testing.T) {
	ticks := make(saleTicker)
	s := newStack(t, options{ws: httpapi.WSConfig{SaleTicks: ticks}})
	url := s.serve()
	toks, _ := s.buyers(3)
	sale := s.activeSale(5, false)
	upcoming := s.sale(5, time.Now().Add(time.Hour), time.Now().Add(2*time.Hour), false)
	stop := func(id int64) string { return fmt.Sprintf("/api/admin/sales/%d/stop", id) }

	watcher := dialWS(t, url, bearer(toks[2]))
	ticks.tick() // learn the sales
	want(t, s.purchase(toks[0], sale, s.path(toks[0], sale)), 202, "")
	early := s.path(toks[1], sale)

	want(t, s.do("POST", stop(sale), "", nil), 401, "unauthenticated")
	want(t, s.do("POST", stop(sale), toks[0], nil), 403, "forbidden")
	want(t, s.do("POST", stop(sale+100), s.admin, nil), 404, "not_found")
	r := s.do("POST", stop(sale), s.admin, nil)
	want(t, r, 200, "")
	if st := r.json(t)["sale"].(map[string]any)["status"]; st != "ended" {
		t.Fatalf("stopped sale's status %v, want ended", st)
	}
	want(t, s.do("POST", stop(sale), s.admin, nil), 200, "") // again: no change

	// A path issued before the stop no longer buys; no new path is issued.
	want(t, s.purchase(toks[1], sale, early), 403, "ended")
	want(t, s.do("POST", fmt.Sprintf("/api/sales/%d/path", sale), toks[1], nil), 403, "ended")
	ticks.tick()
	salePush(t, watcher, sale, 4, httpapi.SaleStateEnded)

	want(t, s.do("POST", stop(upcoming), s.admin, nil), 200, "")
	got := s.do("GET", fmt.Sprintf("/api/sales/%d", upcoming), "", nil)
	want(t, got, 200, "")
	if st := got.json(t)["sale"].(map[string]any)["status"]; st != "ended" {
		t.Fatalf("stopped upcoming sale's status %v, want ended", st)
	}
	ticks.tick()
	salePush(t, watcher, upcoming, 5, httpapi.SaleStateEnded)
}
