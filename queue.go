package seckill

import (
	"context"
	"errors"
	"time"
)

// Delivery is one message fetched from the order queue. It must be acked once
// its request is settled in SQL, or nacked to be redelivered.
type Delivery interface {
	Request() OrderRequest
	Ack(ctx context.Context) error
	Nak(ctx context.Context) error
}

// ErrMaybeStored is wrapped by an OrderQueue.Publish error when the request
// was sent but not acknowledged: it may be stored and become an order.
var ErrMaybeStored = errors.New("the request may have been stored")

// OrderQueue is the durable queue between the gate and the order writer.
type OrderQueue interface {
	// Publish stores r durably and returns only once the queue acknowledged
	// it. EBusy when the queue is unavailable: r is not stored, unless the
	// error wraps ErrMaybeStored (r was sent but not acknowledged in time). The queue does not deduplicate: the stock gate admits a
	// (sale, user) once, and a pair stored twice (a publish retried after a
	// timeout) is settled once by the writer, through SQL's unique key. A
	// queue that dropped the second copy would turn a stored request whose
	// publish failed into a lost one.
	Publish(ctx context.Context, r OrderRequest) error
	// Fetch returns up to max deliveries, waiting at most wait for the first.
	// An empty slice means none arrived in time.
	Fetch(ctx context.Context, max int, wait time.Duration) ([]Delivery, error)
	// Pending counts requests published and not yet acked, for one sale, or
	// for all sales when saleID is 0.
	Pending(ctx context.Context, saleID int64) (int64, error)
	// PendingRequests lists the requests of a sale not yet acked (for
	// rebuilding the gate).
	PendingRequests(ctx context.Context, saleID int64) ([]OrderRequest, error)
}

// QueueRepairer is implemented by queues whose server can come back from a
// crash in a state where some stored requests would never be delivered
// (acked-message removals or the consumer's position lost or ahead). Repair
// makes every stored request deliverable again, never dropping one; it is
// cheap on a healthy queue and safe to run on several instances at once.
// The engine runs it before rebuilding the gate and in every reconciler
// round.
type QueueRepairer interface {
	Repair(ctx context.Context) error
}

// RequestFeed is implemented by queues whose requests every instance can
// watch as they are published, by any instance. SubscribeRequests calls fn
// for each request published from now on until cancel is called, at most
// once and not necessarily before its publish is acknowledged. A request fn
// sees may not have been stored (its publish failed, and it was released):
// it tells that a buyer very likely holds a unit, not that they do. fn
// should be quick. gap is called after requests or results (ResultBus) may
// have been missed: the connection to the server came back, or a
// subscriber fell behind and messages were dropped.
type RequestFeed interface {
	SubscribeRequests(fn func(OrderRequest), gap func()) (cancel func(), err error)
}

// BatchAcker is implemented by queues that can ack a whole batch in one
// round trip; the order writer uses it when present. It returns once every
// ack is settled, like calling Ack on each delivery.
type BatchAcker interface {
	AckAll(ctx context.Context, ds []Delivery) error
}
