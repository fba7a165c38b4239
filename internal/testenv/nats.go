package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeleteOrderStream deletes the order stream that a queue with prefix
// created on the NATS server at natsURL (mq.Queue.StreamName). Each stream
// reserves its MaxBytes of the server's storage, so tests on a shared
// server must not leave theirs behind. A server that cannot be reached (a
// test's own, already stopped) or a stream that is gone is not an error.
func DeleteOrderStream(natsURL, prefix string) error {
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second))
	if err != nil {
		return nil
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, strings.ToUpper(prefix)+"_ORDERS"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return nil
}

// DescribeOrderQueue says what the order stream of a queue with prefix and
// its writer consumer hold, for a drill's failure message.
func DescribeOrderQueue(natsURL, prefix string) string {
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second))
	if err != nil {
		return "nats: " + err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, strings.ToUpper(prefix)+"_ORDERS")
	if err != nil {
		return "stream: " + err.Error()
	}
	si, err := st.Info(ctx)
	if err != nil {
		return "stream info: " + err.Error()
	}
	out := fmt.Sprintf("stream msgs=%d first=%d last=%d", si.State.Msgs, si.State.FirstSeq, si.State.LastSeq)
	if m, err := st.GetMsg(ctx, si.State.FirstSeq); err == nil {
		out += fmt.Sprintf(" first_subject=%s", m.Subject)
	}
	c, err := st.Consumer(ctx, "writer")
	if err != nil {
		return out + "; consumer: " + err.Error()
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return out + "; consumer info: " + err.Error()
	}
	return out + fmt.Sprintf("; consumer delivered=%d ack_floor=%d num_pending=%d ack_pending=%d redelivered=%d waiting=%d",
		ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
}
