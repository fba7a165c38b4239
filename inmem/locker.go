package inmem

import (
	"context"
	"sync"
	"time"

	"seckill"
)

var _ seckill.Locker = (*Locker)(nil)

// Locker is an in-process lock table with leases: enough when one process
// is the only instance.
type Locker struct {
	mu    sync.Mutex
	held  map[string]lease
	seq   uint64
	clock func() time.Time
}

type lease struct {
	id      uint64
	expires time.Time
}

// NewLocker returns an empty lock table.
func NewLocker() *Locker { return &Locker{held: make(map[string]lease), clock: time.Now} }

// TryLock takes the named lock for ttl if it is free or its lease expired.
func (l *Locker) TryLock(_ context.Context, name string, ttl time.Duration) (seckill.Lease, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if cur, ok := l.held[name]; ok && now.Before(cur.expires) {
		return seckill.Lease{}, false, nil
	}
	l.seq++
	id := l.seq
	l.held[name] = lease{id: id, expires: now.Add(ttl)}
	return seckill.Lease{
		Release: func(context.Context) error {
			l.mu.Lock()
			defer l.mu.Unlock()
			if cur, ok := l.held[name]; ok && cur.id == id {
				delete(l.held, name)
			}
			return nil
		},
		Extend: func(_ context.Context, ttl time.Duration) (bool, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			now := l.clock()
			if cur, ok := l.held[name]; !ok || cur.id != id || !now.Before(cur.expires) {
				return false, nil
			}
			l.held[name] = lease{id: id, expires: now.Add(ttl)}
			return true, nil
		},
	}, true, nil
}
