package mq

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"seckill"
)

// resultsPerMsg bounds one results message well under NATS's default
// 1 MiB payload limit.
const resultsPerMsg = 1000

// PublishResults sends rs to every subscriber of every instance, as core
// NATS messages: at most once, not stored, nothing waits for receivers.
// Results must also be kept where a client can poll them. Errors are EBusy.
func (q *Queue) PublishResults(ctx context.Context, rs []seckill.OrderResult) error {
	for len(rs) > 0 {
		n := min(len(rs), resultsPerMsg)
		data, err := json.Marshal(rs[:n])
		if err != nil {
			return fmt.Errorf("publish results: %w", err)
		}
		if err := q.nc.Publish(q.results, data); err != nil {
			return fmt.Errorf("publish results: %w", busy(err))
		}
		rs = rs[n:]
	}
	return ctx.Err()
}

// SubscribeResults calls fn, from one goroutine, for every result published
// (by any instance) from now on until cancel is called; fn is not called
// after cancel returns, unless it is running at that moment. fn should be
// quick: results wait in a bounded buffer and are dropped (and logged) when
// it overflows. Errors are EBusy.
func (q *Queue) SubscribeResults(fn func(seckill.OrderResult)) (cancel func(), err error) {
	var stopped atomic.Bool
	sub, err := q.nc.Subscribe(q.results, func(m *nats.Msg) {
		var rs []seckill.OrderResult
		if err := json.Unmarshal(m.Data, &rs); err != nil {
			q.log.Error("malformed results message", "err", err)
			return
		}
		for _, r := range rs {
			if stopped.Load() {
				return
			}
			fn(r)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe results: %w", busy(err))
	}
	// Make sure the server knows the subscription before we report it live.
	if err := q.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe results: %w", busy(err))
	}
	return func() {
		if stopped.Swap(true) {
			return
		}
		if err := sub.Unsubscribe(); err != nil && q.nc.Status() == nats.CONNECTED {
			q.log.Warn("unsubscribe results", "err", err)
		}
	}, nil
}
