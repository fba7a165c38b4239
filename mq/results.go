package mq

import (
	"context"
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
		if err := q.nc.Publish(q.results, appendResults(nil, rs[:n])); err != nil {
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
	return q.subscribe(q.results, "results", func(data []byte, stopped *atomic.Bool) {
		rs, err := decodeResults(data)
		if err != nil {
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
}

// SubscribeRequests calls fn, from one goroutine, for every order request
// published to the queue (by any instance) from now on until cancel is
// called: a core NATS subscription to the stream's subjects, which the
// server feeds as it takes each message, stored or not (seckill.RequestFeed).
// fn is called as SubscribeResults calls it; a feed that falls behind drops
// messages (logged), as results do. gap is called after the connection
// came back and after any subscription of this queue dropped messages.
// Errors are EBusy.
func (q *Queue) SubscribeRequests(fn func(seckill.OrderRequest), gap func()) (cancel func(), err error) {
	q.gmu.Lock()
	q.gapSeq++
	id := q.gapSeq
	if q.gaps == nil {
		q.gaps = map[int]func(){}
	}
	q.gaps[id] = gap
	q.gmu.Unlock()
	unsub, err := q.subscribe(q.subjPfx+">", "requests", func(data []byte, stopped *atomic.Bool) {
		rs, err := decodeMessage(data)
		if err != nil {
			return // the writer terminates and logs a malformed message
		}
		for _, r := range rs {
			if stopped.Load() {
				return
			}
			fn(r)
		}
	})
	forget := func() {
		q.gmu.Lock()
		delete(q.gaps, id)
		q.gmu.Unlock()
	}
	if err != nil {
		forget()
		return nil, err
	}
	return func() { forget(); unsub() }, nil
}

// noteGap calls every SubscribeRequests' gap callback.
func (q *Queue) noteGap() {
	q.gmu.Lock()
	fns := make([]func(), 0, len(q.gaps))
	for _, fn := range q.gaps {
		fns = append(fns, fn)
	}
	q.gmu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// PublishDash sends data, one instance's dashboard counts, to every
// SubscribeDash of every instance (the sender's own included), as a core
// NATS message on <prefix>.dash: at most once, not stored. data must stay
// under the server's payload limit (1 MiB by default). Errors are EBusy.
func (q *Queue) PublishDash(ctx context.Context, data []byte) error {
	if err := q.nc.Publish(q.dash, data); err != nil {
		return fmt.Errorf("publish dash: %w", busy(err))
	}
	return ctx.Err()
}

// SubscribeDash calls fn, from one goroutine, with every message published
// by PublishDash (by any instance, this one included) from now on until
// cancel is called, as SubscribeResults does. fn must not keep data.
// Errors are EBusy.
func (q *Queue) SubscribeDash(fn func(data []byte)) (cancel func(), err error) {
	return q.subscribe(q.dash, "dash", func(data []byte, stopped *atomic.Bool) {
		if !stopped.Load() {
			fn(data)
		}
	})
}

// subscribe calls handle for every core NATS message on subject until
// cancel; handle reads stopped to stop early. what names the subscription
// in errors and logs.
func (q *Queue) subscribe(subject, what string, handle func(data []byte, stopped *atomic.Bool)) (cancel func(), err error) {
	var stopped atomic.Bool
	sub, err := q.nc.Subscribe(subject, func(m *nats.Msg) { handle(m.Data, &stopped) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", what, busy(err))
	}
	// Make sure the server knows the subscription before we report it live.
	if err := q.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", what, busy(err))
	}
	return func() {
		if stopped.Swap(true) {
			return
		}
		if err := sub.Unsubscribe(); err != nil && q.nc.Status() == nats.CONNECTED {
			q.log.Warn("unsubscribe "+what, "err", err)
		}
	}, nil
}
