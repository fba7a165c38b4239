package inmem

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"seckill"
)

var (
	_ seckill.OrderQueue = (*Queue)(nil)
	_ seckill.BatchAcker = (*Queue)(nil)
	_ seckill.ResultBus  = (*Queue)(nil)
)

// DefaultAckWait is how long a fetched request of a Queue may stay unacked
// before it is delivered again, as mq's default.
const DefaultAckWait = 30 * time.Second

// Queue is an order queue and result bus in memory, with the delivery
// semantics of the JetStream queue (package mq): requests are delivered in
// publish order, each stays stored until acked, a nak delivers it again at
// once and one left unacked for the ack wait is delivered again on a later
// Fetch. It does not deduplicate. Results (and the dashboard's messages,
// PublishDash) go to every subscriber, in publish order, each on a
// goroutine of its own (so a slow subscriber never holds up the writer).
// Its content is lost with the process: it serves
// tests and demos. Every method is safe for concurrent use.
type Queue struct {
	now     func() time.Time
	ackWait time.Duration

	mu       sync.Mutex
	seq      uint64
	stored   map[uint64]*queued // published, not acked
	ready    []*queued          // deliverable, in publish order (naks and expiries go behind)
	inflight map[uint64]*queued // fetched, not acked or nacked
	wake     chan struct{}      // closed when a request becomes ready
	closed   bool

	smu      sync.Mutex
	subSeq   int
	subs     map[int]*subscriber[seckill.OrderResult]  // SubscribeResults
	dashSubs map[int]*subscriber[[]byte]               // SubscribeDash
	reqSubs  map[int]*subscriber[seckill.OrderRequest] // SubscribeRequests
}

func bySeq(a, b *queued) int { return cmp.Compare(a.seq, b.seq) }

type queued struct {
	seq      uint64
	req      seckill.OrderRequest
	gen      uint64    // deliveries so far: a stale delivery's Nak is ignored
	deadline time.Time // while in flight: when it is delivered again
}

// NewQueue returns an empty queue on the wall clock with DefaultAckWait.
func NewQueue() *Queue { return NewQueueClock(time.Now, DefaultAckWait) }

// NewQueueClock returns an empty queue whose ack wait (DefaultAckWait if
// not positive) is measured on now: tests move the clock to make an
// unacked request due again without waiting for it.
func NewQueueClock(now func() time.Time, ackWait time.Duration) *Queue {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	return &Queue{
		now: now, ackWait: ackWait,
		stored:   make(map[uint64]*queued),
		inflight: make(map[uint64]*queued),
		wake:     make(chan struct{}),
		subs:     make(map[int]*subscriber[seckill.OrderResult]),
		dashSubs: make(map[int]*subscriber[[]byte]),
		reqSubs:  make(map[int]*subscriber[seckill.OrderRequest]),
	}
}

func errClosed(op string) error { return seckill.Errorf(seckill.EBusy, "%s: queue closed", op) }

// signal wakes the fetchers waiting; q.mu is held.
func (q *Queue) signal() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// Publish stores r. EBusy once the queue is closed.
func (q *Queue) Publish(_ context.Context, r seckill.OrderRequest) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errClosed("publish")
	}
	q.seq++
	m := &queued{seq: q.seq, req: r}
	q.stored[m.seq] = m
	q.ready = append(q.ready, m)
	q.signal()
	q.mu.Unlock()
	_ = publish(q, "publish", q.reqSubs, []seckill.OrderRequest{r})
	return nil
}

// SubscribeRequests calls fn, on a goroutine of its own, for every request
// published from now on, in publish order, until cancel is called
// (seckill.RequestFeed). Nothing is ever missed: gap is not called.
func (q *Queue) SubscribeRequests(fn func(seckill.OrderRequest), gap func()) (func(), error) {
	return subscribe(q, q.reqSubs, fn), nil
}

// Fetch returns up to max deliveries in publish order, waiting at most
// wait (and not past ctx) for the first; it does not wait to fill the
// batch. An empty slice means none arrived in time. EBusy when ctx ends
// first or the queue is closed.
func (q *Queue) Fetch(ctx context.Context, max int, wait time.Duration) ([]seckill.Delivery, error) {
	if max <= 0 {
		return nil, nil
	}
	var timeout <-chan time.Time
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, errClosed("fetch")
		}
		q.expire()
		if len(q.ready) > 0 {
			ds := q.take(max)
			q.mu.Unlock()
			return ds, nil
		}
		wake := q.wake
		q.mu.Unlock()
		if timeout == nil {
			if wait <= 0 {
				return nil, nil
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-wake:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, seckill.Errorf(seckill.EBusy, "fetch: %v", ctx.Err())
		}
	}
}

// expire makes the requests in flight past their ack wait ready again;
// q.mu is held.
func (q *Queue) expire() {
	if len(q.inflight) == 0 {
		return
	}
	now := q.now()
	var due []*queued
	for _, m := range q.inflight {
		if !now.Before(m.deadline) {
			due = append(due, m)
		}
	}
	slices.SortFunc(due, bySeq)
	for _, m := range due {
		delete(q.inflight, m.seq)
		q.ready = append(q.ready, m)
	}
}

// take hands out up to max ready requests; q.mu is held.
func (q *Queue) take(max int) []seckill.Delivery {
	n := min(max, len(q.ready))
	deadline := q.now().Add(q.ackWait)
	ds := make([]seckill.Delivery, n)
	for i, m := range q.ready[:n] {
		m.gen++
		m.deadline = deadline
		q.inflight[m.seq] = m
		ds[i] = &queueDelivery{q: q, m: m, gen: m.gen}
	}
	q.ready = slices.Delete(q.ready, 0, n)
	return ds
}

type queueDelivery struct {
	q   *Queue
	m   *queued
	gen uint64
}

func (d *queueDelivery) Request() seckill.OrderRequest { return d.m.req }

// Ack removes the request from the queue; acking it again, or after it
// was delivered again, is a no-op. EBusy once the queue is closed.
func (d *queueDelivery) Ack(context.Context) error {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if d.q.closed {
		return errClosed("ack")
	}
	d.q.ack(d.m)
	return nil
}

// ack forgets m wherever it is; q.mu is held.
func (q *Queue) ack(m *queued) {
	if _, ok := q.stored[m.seq]; !ok {
		return
	}
	delete(q.stored, m.seq)
	if _, ok := q.inflight[m.seq]; ok {
		delete(q.inflight, m.seq)
		return
	}
	// Delivered again and waiting: an ack of an earlier delivery still
	// settles it, as on JetStream.
	q.ready = slices.DeleteFunc(q.ready, func(r *queued) bool { return r == m })
}

// Nak makes the request ready again at once, unless it was acked, nacked
// or delivered again since.
func (d *queueDelivery) Nak(context.Context) error {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if d.q.closed {
		return errClosed("nak")
	}
	if cur, ok := d.q.inflight[d.m.seq]; !ok || cur.gen != d.gen {
		return nil
	}
	delete(d.q.inflight, d.m.seq)
	d.q.ready = append(d.q.ready, d.m)
	d.q.signal()
	return nil
}

// AckAll acks every delivery of ds, all fetched from q.
func (q *Queue) AckAll(_ context.Context, ds []seckill.Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errClosed("ack all")
	}
	for i, sd := range ds {
		d, ok := sd.(*queueDelivery)
		if !ok || d.q != q {
			return fmt.Errorf("ack all: delivery %d is not from this queue", i)
		}
		q.ack(d.m)
	}
	return nil
}

// Pending counts the requests of a sale (every sale for saleID 0) stored
// and not acked, fetched or not.
func (q *Queue) Pending(_ context.Context, saleID int64) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, errClosed("pending")
	}
	var n int64
	for _, m := range q.stored {
		if saleID == 0 || m.req.SaleID == saleID {
			n++
		}
	}
	return n, nil
}

// PendingRequests lists the requests of a sale (every sale for saleID 0)
// stored and not acked, in publish order.
func (q *Queue) PendingRequests(_ context.Context, saleID int64) ([]seckill.OrderRequest, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, errClosed("pending requests")
	}
	ms := make([]*queued, 0, len(q.stored))
	for _, m := range q.stored {
		if saleID == 0 || m.req.SaleID == saleID {
			ms = append(ms, m)
		}
	}
	q.mu.Unlock()
	slices.SortFunc(ms, bySeq)
	out := make([]seckill.OrderRequest, len(ms))
	for i, m := range ms {
		out[i] = m.req
	}
	return out, nil
}

// Close returns the requests in flight (they are delivered again to
// whoever fetches next, as after a restart the stored requests would be),
// stops every subscriber and fails later calls with EBusy, except Reopen.
// Safe to call twice.
func (q *Queue) Close() error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		q.expireAll()
		q.signal()
	}
	q.mu.Unlock()
	q.smu.Lock()
	var stops []func()
	for _, s := range q.subs {
		stops = append(stops, s.cancel)
	}
	for _, s := range q.dashSubs {
		stops = append(stops, s.cancel)
	}
	for _, s := range q.reqSubs {
		stops = append(stops, s.cancel)
	}
	clear(q.subs)
	clear(q.dashSubs)
	clear(q.reqSubs)
	q.smu.Unlock()
	for _, stop := range stops {
		stop()
	}
	return nil
}

// Reopen opens a closed queue again on what it stored, as a process that
// restarted on the same storage would find it: every request not acked is
// ready, in publish order. A no-op on an open queue.
func (q *Queue) Reopen() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = false
}

// expireAll makes every request in flight ready again, in publish order;
// q.mu is held.
func (q *Queue) expireAll() {
	for _, m := range q.inflight {
		m.gen++ // deliveries made so far can no longer nak it
		q.ready = append(q.ready, m)
	}
	clear(q.inflight)
	slices.SortFunc(q.ready, bySeq)
}

// PublishResults hands rs to every subscriber. EBusy once the queue is
// closed.
func (q *Queue) PublishResults(_ context.Context, rs []seckill.OrderResult) error {
	return publish(q, "publish results", q.subs, rs)
}

// SubscribeResults calls fn, on a goroutine of its own, for every result
// published from now on, in publish order, until cancel is called (safe
// to call twice; a call of fn under way may still finish).
func (q *Queue) SubscribeResults(fn func(seckill.OrderResult)) (func(), error) {
	return subscribe(q, q.subs, fn), nil
}

// PublishDash hands a copy of data, one instance's dashboard counts, to
// every SubscribeDash (the publisher's own included), as mq's does.
// EBusy once the queue is closed.
func (q *Queue) PublishDash(_ context.Context, data []byte) error {
	return publish(q, "publish dash", q.dashSubs, [][]byte{slices.Clone(data)})
}

// SubscribeDash calls fn, on a goroutine of its own, with every message
// PublishDash publishes from now on, in publish order (one order for all
// subscribers, as one NATS server gives), until cancel is called.
func (q *Queue) SubscribeDash(fn func(data []byte)) (func(), error) {
	return subscribe(q, q.dashSubs, fn), nil
}

// publish hands items to every subscriber of subs.
func publish[T any](q *Queue, op string, subs map[int]*subscriber[T], items []T) error {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return errClosed(op)
	}
	if len(items) == 0 {
		return nil
	}
	q.smu.Lock()
	defer q.smu.Unlock()
	for _, s := range subs {
		s.push(items)
	}
	return nil
}

// subscribe adds a subscriber calling fn to subs and returns its cancel.
func subscribe[T any](q *Queue, subs map[int]*subscriber[T], fn func(T)) func() {
	s := &subscriber[T]{fn: fn, more: make(chan struct{}, 1), stop: make(chan struct{})}
	q.smu.Lock()
	q.subSeq++
	id := q.subSeq
	subs[id] = s
	q.smu.Unlock()
	go s.run()
	return func() {
		q.smu.Lock()
		delete(subs, id)
		q.smu.Unlock()
		s.cancel()
	}
}

// subscriber is one subscription: an unbounded buffer drained by its
// goroutine, so the publisher never waits for fn.
type subscriber[T any] struct {
	fn   func(T)
	more chan struct{} // a token when buf has items
	stop chan struct{}

	mu        sync.Mutex
	buf       []T
	cancelled bool
	once      sync.Once
}

func (s *subscriber[T]) push(rs []T) {
	s.mu.Lock()
	s.buf = append(s.buf, rs...)
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
}

func (s *subscriber[T]) cancel() {
	s.once.Do(func() {
		s.mu.Lock()
		s.cancelled = true
		s.buf = nil
		s.mu.Unlock()
		close(s.stop)
	})
}

func (s *subscriber[T]) run() {
	for {
		select {
		case <-s.stop:
			return
		case <-s.more:
		}
		for {
			s.mu.Lock()
			if s.cancelled || len(s.buf) == 0 {
				s.mu.Unlock()
				break
			}
			r := s.buf[0]
			s.buf = s.buf[1:]
			s.mu.Unlock()
			s.fn(r)
		}
	}
}
