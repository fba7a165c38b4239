package checkout

import (
	"context"
	"testing"
	"time"

	"seckill"
)

// TestSlowReserveLeavesBuyerStuck (review): the gate's Reserve takes longer
// than PublishTimeout (a Redis failover or latency spike; no stall past the
// reconcile age, no reconciler involved). Admit's publish deadline counts
// from before Reserve, so the publish starts with its context already
// expired: nats refuses to send (ctx.Err before the request), mq reports
// that as ErrMaybeStored, and Admit keeps the reservation and answers 503
// "may still go through". Nothing is in the queue, yet the buyer's retry is
// 409 duplicate and /result says "none" until a reconciler releases the
// reservation (--reconcile-age, 30 s + up to --reconcile-every).
// Expected: a publish that was never sent is not "maybe stored": either
// the reservation is released (a plain 503, the retry admitted) or the
// request is published (202).
func TestSlowReserveLeavesBuyerStuck(t *testing.T) {
	v := newEnv(t, withSQLite) // mq on embedded JetStream: the real Publish
	ctx := context.Background()
	s := v.openSale(5)
	u := v.users(1)[0]
	bk := v.backends()
	const publishTimeout = 200 * time.Millisecond
	sg := &stallGate{StockGate: bk.Gate, after: func() { time.Sleep(publishTimeout + 50*time.Millisecond) }}
	bk.Gate = sg
	e := v.recovered(Config{PublishTimeout: publishTimeout}, &bk)

	_, err := e.Purchase(ctx, u, s.ID, path(t, e, u, s.ID))
	if err == nil {
		return // published and acknowledged: fine
	}
	wantCode(t, err, seckill.EBusy)
	t.Logf("first press: %v", err)
	queued := v.pending(s.ID)
	_, err2 := e.Purchase(ctx, u, s.ID, path(t, e, u, s.ID))
	r := result(t, e, u, s.ID)
	if seckill.ErrorCode(err2) == seckill.EDuplicate && queued == 0 && r.Status == seckill.ResultNone {
		t.Errorf("buyer stuck: the first press was answered 503 (%v) with nothing queued; "+
			"the retry is %v and the result %q: the reservation is held for nobody until the reconciler releases it", err, err2, r.Status)
	}
}

// hangUpGate answers Reserve as a shared gate does when its caller's ctx
// ends while the script is on its way: the caller gets ctx's error at once,
// and the script, already sent, still reserves (rdb.Gate.Reserve). The
// script reaches the gate after delay.
type hangUpGate struct {
	seckill.StockGate
	delay    time.Duration
	answered chan struct{} // closed once the (first) script has run
}

func (g *hangUpGate) Reserve(ctx context.Context, r seckill.Reservation) (seckill.GateResult, error) {
	type answer struct {
		res seckill.GateResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		time.Sleep(g.delay)
		res, err := g.StockGate.Reserve(context.WithoutCancel(ctx), r)
		done <- answer{res, err}
		select {
		case <-g.answered:
		default:
			close(g.answered)
		}
	}()
	select {
	case a := <-done:
		return a.res, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// TestBuyerHangsUpDuringReserve (review): a buyer's connection drops while
// the shared gate's reserve script is on its way (the request's ctx is
// cancelled). The script reserves all the same; the admission must still
// publish the request (it becomes the buyer's order) or give the unit
// back. Before, Admit returned with the caller's error and did neither:
// the unit was held for nobody until a reconciler released it, the buyer's
// retries were 409 duplicate with /result "none", and the others were
// told sold out.
func TestBuyerHangsUpDuringReserve(t *testing.T) {
	v := newEnv(t)
	s := v.openSale(1)
	u := v.users(2)
	bk := v.backends()
	hg := &hangUpGate{StockGate: bk.Gate, delay: 50 * time.Millisecond, answered: make(chan struct{})}
	bk.Gate = hg
	e := v.recovered(Config{PublishTimeout: 2 * time.Second}, &bk)
	p := path(t, e, u[0], s.ID)
	ctx, hangUp := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, hangUp)
	ticket, err := e.Purchase(ctx, u[0], s.ID, p)
	t.Logf("the press that hung up: ticket %q, %v", ticket, err)
	<-hg.answered
	runWriter(t, e)
	waitFor(t, "the reservation settled", func() bool {
		return v.pending(s.ID) == 0 && result(t, e, u[0], s.ID).Status != seckill.ResultQueued
	})
	r := result(t, e, u[0], s.ID)
	if r.Status != seckill.ResultSuccess && v.gateLeft(s.ID) == 0 {
		t.Fatalf("the unit is held for nobody: the buyer's result is %+v, nothing is queued, the gate has 0 left", r)
	}
	if r.Status == seckill.ResultSuccess {
		// The buyer's order: the other buyer is refused sold out.
		_, err := e.Purchase(context.Background(), u[1], s.ID, path(t, e, u[1], s.ID))
		wantCode(t, err, seckill.ESoldOut)
	} else if _, err := e.Purchase(context.Background(), u[0], s.ID, p); err != nil {
		t.Fatalf("the unit came back, but its buyer's retry is %v", err)
	}
	waitFor(t, "the writer caught up", func() bool { return v.pending(s.ID) == 0 })
	v.checkAtRest(s.ID)
}
