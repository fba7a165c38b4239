package mq

import (
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
