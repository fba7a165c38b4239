package mq

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"seckill"
)

// FuzzDecodeMessage feeds arbitrary bytes to the decoder of queue messages
// (anyone who can publish to the stream's subjects can put them there): it
// must never panic, must return requests only with a sale and a user, and
// what it accepts in the binary formats must encode back to a message that
// decodes to the same requests.
func FuzzDecodeMessage(f *testing.F) {
	rs := []seckill.OrderRequest{
		{SaleID: 1, UserID: 2, Ticket: "T", PriceCents: 100, At: time.Unix(1_800_000_000, 5)},
		{SaleID: 1, UserID: 3},
	}
	f.Add(appendBatch(nil, rs))
	f.Add(appendRequest(nil, rs[0]))
	f.Add([]byte(`{"sale_id":1,"user_id":2,"ticket":"json"}`))
	f.Add([]byte{wireBatch, 3, wireV1, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeMessage(b)
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatalf("%q: no error and no request", b)
		}
		for _, r := range got {
			if r.SaleID <= 0 || r.UserID <= 0 {
				t.Fatalf("%q: request without sale or user: %+v", b, r)
			}
		}
		if len(b) > 0 && b[0] == '{' {
			return // JSON round-trips through its own encoder
		}
		again, err := decodeMessage(appendBatch(nil, got))
		if err != nil || len(again) != len(got) {
			t.Fatalf("%q: re-encoded: %v, %d requests, want %d", b, err, len(again), len(got))
		}
		for i := range got {
			a, g := again[i], got[i]
			if a.SaleID != g.SaleID || a.UserID != g.UserID || a.Ticket != g.Ticket || a.PriceCents != g.PriceCents || !a.At.Equal(g.At) {
				t.Fatalf("%q: request %d: %+v after re-encoding, was %+v", b, i, a, g)
			}
		}
	})
}

// FuzzDecodeResults feeds arbitrary bytes to the decoder of results
// messages (anyone who can publish on the results subject can send them):
// it must never panic, and what it accepts in the binary format must encode
// back to the same bytes. The seeds include the JSON of the instances before
// the binary format, which must still decode.
func FuzzDecodeResults(f *testing.F) {
	rs := []seckill.OrderResult{
		{SaleID: 1, UserID: 2, Result: seckill.Result{Ticket: "T1", Status: seckill.ResultSuccess, OrderID: 9}},
		{SaleID: 1, UserID: 3, Result: seckill.Result{Ticket: "T2", Status: seckill.ResultFailed, Reason: "sold_out"}},
		{SaleID: 1, UserID: 2, OrderStatus: seckill.OrderPaid, Result: seckill.Result{OrderID: 9}},
	}
	f.Add(appendResults(nil, rs))
	f.Add(appendResults(nil, nil))
	f.Add([]byte(`[{"sale_id":1,"user_id":2,"ticket":"T1","status":"success","order_id":9}]`))
	f.Add([]byte{wireResults, 1, 2, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeResults(b)
		if err != nil || len(b) == 0 || b[0] != wireResults {
			return
		}
		if again := appendResults(nil, got); !bytes.Equal(again, b) {
			// Varints have one shortest form; a longer one decodes the same
			// and must decode to the same results again.
			back, err := decodeResults(again)
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Fatalf("%q: re-encoded %q decodes to %+v, %v; was %+v", b, again, back, err, got)
			}
		}
	})
}

// TestResultsWire: results survive the binary format whole, and a JSON
// results message (an instance of the version before) decodes the same.
func TestResultsWire(t *testing.T) {
	rs := []seckill.OrderResult{
		{SaleID: 1, UserID: 2, Result: seckill.Result{Ticket: "01ARZ3NDEKTSV4RRFFQ6", Status: seckill.ResultSuccess, OrderID: 1 << 40}},
		{SaleID: 1 << 62, UserID: 3, Result: seckill.Result{Ticket: "T2", Status: seckill.ResultFailed, Reason: "expired"}},
		{SaleID: 5, UserID: 2, OrderStatus: seckill.OrderRefunded, Result: seckill.Result{OrderID: 9}},
	}
	got, err := decodeResults(appendResults(nil, rs))
	if err != nil || !reflect.DeepEqual(got, rs) {
		t.Fatalf("binary: %+v, %v; want %+v", got, err, rs)
	}
	js, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	if got, err = decodeResults(js); err != nil || !reflect.DeepEqual(got, rs) {
		t.Fatalf("JSON: %+v, %v; want %+v", got, err, rs)
	}
	for _, bad := range [][]byte{nil, {wireResults, 1}, {wireResults, 1, 2, 3, 5, 'a'}, []byte(`{"sale_id":1}`)} {
		if _, err := decodeResults(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}
