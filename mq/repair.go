package mq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"seckill"
)

// Repair mends what a crash of the NATS server can leave behind, so that
// every request the stream holds reaches the writer; it is a no-op on a
// healthy queue (two info round trips). Open calls it, the queue calls it
// after each reconnect, and the engine calls it on recovery and in every
// reconciler round. Safe to run on several instances at once. Errors are
// EBusy.
//
// A server killed with SIGKILL keeps every message it acknowledged (it
// writes them before it answers) but writes the consumer's state and the
// work queue's removals of acked messages lazily. On restart it can come
// back with
//
//   - messages at or below the consumer's ack floor, or below its
//     delivered sequence while nothing awaits an ack: removals that did not
//     survive, or messages stored under sequence numbers the consumer had
//     already passed. The consumer never delivers them again;
//   - a stream whose last sequence is below the consumer's delivered one:
//     every message stored until the stream passes it again is skipped.
//
// Deleting such messages would lose those that were never written to SQL
// (the ack floor is the consumer's, not the message's), so Repair never
// drops a request: it stores the messages the consumer skipped again at the
// end of the stream and deletes the originals, and when the stream's
// sequence went back it creates the consumer anew, which delivers
// everything the stream holds. The writer settles a request twice as once
// (SQL's unique key), so a request delivered again is harmless.
//
// A consumer that is gone (an instance died between recreateConsumer's
// delete and its create, or someone deleted it) is created again: nothing
// else would, and the writers would fetch nothing while every purchase
// was accepted. On a replicated stream Repair acts only on what a leader
// answers: with no leader, any member answers the stream's info from its
// own copy, which may be behind, and a copy that looked as if the
// sequence went back made Repair delete the consumer (found by review).
func (q *Queue) Repair(ctx context.Context) error {
	ci, err := q.cons.Info(ctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		q.log.Warn("the writer consumer is gone; creating it anew")
		if _, err := q.stream.CreateOrUpdateConsumer(ctx, q.consumerConfig()); err != nil {
			return fmt.Errorf("repair: create consumer: %w", busy(err))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("repair: consumer info: %w", busy(err))
	}
	// The stream after the consumer: nothing at or below the consumer's
	// delivered sequence can be stored in between, so what the stream holds
	// there was held when the consumer looked.
	si, err := q.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("repair: stream info: %w", busy(err))
	}
	if leaderless(si) {
		return fmt.Errorf("repair: %w", seckill.Errorf(seckill.EBusy, "the order stream has no leader"))
	}
	delivered, floor := ci.Delivered.Stream, ci.AckFloor.Stream
	if si.State.LastSeq < delivered {
		return q.recreateConsumer(ctx, si.State.LastSeq, delivered)
	}
	if si.State.Msgs == 0 {
		return nil
	}
	// At or below the ack floor everything was acked; below the delivered
	// sequence too when no ack is awaited. Such a message is never
	// delivered again.
	skipped := floor
	if ci.NumAckPending == 0 {
		skipped = delivered
	}
	n, err := q.requeue(ctx, si.State.FirstSeq, skipped)
	if n > 0 {
		q.log.Warn("stored again messages the consumer would not deliver (after a server crash)",
			"messages", n, "from_seq", si.State.FirstSeq, "to_seq", skipped)
	}
	return err
}

// maxRequeue bounds the messages one Repair moves; the next one goes on.
const maxRequeue = 100_000

// requeue stores again, at the end of the stream, every message from the
// stream's first, first, up to sequence last, deleting each original after
// its copy is stored, and returns how many it moved. It takes the stream's
// first message each time rather than asking for the next message of the
// orders' subjects: a file store recovered after a crash can answer that
// look-up with "not found" for a message it still holds (seen on
// nats-server 2.9), while the stream's first sequence and a get by
// sequence are right.
func (q *Queue) requeue(ctx context.Context, first, last uint64) (int, error) {
	n := 0
	for first <= last && n < maxRequeue {
		m, err := q.stream.GetMsg(ctx, first)
		switch {
		case err == nil:
			if _, err := q.js.Publish(ctx, m.Subject, m.Data); err != nil {
				return n, fmt.Errorf("repair: store %d again: %w", m.Sequence, busy(err))
			}
			if err := q.stream.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				// Another instance moved it first; the copies are harmless.
				q.log.Debug("repair: delete moved message", "seq", m.Sequence, "err", err)
			}
			n++
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return n, fmt.Errorf("repair: get %d: %w", first, busy(err))
		}
		// On to the stream's first message now: the one after this, or
		// further when others were moved or acked meanwhile.
		si, err := q.stream.Info(ctx)
		if err != nil {
			return n, fmt.Errorf("repair: stream info: %w", busy(err))
		}
		if si.State.Msgs == 0 {
			break
		}
		first = max(si.State.FirstSeq, first+1)
	}
	return n, nil
}

// recreateConsumer deletes the writer consumer and creates it again, so it
// delivers every message of the stream from the first: called when the
// stream's sequence went back below what the consumer had delivered.
// Deliveries outstanding from the old consumer are delivered again by the
// new one; their acks may be lost, which only repeats them.
func (q *Queue) recreateConsumer(ctx context.Context, last, delivered uint64) error {
	q.log.Warn("the stream's sequence went back below the consumer's (after a server crash); creating the consumer anew",
		"stream_last_seq", last, "consumer_delivered_seq", delivered)
	if err := q.stream.DeleteConsumer(ctx, consumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("repair: delete consumer: %w", busy(err))
	}
	// Pulls go to the consumer by name, so q.cons serves the new one.
	if _, err := q.stream.CreateOrUpdateConsumer(ctx, q.consumerConfig()); err != nil {
		return fmt.Errorf("repair: create consumer: %w", busy(err))
	}
	return nil
}

// repairAfterReconnect runs Repair once the connection is back, retrying
// for a while if the server is not yet answering.
func (q *Queue) repairAfterReconnect() {
	for attempt := 0; attempt < 10; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := q.Repair(ctx)
		cancel()
		if err == nil {
			return
		}
		q.log.Warn("repair after reconnect", "attempt", attempt+1, "err", err)
		select {
		case <-q.closed:
			return
		case <-time.After(time.Second):
		}
	}
}
