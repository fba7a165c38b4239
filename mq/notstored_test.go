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
// the message left or was stored (a timeout, the connection closed while
// the acknowledgement was on its way, a replicated stream's leader
// answering an error for a message its followers store) must keep it for
// the writer or the reconciler, or a request stored after all lands with
// its unit sold again.
func TestNotStored(t *testing.T) {
	api := func(code jetstream.ErrorCode) error {
		return fmt.Errorf("nats: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: "test"})
	}
	for _, c := range []struct {
		err        error
		one, three bool // on a stream of one replica, of three
	}{
		{api(errCodeStoreFailed), true, false}, // a full stream (maximum messages exceeded)
		{api(jetstream.JSErrCodeStreamNotFound), true, true},
		{api(errCodeMessageTooLarge), true, true},
		{api(errCodeInsufficientResources), true, true},
		{api(errCodeSealed), true, true},
		{api(10063), false, false}, // sequence mismatch: a replicated leader's answer for a message stored
		{api(10071), false, false}, // wrong last sequence, or anything else the server says
		{jetstream.ErrNoStreamResponse, true, true},
		{nats.ErrNoResponders, true, true},
		{nats.ErrReconnectBufExceeded, true, true},
		{nats.ErrInvalidConnection, true, true},
		{nats.ErrConnectionDraining, true, true},
		{nats.ErrMaxPayload, true, true},
		{nats.ErrBadSubject, true, true},
		{nats.ErrConnectionClosed, false, false},
		{nats.ErrTimeout, false, false},
		{context.DeadlineExceeded, false, false},
		{context.Canceled, false, false},
		{jetstream.ErrInvalidJSAck, false, false},
		{fmt.Errorf("wrapped: %w", nats.ErrConnectionClosed), false, false},
	} {
		if got := notStored(c.err, 1); got != c.one {
			t.Errorf("notStored(%v, 1 replica) = %v, want %v", c.err, got, c.one)
		}
		if got := notStored(c.err, 3); got != c.three {
			t.Errorf("notStored(%v, 3 replicas) = %v, want %v", c.err, got, c.three)
		}
	}
}
