package httpapi_test

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"seckill/httpapi"
)

// saleTicker drives the sale push by hand (WSConfig.SaleTicks).
type saleTicker chan time.Time

// tick makes the push compare the sales once and returns after it did:
// the push receives one tick at a time, so the second send completes only
// once the first tick's comparison and broadcast are over.
func (c saleTicker) tick() {
	c <- time.Now()
	c <- time.Now()
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
