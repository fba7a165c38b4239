package checkout

import (
	"time"

	"seckill"
)

// Observer is told what the engine does, for metrics. Its methods run on
// the hot path: they must be cheap, must not block, and must be safe for
// concurrent use. A nil Config.Observer observes nothing.
type Observer interface {
	// GateResult reports one answer of the stock gate: r is Reserved,
	// Duplicate, SoldOut or Limited when err is nil; err is the gate's error
	// otherwise (r is then 0).
	GateResult(r seckill.GateResult, err error)
	// BatchWritten reports one batch of the order writer: n messages, of
	// which failed were refused by SQL (ResultFailed), written in d (SQL
	// transaction and acks). err is the transaction's error, in which case
	// nothing was written and the n messages will be redelivered.
	BatchWritten(n, failed int, d time.Duration, err error)
}

// nopObserver is the Observer of an engine configured without one.
type nopObserver struct{}

func (nopObserver) GateResult(seckill.GateResult, error)        {}
func (nopObserver) BatchWritten(int, int, time.Duration, error) {}
