package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWaitReportsDeadListener: a listener closed under the running server
// ends Wait with its error, so `seckill serve` shuts down and exits
// non-zero instead of staying up answering nobody.
func TestWaitReportsDeadListener(t *testing.T) {
	m := runEmbedded(t)
	defer m.Close()
	if err := m.ln.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.Wait(ctx)
	if err == nil {
		t.Fatal("Wait returned nil: the dead listener went unnoticed for 10 s")
	}
	if !strings.Contains(err.Error(), "public listener") {
		t.Fatalf("Wait: %v, want the public listener's failure", err)
	}
}

// TestWaitReturnsNilOnShutdown: the ordinary end (the signal's context
// ends) is not a failure, and a graceful Close is not reported as one.
func TestWaitReturnsNilOnShutdown(t *testing.T) {
	m := runEmbedded(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait after the context ended: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.serveErr:
		t.Fatalf("Close reported as a listener failure: %v", err)
	default:
	}
}
