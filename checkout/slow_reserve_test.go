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
