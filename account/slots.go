package account

import (
	"context"
	"slices"
	"sync"
	"time"

	"seckill"
)

// Ranks of a hash in the queue for a slot: logins of accounts and
// addresses with no failed attempt on record go first, so a guessing
// attack queues behind real users instead of in front of them.
const (
	rankClean   = 0
	rankSuspect = 1
	ranks       = 2
)

// slots is the hashing semaphore: at most n hashes at once. When every
// slot is taken, waiters queue by rank, and a freed slot goes to the
// longest waiting of the first rank that has any.
type slots struct {
	mu    sync.Mutex
	n     int
	free  int
	queue [ranks][]chan struct{} // closed when the slot is handed over
}

func newSlots(n int) *slots { return &slots{n: n, free: n} }

// acquire takes a slot, waiting at most wait behind the queue of its rank
// and those before it. EBusy when none frees up in time, the context's
// error when ctx ends first.
func (s *slots) acquire(ctx context.Context, rank int, wait time.Duration) error {
	s.mu.Lock()
	if s.free > 0 && !s.queuedUpTo(rank) {
		s.free--
		s.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	s.queue[rank] = append(s.queue[rank], ready)
	s.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	var err error
	select {
	case <-ready:
		return nil
	case <-t.C:
		err = seckill.Errorf(seckill.EBusy, "too many logins at once; retry shortly")
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	i := slices.Index(s.queue[rank], ready)
	if i >= 0 {
		s.queue[rank] = slices.Delete(s.queue[rank], i, i+1)
	}
	s.mu.Unlock()
	if i < 0 { // handed over while giving up: pass it on
		s.release()
	}
	return err
}

// queuedUpTo reports whether anyone of rank or a rank before it waits.
func (s *slots) queuedUpTo(rank int) bool {
	for r := 0; r <= rank; r++ {
		if len(s.queue[r]) > 0 {
			return true
		}
	}
	return false
}

// release frees a slot, handing it to the first waiter in rank order.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for r := range s.queue {
		if len(s.queue[r]) > 0 {
			close(s.queue[r][0])
			s.queue[r] = s.queue[r][1:]
			return
		}
	}
	s.free++
}

// held counts the slots taken; waiting counts the waiters of a rank.
func (s *slots) held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n - s.free
}

func (s *slots) waiting(rank int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue[rank])
}
