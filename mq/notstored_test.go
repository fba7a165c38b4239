package mq

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNotStored: only a failure that surely left nothing in the stream
// lets Admit release the reservation at once; one that may have come after
// the message left (a timeout, the connection closed while the
// acknowledgement was on its way) must keep it for the writer or the
// reconciler, or a request stored after all lands with its unit sold
// again.
func TestNotStored(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}), true},
		{jetstream.ErrNoStreamResponse, true},
		{nats.ErrNoResponders, true},
		{nats.ErrReconnectBufExceeded, true},
		{nats.ErrInvalidConnection, true},
		{nats.ErrConnectionDraining, true},
		{nats.ErrMaxPayload, true},
		{nats.ErrBadSubject, true},
		{nats.ErrConnectionClosed, false},
		{nats.ErrTimeout, false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
		{jetstream.ErrInvalidJSAck, false},
		{fmt.Errorf("wrapped: %w", nats.ErrConnectionClosed), false},
	} {
		if got := notStored(c.err); got != c.want {
			t.Errorf("notStored(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
