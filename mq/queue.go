package mq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"seckill"
)

// Fetch returns up to max deliveries, one per request. It waits at most
// wait (and not past ctx) for the first one, then adds whatever else is
// available at once, without waiting to fill the batch. An empty slice
// means none arrived in time. Each delivery must be acked once its request
// is settled, or nacked; one left alone is delivered again after AckWait.
// Messages that do not decode are logged and terminated (never delivered
// again). Errors are EBusy.
//
// A message holds several requests; those of a message beyond max are kept
// for the next Fetch. The server removes a message once every request in it
// is acked; a nak of any of them delivers all of them again.
func (q *Queue) Fetch(ctx context.Context, max int, wait time.Duration) ([]seckill.Delivery, error) {
	if max <= 0 {
		return nil, nil
	}
	out := q.takeSpill(make([]seckill.Delivery, 0, min(max, 1024)), max)
	if len(out) == max {
		return out, nil
	}
	// One round trip when messages are waiting, which is the case under load.
	out, err := q.fetchNoWait(out, max)
	if err != nil || len(out) > 0 {
		return out, err
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	if wait <= 0 {
		return out, nil
	}
	// Nothing yet: a pull request for one message that the server expires
	// after wait (the server, not a client timer, ends it, so no message is
	// lost in flight), then whatever else came along.
	batch, err := q.cons.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", busy(err))
	}
	select {
	case m, ok := <-batch.Messages():
		if ok {
			out = q.add(out, m, max)
		} else if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("fetch: %w", busy(err))
		}
	case <-ctx.Done():
		// The pull request stays open on the server; hand back whatever it
		// still delivers.
		go func() {
			for m := range batch.Messages() {
				m.Nak()
			}
		}()
		return nil, fmt.Errorf("fetch: %w", busy(ctx.Err()))
	}
	if len(out) == 0 || len(out) >= max {
		return out, nil
	}
	return q.fetchNoWait(out, max)
}

// maxFetchMsgs bounds the messages asked for in one pull, so that a wrong
// guess of their size cannot take much more than max requests.
const maxFetchMsgs = 64

// fetchNoWait appends to out the requests available now, up to max in all.
// It asks for as many messages as it expects to hold the requests missing,
// from the sizes of the messages seen lately, and asks again while the
// server had that many.
func (q *Queue) fetchNoWait(out []seckill.Delivery, limit int) ([]seckill.Delivery, error) {
	for round := 0; round < 8 && len(out) < limit; round++ {
		q.mu.Lock()
		avg := q.avgReqs
		q.mu.Unlock()
		want := min(int(float64(limit-len(out))/avg+0.999), maxFetchMsgs)
		batch, err := q.cons.FetchNoWait(max(want, 1))
		if err != nil {
			return out, fmt.Errorf("fetch: %w", busy(err))
		}
		got := 0
		for m := range batch.Messages() {
			got++
			out = q.add(out, m, limit)
		}
		if err := batch.Error(); err != nil && len(out) == 0 {
			return out, fmt.Errorf("fetch: %w", busy(err))
		}
		if got < want {
			break // the server had no more
		}
	}
	return out, nil
}

// add decodes m and appends a tracked delivery per request to out, keeping
// those beyond max for the next Fetch, or terminates m when it does not
// decode.
func (q *Queue) add(out []seckill.Delivery, m jetstream.Msg, max int) []seckill.Delivery {
	rs, err := decodeMessage(m.Data())
	if err != nil {
		q.log.Error("malformed order message terminated", "subject", m.Subject(), "err", err)
		if err := m.Term(); err != nil {
			q.log.Error("term malformed message", "err", err)
		}
		return out
	}
	msg := &message{msg: m, left: len(rs)}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.avgReqs = 0.8*q.avgReqs + 0.2*float64(len(rs))
	if q.outstanding != nil {
		q.outstanding[msg] = struct{}{}
	}
	for _, r := range rs {
		d := &delivery{q: q, m: msg, req: r}
		if len(out) < max {
			out = append(out, d)
		} else {
			q.spill = append(q.spill, d)
		}
	}
	return out
}

// takeSpill moves up to max deliveries kept by an earlier Fetch to out.
func (q *Queue) takeSpill(out []seckill.Delivery, max int) []seckill.Delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max, len(q.spill))
	for _, d := range q.spill[:n] {
		out = append(out, d)
	}
	q.spill = q.spill[n:]
	if len(q.spill) == 0 {
		q.spill = nil
	}
	return out
}

// message is one fetched message and how far its requests are settled.
// Its fields are guarded by Queue.mu.
type message struct {
	msg  jetstream.Msg
	left int  // requests not yet acked
	done bool // acked or nacked on the server
}

// delivery is one request of a fetched message.
type delivery struct {
	q     *Queue
	m     *message
	req   seckill.OrderRequest
	acked bool // guarded by Queue.mu
}

func (d *delivery) Request() seckill.OrderRequest { return d.req }

// Ack settles the request. When it is the last of its message to be acked,
// the message is removed from the queue and Ack returns once the server has
// done so (Pending no longer counts its requests); until then Ack only
// notes it. An error (EBusy) means the ack may be lost and the message
// delivered again.
func (d *delivery) Ack(ctx context.Context) error {
	if !d.settle() {
		return nil
	}
	if err := d.m.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack %d:%d: %w", d.req.SaleID, d.req.UserID, busy(err))
	}
	return nil
}

// settle marks d acked and reports whether that completed its message,
// which the caller must then ack on the server.
func (d *delivery) settle() bool {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if d.acked || d.m.done {
		return false
	}
	d.acked = true
	d.m.left--
	if d.m.left > 0 {
		return false
	}
	d.m.done = true
	delete(d.q.outstanding, d.m)
	return true
}

// Nak asks for the request's message, with every request in it, to be
// delivered again at once (those already written are no-ops for the
// writer). It does not wait for the server; errors are EBusy.
func (d *delivery) Nak(ctx context.Context) error {
	d.q.mu.Lock()
	if d.m.done {
		d.q.mu.Unlock()
		return nil
	}
	d.m.done = true
	delete(d.q.outstanding, d.m)
	d.q.mu.Unlock()
	if err := d.m.msg.Nak(); err != nil {
		return fmt.Errorf("nak %d:%d: %w", d.req.SaleID, d.req.UserID, busy(err))
	}
	return nil
}

// Pending counts the requests of a sale (all sales for saleID 0) that are
// stored and not acked, fetched or not. A read: it changes nothing (Repair
// is where the stream is mended after a server crash). Errors are EBusy.
func (q *Queue) Pending(ctx context.Context, saleID int64) (int64, error) {
	return q.pending(ctx, saleID)
}

func (q *Queue) pending(ctx context.Context, saleID int64) (int64, error) {
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(q.subjPfx+">"))
	if err != nil {
		return 0, fmt.Errorf("pending %d: %w", saleID, busy(err))
	}
	var n int64
	for subj, msgs := range info.State.Subjects {
		sale, reqs, ok := q.parseSubject(subj)
		if ok && (saleID == 0 || sale == saleID) {
			n += int64(msgs) * reqs
		}
	}
	return n, nil
}

// parseSubject reads the sale and the number of requests per message from
// a subject of the stream, <prefix>.orders.<sale>.<n> (batchSubject). Other
// subjects are not counted, as PendingRequests does not read them either.
func (q *Queue) parseSubject(subj string) (sale, n int64, ok bool) {
	rest, ok := strings.CutPrefix(subj, q.subjPfx)
	if !ok {
		return 0, 0, false
	}
	saleTok, nTok, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, 0, false
	}
	sale, err := strconv.ParseInt(saleTok, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if n, err = strconv.ParseInt(nTok, 10, 64); err != nil || n < 1 {
		return 0, 0, false
	}
	return sale, n, true
}

// PendingRequests returns the requests of a sale (all sales for saleID 0)
// that are stored and not acked, in publish order. It reads the stream
// directly and leaves the writer consumer alone. It costs one round trip per
// message (a message holds the requests published together). Undecodable
// messages are skipped. Errors are EBusy.
func (q *Queue) PendingRequests(ctx context.Context, saleID int64) ([]seckill.OrderRequest, error) {
	var out []seckill.OrderRequest
	for seq := uint64(1); ; {
		// The whole stream, filtered here rather than by the server: a file
		// store recovered after a crash (nats-server 2.9) has answered a
		// look-up by a narrower subject with "not found" for a message it
		// held, and the gate rebuild must see every queued request. ">"
		// makes the store walk by sequence.
		m, err := q.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("pending requests %d: %w", saleID, busy(err))
		}
		seq = m.Sequence + 1
		if sale, _, ok := q.parseSubject(m.Subject); !ok || saleID != 0 && sale != saleID {
			continue
		}
		rs, err := decodeMessage(m.Data)
		if err != nil {
			q.log.Error("malformed order message skipped", "seq", m.Sequence, "err", err)
			continue
		}
		out = append(out, rs...)
	}
}

// AckAll acks every delivery in ds (all fetched from q) and returns once the
// server has processed the messages this completes, like calling Ack on
// each, in one round trip instead of one per message: the acks go out
// without waiting, then the last one waits for the server, which handles
// one connection's acks in order. An error (EBusy) means some acks may be
// lost and their messages delivered again.
func (q *Queue) AckAll(ctx context.Context, ds []seckill.Delivery) error {
	var done []*delivery // one per message completed
	for i, sd := range ds {
		d, ok := sd.(*delivery)
		if !ok || d.q != q {
			return fmt.Errorf("ack all: delivery %d is not from this queue", i)
		}
		if d.settle() {
			done = append(done, d)
		}
	}
	for i, d := range done {
		if i == len(done)-1 {
			if err := d.m.msg.DoubleAck(ctx); err != nil {
				return fmt.Errorf("ack %d:%d: %w", d.req.SaleID, d.req.UserID, busy(err))
			}
			break
		}
		if err := d.m.msg.Ack(); err != nil {
			return fmt.Errorf("ack %d:%d: %w", d.req.SaleID, d.req.UserID, busy(err))
		}
	}
	return nil
}
