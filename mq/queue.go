package mq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"seckill"
)

// Publish stores r on its sale's subject and returns once the server has
// acknowledged it: written to the stream's file (and replicated, on a
// cluster), so it survives a crash of this process or the server. A second
// request of the same (sale, user) within the dedupe window is not stored
// again: the first one stays and Publish answers EDuplicate. It fails with
// EInvalid when r has no sale or user, and EBusy on any queue failure,
// including ctx expiring first — in that case r may or may not have been
// stored.
func (q *Queue) Publish(ctx context.Context, r seckill.OrderRequest) error {
	if r.SaleID <= 0 || r.UserID <= 0 {
		return seckill.Errorf(seckill.EInvalid, "order request needs a sale and a user")
	}
	var dbuf, ibuf [48]byte
	data := appendRequest(dbuf[:0], r)
	id := strconv.AppendInt(ibuf[:0], r.SaleID, 10)
	id = append(id, ':')
	id = strconv.AppendInt(id, r.UserID, 10)
	ack, err := q.js.Publish(ctx, q.Subject(r.SaleID), data, jetstream.WithMsgID(string(id)))
	if err != nil {
		return fmt.Errorf("publish %d:%d: %w", r.SaleID, r.UserID, busy(err))
	}
	if ack.Duplicate {
		return seckill.Errorf(seckill.EDuplicate, "a request of user %d in sale %d is already queued", r.UserID, r.SaleID)
	}
	return nil
}

// Fetch returns up to max deliveries. It waits at most wait (and not past
// ctx) for the first one, then adds whatever else is available at once,
// without waiting to fill the batch. An empty slice means none arrived in
// time. Each delivery must be acked once its request is settled, or nacked;
// one left alone is delivered again after AckWait. Messages that do not
// decode are logged and terminated (never delivered again). Errors are EBusy.
func (q *Queue) Fetch(ctx context.Context, max int, wait time.Duration) ([]seckill.Delivery, error) {
	if max <= 0 {
		return nil, nil
	}
	out := make([]seckill.Delivery, 0, min(max, 1024))
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
			out = q.add(out, m)
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
	if len(out) == 0 || max == 1 {
		return out, nil
	}
	return q.fetchNoWait(out, max)
}

// fetchNoWait appends to out the messages available now, up to max in all.
func (q *Queue) fetchNoWait(out []seckill.Delivery, max int) ([]seckill.Delivery, error) {
	batch, err := q.cons.FetchNoWait(max - len(out))
	if err != nil {
		return out, fmt.Errorf("fetch: %w", busy(err))
	}
	for m := range batch.Messages() {
		out = q.add(out, m)
	}
	if err := batch.Error(); err != nil && len(out) == 0 {
		return out, fmt.Errorf("fetch: %w", busy(err))
	}
	return out, nil
}

// add decodes m and appends it to out as a tracked delivery, or terminates
// it when it does not decode.
func (q *Queue) add(out []seckill.Delivery, m jetstream.Msg) []seckill.Delivery {
	r, err := decodeRequest(m.Data())
	if err != nil {
		q.log.Error("malformed order message terminated", "subject", m.Subject(), "err", err)
		if err := m.Term(); err != nil {
			q.log.Error("term malformed message", "err", err)
		}
		return out
	}
	d := &delivery{q: q, msg: m, req: r}
	q.mu.Lock()
	if q.outstanding != nil {
		q.outstanding[d] = struct{}{}
	}
	q.mu.Unlock()
	return append(out, d)
}

// delivery is one fetched message.
type delivery struct {
	q   *Queue
	msg jetstream.Msg
	req seckill.OrderRequest
}

func (d *delivery) Request() seckill.OrderRequest { return d.req }

// Ack removes the message from the queue and returns once the server has
// done so (Pending no longer counts it). An error (EBusy) means the ack may
// be lost and the message delivered again.
func (d *delivery) Ack(ctx context.Context) error {
	d.forget()
	if err := d.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack %d:%d: %w", d.req.SaleID, d.req.UserID, busy(err))
	}
	return nil
}

// Nak asks for the message to be delivered again at once. It does not wait
// for the server; errors are EBusy.
func (d *delivery) Nak(ctx context.Context) error {
	d.forget()
	if err := d.msg.Nak(); err != nil {
		return fmt.Errorf("nak %d:%d: %w", d.req.SaleID, d.req.UserID, busy(err))
	}
	return nil
}

func (d *delivery) forget() {
	d.q.mu.Lock()
	delete(d.q.outstanding, d)
	d.q.mu.Unlock()
}

// Pending counts the requests of a sale (all sales for saleID 0) that are
// stored and not acked, fetched or not. Errors are EBusy.
func (q *Queue) Pending(ctx context.Context, saleID int64) (int64, error) {
	n, err := q.pending(ctx, saleID)
	if err != nil || n == 0 {
		return n, err
	}
	if purged, err := q.purgeAcked(ctx); err != nil || !purged {
		return n, err
	}
	return q.pending(ctx, saleID)
}

// purgeAcked removes messages the writer consumer has acked but the stream
// still holds, and reports whether there were any. After a hard crash of the NATS server
// the consumer's acks can survive while the work-queue removals they caused
// do not; such messages are never delivered again yet would count as
// pending forever. Everything at or below the consumer's ack floor is acked
// by definition, so purging up to it loses nothing.
func (q *Queue) purgeAcked(ctx context.Context) (bool, error) {
	ci, err := q.cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("consumer info: %w", busy(err))
	}
	floor := ci.AckFloor.Stream
	si, err := q.stream.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("stream info: %w", busy(err))
	}
	if floor == 0 || si.State.Msgs == 0 || si.State.FirstSeq > floor {
		return false, nil
	}
	if err := q.stream.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return false, fmt.Errorf("purge acked: %w", busy(err))
	}
	q.log.Warn("purged messages acked but left in the stream (after a server crash)", "up_to_seq", floor)
	return true, nil
}

func (q *Queue) pending(ctx context.Context, saleID int64) (int64, error) {
	if saleID == 0 {
		info, err := q.stream.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("pending: %w", busy(err))
		}
		return int64(info.State.Msgs), nil
	}
	subj := q.Subject(saleID)
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, fmt.Errorf("pending %d: %w", saleID, busy(err))
	}
	return int64(info.State.Subjects[subj]), nil
}

// PendingRequests returns the requests of a sale (all sales for saleID 0)
// that are stored and not acked, in publish order. It reads the stream
// directly and leaves the writer consumer alone. It costs one round trip per
// request. Undecodable messages are skipped. Errors are EBusy.
func (q *Queue) PendingRequests(ctx context.Context, saleID int64) ([]seckill.OrderRequest, error) {
	if _, err := q.purgeAcked(ctx); err != nil {
		return nil, err
	}
	subj := q.subjPfx + "*"
	if saleID != 0 {
		subj = q.Subject(saleID)
	}
	var out []seckill.OrderRequest
	for seq := uint64(1); ; {
		m, err := q.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("pending requests %d: %w", saleID, busy(err))
		}
		seq = m.Sequence + 1
		r, err := decodeRequest(m.Data)
		if err != nil {
			q.log.Error("malformed order message skipped", "seq", m.Sequence, "err", err)
			continue
		}
		out = append(out, r)
	}
}

// AckAll acks every delivery in ds (all fetched from q) and returns once the
// server has processed them all, like calling Ack on each, in one round trip
// instead of one per delivery: the acks go out without waiting, then the
// last one waits for the server, which handles one connection's acks in
// order. An error (EBusy) means some acks may be lost and their messages
// delivered again.
func (q *Queue) AckAll(ctx context.Context, ds []seckill.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	for i, sd := range ds {
		d, ok := sd.(*delivery)
		if !ok || d.q != q {
			return fmt.Errorf("ack all: delivery %d is not from this queue", i)
		}
		if i == len(ds)-1 {
			return d.Ack(ctx)
		}
		d.forget()
		if err := d.msg.Ack(); err != nil {
			return fmt.Errorf("ack %d:%d: %w", d.req.SaleID, d.req.UserID, busy(err))
		}
	}
	return nil
}
