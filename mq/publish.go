package mq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"seckill"
)

// Publishing commits groups: at most maxInFlight messages per sale are on
// their way to the server at any time, and the requests that arrive
// meanwhile wait and go together in the next one (up to Config.MaxBatch requests, or
// maxBatchBytes). One buyer alone pays one round trip, as before; a crowd
// shares them, and the server stores, delivers and removes one message per
// group instead of one per request. The order of a sale's requests in the
// stream is the order Publish was called in.

// maxBatchBytes bounds the encoded size of one message, well below the
// stream's MaxMsgSize (64 KiB).
const maxBatchBytes = 48 << 10

// batchPublishTimeout bounds the publish of one message when one of its
// callers set no deadline. The message does not use any caller's context
// (one buyer giving up must not fail the others); it gives up at the latest
// deadline of the callers still waiting for it when it is sent: none of
// them waits longer, and a caller that timed out releases its reservation,
// so its request should not be stored long after. Callers that left before
// it was sent are not in it and do not count (the first caller of a group
// may have left with the earliest deadline, and the rest must not inherit
// it).
const batchPublishTimeout = 10 * time.Second

// pubReq is one request waiting in a batch.
type pubReq struct {
	r     seckill.OrderRequest
	until time.Time // its caller's deadline; zero if none
	gone  bool      // its caller gave up, or its deadline passed, before the batch was collected: left out
}

// pubBatch is the requests of one sale that go to the server in one
// message.
type pubBatch struct {
	sale  int64
	reqs  []*pubReq
	bytes int
	sent  bool // taken for its slot: no request joins it now
	// collected: its requests were read for the message (send); from then
	// on a request not gone is in the message, and one that leaves may
	// have been stored.
	collected bool
	done      chan struct{} // closed once published (or failed): err is set
	err       error
}

// maxInFlight is how many messages of one sale may be on their way at once:
// enough that a purchase rarely waits for a whole round trip before its own
// message leaves, few enough that a crowd's purchases still share messages.
const maxInFlight = 4

// saleQueue is the publishing state of one sale: how many messages are on
// their way, and the batches formed while all slots were taken, oldest
// first. Batches wait only while inflight is at the limit.
type saleQueue struct {
	inflight int
	waiting  []*pubBatch
}

// Publish stores r in a message on its sale's subject and returns once the
// server has acknowledged that message: written to the stream's file (and
// replicated, on a cluster), so it survives a crash of this process or the
// server. Concurrent publishes of one sale share messages (see above).
// It fails with EInvalid when r has no sale or user, and EBusy on any queue
// failure, including ctx expiring first. Such an error wraps
// seckill.ErrMaybeStored when r's message was sent and not acknowledged in
// time: the server may have stored it.
//
// The queue does not deduplicate: a (sale, user) published twice (a retry
// after a timeout) is delivered twice, and the writer settles it once (the
// orders' unique (sale, user) key). The stock gate keeps a buyer from being
// admitted twice in the first place.
func (q *Queue) Publish(ctx context.Context, r seckill.OrderRequest) error {
	if r.SaleID <= 0 || r.UserID <= 0 {
		return seckill.Errorf(seckill.EInvalid, "order request needs a sale and a user")
	}
	pr := &pubReq{r: r}
	pr.until, _ = ctx.Deadline()
	size := len(r.Ticket) + 48 // generous for the varints and the length
	q.pmu.Lock()
	if q.pclosed {
		q.pmu.Unlock()
		return fmt.Errorf("publish %d:%d: %w", r.SaleID, r.UserID, busy(errClosed))
	}
	s := q.psales[r.SaleID]
	if s == nil {
		s = &saleQueue{}
		q.psales[r.SaleID] = s
	}
	var b *pubBatch
	if n := len(s.waiting); n > 0 && len(s.waiting[n-1].reqs) < q.cfg.MaxBatch && s.waiting[n-1].bytes+size <= maxBatchBytes {
		b = s.waiting[n-1]
	} else {
		b = &pubBatch{sale: r.SaleID, done: make(chan struct{})}
		s.waiting = append(s.waiting, b)
	}
	b.reqs = append(b.reqs, pr)
	b.bytes += size
	var lead *pubBatch
	if s.inflight < q.maxInFlight {
		// A free slot, so nothing else is waiting: go now.
		s.inflight++
		lead = q.takeNext(s)
	}
	q.pmu.Unlock()
	if lead != nil {
		q.sendFrom(lead)
	}

	select {
	case <-b.done:
	case <-ctx.Done():
	}
	q.pmu.Lock()
	if !b.collected {
		pr.gone = true // it leaves before the message is made: never sent
	}
	gone := pr.gone
	q.pmu.Unlock()
	if gone {
		// Left out of the message (here, or by send because its deadline
		// had passed): surely not stored.
		err := ctx.Err()
		if err == nil {
			err = context.DeadlineExceeded
		}
		return fmt.Errorf("publish %d:%d: %w", r.SaleID, r.UserID, busy(err))
	}
	select {
	case <-b.done:
		if b.err != nil {
			return fmt.Errorf("publish %d:%d: %w", r.SaleID, r.UserID, b.err)
		}
		return nil
	default:
	}
	// In the message, whose acknowledgement has not come.
	return fmt.Errorf("publish %d:%d: %w", r.SaleID, r.UserID, busy(fmt.Errorf("%w: %w", seckill.ErrMaybeStored, ctx.Err())))
}

// takeNext removes the oldest waiting batch of s and marks it sent; q.pmu
// must be held and s.waiting not empty.
func (q *Queue) takeNext(s *saleQueue) *pubBatch {
	b := s.waiting[0]
	s.waiting[0] = nil
	s.waiting = s.waiting[1:]
	b.sent = true
	return b
}

// sendFrom publishes b and then, in another goroutine, the batches of its
// sale that formed meanwhile, one after the other, until none is left.
func (q *Queue) sendFrom(b *pubBatch) {
	q.send(b)
	if next := q.finished(b.sale); next != nil {
		go func() {
			for b := next; b != nil; b = q.finished(b.sale) {
				q.send(b)
			}
		}()
	}
}

// finished is called after a batch of sale was sent: it returns the next
// one to send in the slot that freed, or nil, forgetting an idle sale.
func (q *Queue) finished(sale int64) *pubBatch {
	q.pmu.Lock()
	defer q.pmu.Unlock()
	s := q.psales[sale]
	if len(s.waiting) > 0 {
		return q.takeNext(s)
	}
	s.inflight--
	if s.inflight == 0 {
		delete(q.psales, sale)
	}
	return nil
}

// send publishes the requests of b still wanted as one message and tells
// their callers.
func (q *Queue) send(b *pubBatch) {
	defer close(b.done)
	rs := make([]seckill.OrderRequest, 0, len(b.reqs))
	var until time.Time // the latest deadline of the callers still here
	q.pmu.Lock()
	now := time.Now()
	for _, pr := range b.reqs {
		if !pr.gone && !pr.until.IsZero() && !now.Before(pr.until) {
			pr.gone = true // its deadline passed while the message waited for a slot
		}
		if pr.gone {
			continue
		}
		rs = append(rs, pr.r)
		u := pr.until
		if u.IsZero() {
			u = now.Add(batchPublishTimeout)
		}
		if u.After(until) {
			until = u
		}
	}
	b.collected = true
	q.pmu.Unlock()
	if len(rs) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), until)
	defer cancel()
	_, err := q.js.Publish(ctx, q.batchSubject(b.sale, len(rs)), appendBatch(nil, rs))
	q.pubs.record(err, time.Now())
	if err != nil {
		if !notStored(err, q.cfg.Replicas) {
			// Sent, or maybe sent, and no acknowledgement came: the
			// server may have it.
			err = fmt.Errorf("%w: %w", seckill.ErrMaybeStored, err)
		}
		b.err = busy(err)
	}
}

// pubHealth remembers how the latest publishes went, for Ping: a queue
// whose server answers (connected, the stream's info read) may still fail
// every publish. An embedded server whose store could not open a file
// (the process out of descriptors, a full disk) keeps failing its writes
// until a restart; an instance in that state must not be called ready.
type pubHealth struct {
	sticky   bool // failures count until a success, however old (embedded)
	mu       sync.Mutex
	inRow    int       // failures since the last success
	lastFail time.Time // of the latest failure
	err      error     // the latest failure
}

// pubFailuresNotReady failures in a row, the latest within
// pubFailingFor, make the queue not ready. Once no publish has failed for
// that long, an external server's queue is called ready again, so that
// traffic can find out; a reconnect clears them at once. An embedded
// server's stay until a publish succeeds: its store does not heal with
// time (found by review: ready again 10 s after each burst of 503s), and
// its buyers' next purchase tells.
const (
	pubFailuresNotReady = 3
	pubFailingFor       = 10 * time.Second
)

func (h *pubHealth) record(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.inRow, h.err = 0, nil
		return
	}
	h.inRow++
	h.lastFail, h.err = now, err
}

// failing returns an error if publishes are failing now.
func (h *pubHealth) failing(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inRow < pubFailuresNotReady || !h.sticky && now.Sub(h.lastFail) > pubFailingFor {
		return nil
	}
	return fmt.Errorf("the last %d publishes to the order queue failed, the latest %v ago: %v",
		h.inRow, now.Sub(h.lastFail).Round(time.Millisecond), h.err)
}

// notStored reports whether a failed publish surely left nothing in the
// stream: the client refused to send it (no connection to send on, a
// reconnect without a buffer, a bad subject or size), no stream answered
// its subject, or the stream answered with an error that comes before
// anything is stored: no such stream, a message too large, no resources, a
// sealed stream, and, on a stream of one replica, a failed store (a full
// stream). Any other failure may come after the message left, or after it
// was stored: a timeout, the connection closed while the acknowledgement
// was on its way, an acknowledgement that does not parse, and on a
// replicated stream an error the leader answers for a message its
// followers store anyway (nats-server answers a sequence mismatch at apply
// time, then stores it). Such a message's reservation must wait for the
// writer or the reconciler rather than be released at once, or a request
// stored after all lands with no reservation and no fence, its unit sold
// again (checkout.Admit).
func notStored(err error, replicas int) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamNotFound, errCodeMessageTooLarge, errCodeInsufficientResources, errCodeSealed:
			return true
		case errCodeStoreFailed:
			return replicas <= 1
		}
		return false
	}
	for _, e := range []error{jetstream.ErrNoStreamResponse, nats.ErrNoResponders, nats.ErrReconnectBufExceeded,
		nats.ErrInvalidConnection, nats.ErrConnectionDraining, nats.ErrMaxPayload, nats.ErrBadSubject} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// JetStream's error codes (nats-server's errors.json) that nats.go has no
// name for.
const (
	errCodeMessageTooLarge       jetstream.ErrorCode = 10054 // JSStreamMessageExceedsMaximumErr
	errCodeInsufficientResources jetstream.ErrorCode = 10023 // JSInsufficientResourcesErr
	errCodeSealed                jetstream.ErrorCode = 10109 // JSStreamSealedErr
	errCodeStoreFailed           jetstream.ErrorCode = 10077 // JSStreamStoreFailedF: a limit of a discard-new stream, among others
)

// batchSubject is the subject of a message of n requests of a sale:
// <prefix>.orders.<sale>.<n>. The count in the subject lets Pending add up
// requests from the stream's per-subject message counts.
func (q *Queue) batchSubject(sale int64, n int) string {
	b := make([]byte, 0, len(q.subjPfx)+24)
	b = append(b, q.subjPfx...)
	b = strconv.AppendInt(b, sale, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(n), 10)
	return string(b)
}
