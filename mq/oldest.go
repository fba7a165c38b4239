package mq

import (
	"context"
	"fmt"
	"time"
)

// OldestPending returns when the oldest request still in the queue (any
// sale) was stored; ok is false when the queue is empty. WorkQueue
// retention deletes a message once acked, so the stream's first message is
// the oldest one not yet written to SQL. One round trip. Errors are EBusy.
func (q *Queue) OldestPending(ctx context.Context) (at time.Time, ok bool, err error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest pending: %w", busy(err))
	}
	if info.State.Msgs == 0 {
		return time.Time{}, false, nil
	}
	return info.State.FirstTime, true, nil
}
