package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"seckill"
)

// nopDashBus is a DashBus that carries nothing: it only turns sharing on.
type nopDashBus struct{}

func (nopDashBus) PublishDash(context.Context, []byte) error  { return nil }
func (nopDashBus) SubscribeDash(func([]byte)) (func(), error) { return func() {}, nil }

// TestDashHeard: another instance's counts are added under the sender's
// second when it is at most DashSkew ahead and still in the window, only
// for sales in the catalogue; an instance's own message is not added
// again; this instance's counts are published once.
func TestDashHeard(t *testing.T) {
	const t0 = 1_700_000_000
	now := func() time.Time { return time.Unix(t0, 0) }
	s := &Server{cfg: Config{Now: now, DashBus: nopDashBus{}, DashShare: time.Hour}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.catalog = &catalog{now: now, load: func(context.Context) ([]*seckill.Sale, error) {
		return []*seckill.Sale{{ID: 1}}, nil
	}}
	s.dash = newDashboard(s)
	defer s.dash.close()
	msg := func(from string, cs ...dashShareCount) []byte {
		b, err := json.Marshal(dashShareMsg{From: from, Counts: cs})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s.dash.heard(msg("other",
		dashShareCount{Sale: 1, Sec: t0 - 2, Admitted: 3, Refused: map[string]int64{"sold_out": 2, "new_code": 1}},
		dashShareCount{Sale: 1, Sec: t0 + DashSkew, Admitted: 4},       // ahead, within the skew: kept
		dashShareCount{Sale: 1, Sec: t0 + DashSkew + 1, Admitted: 100}, // too far ahead: dropped
		dashShareCount{Sale: 1, Sec: t0 - DashWindow, Admitted: 100},   // out of the window: dropped
		dashShareCount{Sale: 2, Sec: t0, Admitted: 100},                // no such sale: dropped
		dashShareCount{Sale: 1, Sec: t0, Admitted: -5},                 // nonsense: nothing
	))
	s.dash.heard(msg(s.dash.id, dashShareCount{Sale: 1, Sec: t0, Admitted: 100})) // our own: already counted
	if s.dash.get(2, false) != nil {
		t.Error("a sale not in the catalogue got a series")
	}
	got := s.dash.get(1, false).span(t0-DashWindow+1, t0+DashSkew+1)
	if n := sum(got.Admitted); n != 7 {
		t.Errorf("admitted %d, want 3+4", n)
	}
	at := func(sec int64) int { return int(sec - got.Start) }
	if got.Admitted[at(t0-2)] != 3 || got.Admitted[at(t0+DashSkew)] != 4 {
		t.Errorf("admissions not under the sender's seconds: %v", got.Admitted)
	}
	if got.Refused["sold_out"][at(t0-2)] != 2 || got.Refused["other"][at(t0-2)] != 1 {
		t.Errorf("refused %v", got.Refused)
	}
	if u := s.dash.unsent(); len(u) != 0 {
		t.Errorf("heard counts would be published again: %+v", u)
	}

	// This instance's own counts are published once, under their second.
	ctx := context.Background()
	s.dash.count(ctx, 1, true, nil)
	s.dash.count(ctx, 1, true, seckill.Errorf(seckill.ESoldOut, "sold out"))
	u := s.dash.unsent()
	if len(u) != 1 || u[0].Sale != 1 || u[0].Sec != t0 || u[0].Admitted != 1 || u[0].Refused["sold_out"] != 1 || len(u[0].Refused) != 1 {
		t.Errorf("unsent %+v, want one admission and one sold_out at %d", u, t0)
	}
	if u := s.dash.unsent(); len(u) != 0 {
		t.Errorf("published twice: %+v", u)
	}
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}
