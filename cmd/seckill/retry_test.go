package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"seckill"
)

// TestRetryBusy: start-up's recovery is tried again while a shared backend
// answers busy (a restart of NATS made a starting instance exit), up to its
// patience; any other error ends it at once.
func TestRetryBusy(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	busy := seckill.Errorf(seckill.EBusy, "order queue unavailable")
	ctx := context.Background()

	calls := 0
	err := retryBusy(ctx, log, time.Minute, func(context.Context) error {
		calls++
		if calls < 2 {
			return busy
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Errorf("busy once, then fine: %v after %d calls; want nil after 2", err, calls)
	}

	calls = 0
	other := errors.New("migrations are newer than this binary")
	if err := retryBusy(ctx, log, time.Minute, func(context.Context) error { calls++; return other }); !errors.Is(err, other) || calls != 1 {
		t.Errorf("a lasting error: %v after %d calls; want it after 1", err, calls)
	}

	calls = 0
	if err := retryBusy(ctx, log, 1500*time.Millisecond, func(context.Context) error { calls++; return busy }); seckill.ErrorCode(err) != seckill.EBusy || calls != 2 {
		t.Errorf("busy for good: %v after %d calls; want busy after 2 (tries at 0 and 1 s; the next, 2 s later, is past 1.5 s)", err, calls)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := retryBusy(cctx, log, time.Minute, func(context.Context) error { return busy }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while waiting: %v", err)
	}
}
