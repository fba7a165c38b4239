package httpapi

import (
	"context"
	"slices"
	"testing"
	"time"

	"seckill"
)

// TestSaleSeriesRing: the ring keeps DashWindow seconds; a second that
// comes round again starts from zero, a second already out of the window
// is not counted, and a span reads seconds never written as zero.
func TestSaleSeriesRing(t *testing.T) {
	var ss saleSeries
	add := func(sec int64, code string) {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if b := ss.bucket(sec); b != nil {
			if code == "" {
				b.admitted++
			} else {
				b.refused[refusalIndex(code)]++
			}
		}
	}
	const t0 = 1_700_000_000
	add(t0, "")
	add(t0, "")
	add(t0+1, "sold_out")
	add(t0+1, "no_such_code")
	got := ss.span(t0-1, t0+2)
	if want := []int64{0, 2, 0, 0}; !slices.Equal(got.Admitted, want) {
		t.Errorf("admitted %v, want %v", got.Admitted, want)
	}
	if !slices.Equal(got.Refused["sold_out"], []int64{0, 0, 1, 0}) || !slices.Equal(got.Refused["other"], []int64{0, 0, 1, 0}) || len(got.Refused) != 2 {
		t.Errorf("refused %v", got.Refused)
	}
	// A window later, t0's bucket holds t0+DashWindow: t0 reads zero.
	add(t0+DashWindow, "")
	add(t0, "") // out of the window now: dropped
	if got := ss.span(t0, t0); got.Admitted[0] != 0 {
		t.Errorf("a second out of the window reads %d", got.Admitted[0])
	}
	if got := ss.span(t0+DashWindow, t0+DashWindow); got.Admitted[0] != 1 {
		t.Errorf("the second that came round reads %d, want 1", got.Admitted[0])
	}
	if got := ss.span(t0+1, t0+1); got.Refused["sold_out"][0] != 1 {
		t.Errorf("t0+1 is still in the window: %v", got.Refused)
	}
}

// BenchmarkDashboardCount is what counting costs a buying request: one
// known sale, every goroutine counting into it.
func BenchmarkDashboardCount(b *testing.B) {
	s := &Server{cfg: Config{Now: time.Now}}
	s.dash = newDashboard(s)
	s.dash.get(1, true)
	ctx := context.Background()
	refusal := seckill.Errorf(seckill.ESoldOut, "sold out")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.dash.count(ctx, 1, true, refusal)
		}
	})
}
