package httpapi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"seckill"
)

// brokenBus is a result bus that cannot be subscribed to; its error names
// an internal address.
type brokenBus struct{}

func (brokenBus) PublishResults(context.Context, []seckill.OrderResult) error { return nil }
func (brokenBus) SubscribeResults(func(seckill.OrderResult)) (func(), error) {
	return nil, errors.New("nats: no servers available for connection: nats://10.1.2.3:4222")
}

// TestHubStartHidesBusError: when the result bus cannot be subscribed to,
// the socket's handshake is refused 503 busy with a fixed message; the
// bus's error (addresses, credentials, library text) goes to the log only.
func TestHubStartHidesBusError(t *testing.T) {
	var logged bytes.Buffer
	h := newHub(brokenBus{}, WSConfig{}, slog.New(slog.NewTextHandler(&logged, nil)), nil)
	err := h.start()
	if seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("start: %v, want EBusy", err)
	}
	if msg := seckill.ErrorMessage(err); strings.Contains(msg, "10.1.2.3") || strings.Contains(msg, "nats") {
		t.Errorf("the client is told the bus's error: %q", msg)
	}
	if !strings.Contains(logged.String(), "10.1.2.3") {
		t.Errorf("the bus's error is not logged: %q", logged.String())
	}
}
