package testenv

import (
	"context"
	"errors"
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
