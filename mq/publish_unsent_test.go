package mq

import (
	"context"
	"errors"
	"testing"
	"time"

	"seckill"
)

// TestPublishUnsentLateReportedMaybeStored (review): a waiting batch whose
// callers' deadlines all passed is taken for its slot (takeNext: sent =
// true) before its callers' goroutines marked themselves gone. send then
// sends nothing (the new until check), but a caller woken by its ctx sees
// b.sent and answers ErrMaybeStored: Admit keeps the reservation for the
// reconciler, though nothing was sent.
func TestPublishUnsentLateReportedMaybeStored(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	q.pmu.Lock()
	q.maxInFlight = 1
	q.psales[1] = &saleQueue{inflight: 1}
	q.pmu.Unlock()

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- q.Publish(ctx, seckill.OrderRequest{SaleID: 1, UserID: 1, Ticket: "t"}) }()
	waitFor(t, func() bool {
		q.pmu.Lock()
		defer q.pmu.Unlock()
		w := q.psales[1].waiting
		return len(w) == 1 && len(w[0].reqs) == 1
	})
	// The slot frees just as the deadline passes; the caller's goroutine
	// has not yet taken pmu to mark itself gone.
	q.pmu.Lock()
	<-ctx.Done()
	time.Sleep(10 * time.Millisecond) // the caller is now blocked on pmu
	b := q.takeNext(q.psales[1])
	q.pmu.Unlock()
	q.send(b)
	err := <-res
	t.Logf("send: %v; caller: %v", b.err, err)
	rs, perr := q.PendingRequests(t.Context(), 1)
	if perr != nil {
		t.Fatal(perr)
	}
	if len(rs) == 0 && errors.Is(err, seckill.ErrMaybeStored) {
		t.Errorf("nothing was sent (queue empty, batch err %v), yet the caller was told %v", b.err, err)
	}
}
