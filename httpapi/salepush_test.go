package httpapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seckill/httpapi"
)

// saleTicker drives the sale push by hand (WSConfig.SaleTicks).
type saleTicker chan time.Time

// tick makes the push compare the sales once and returns after it did:
// the push receives one tick at a time, so the second send, a zero time
// that compares nothing, completes only once the first tick's comparison
// and broadcast are over. (Two real ticks left the second comparison
// running after tick returned, where it could see a purchase half-way
// through the test's next steps.)
func (c saleTicker) tick() {
	c <- time.Now()
	c <- time.Time{}
}

// salePush reads the next message and fails unless it is the sale push
// of sale with left and state.
func salePush(t *testing.T, c *websocket.Conn, sale int64, left int64, state string) {
	t.Helper()
	m := push(t, c)
	if m["type"] != httpapi.PushSale || m["sale_id"] != float64(sale) || m["left"] != float64(left) || m["state"] != state {
		t.Fatalf("push %v, want sale %d left %d state %s", m, sale, left, state)
	}
}

// TestSalePush: every socket, including those of users who buy nothing,
// hears a sale's units change and its selling out; the changes between
// two comparisons coalesce into one message, and a comparison that finds
// nothing changed sends nothing.
func TestSalePush(t *testing.T) {
	ticks := make(saleTicker)
	s := newStack(t, options{ws: httpapi.WSConfig{SaleTicks: ticks}})
	url := s.serve()
	toks, _ := s.buyers(5)
	sale := s.activeSale(3, false)
	s.activeSale(10, false) // unchanged: never pushed, as the reads below show

	watchers := []*websocket.Conn{dialWS(t, url, bearer(toks[3])), dialWS(t, url, bearer(toks[4])), dialWS(t, url, bearer(s.admin))}
	ticks.tick() // the first comparison only learns the sales

	for _, tok := range toks[:2] {
		want(t, s.purchase(tok, sale, s.path(tok, sale)), 202, "")
	}
	ticks.tick()
	ticks.tick() // nothing changed: nothing sent
	want(t, s.purchase(toks[2], sale, s.path(toks[2], sale)), 202, "")
	ticks.tick()
	for _, c := range watchers {
		// Two purchases, one message; then the sell-out, with nothing
		// in between for the comparison that found no change.
		salePush(t, c, sale, 1, httpapi.SaleStateRunning)
		salePush(t, c, sale, 0, httpapi.SaleStateSoldOut)
	}
}

// TestSalePushSkipsSlowClient: a broadcast never waits for a client that
// does not read, and never drops it either: once half its send buffer is
// taken, sale pushes skip it, and the other half still takes its results.
func TestSalePushSkipsSlowClient(t *testing.T) {
	g := &wsGauge{}
	s := newStack(t, options{ws: httpapi.WSConfig{SendBuffer: 4, WriteTimeout: time.Minute, PingInterval: time.Hour}, wsGauge: g.add})
	url := s.serve()
	toks, ids := s.buyers(2)
	slow := dialWS(t, url, bearer(toks[0])) // never reads
	slow.SetReadLimit(-1)
	dialWS(t, url, bearer(toks[1])) // reads nothing either, but is never sent much
	g.await(t, 2)

	pad := struct{ Pad string }{strings.Repeat("x", 1<<20)}
	const max = 500 // 500 MiB: far beyond what the socket buffers hold
	done := make(chan int, 1)
	go func() {
		n := 0
		for n < max && s.api.Broadcast(pad) > 0 {
			n++
		}
		done <- n
	}()
	select {
	case n := <-done:
		if n == max {
			t.Fatalf("sale pushes never skipped a client after %d MiB", max)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a broadcast blocked on a slow client")
	}
	// Still open, with room for a result: queued, not dropped.
	for i, id := range ids {
		if n := s.api.SendUser(id, map[string]string{"type": "order_result"}); n != 1 {
			t.Fatalf("a result for client %d was queued on %d sockets, want 1 (dropped?)", i, n)
		}
	}
}
