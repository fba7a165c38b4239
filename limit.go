package seckill

import (
	"context"
	"time"
)

// Limiter is a set of token buckets, one per key.
type Limiter interface {
	// Allow takes a token from key's bucket and reports whether there was one.
	Allow(ctx context.Context, key string) (bool, error)
}

// LoginGuard slows password guessing down. It counts the login attempts of
// a key (a phone number, a client address) and, once the key has used its
// free tries, makes it wait before each further one, longer after every
// attempt (see Backoff). An attempt counts as failed until Succeeded takes
// it back, so concurrent guesses cannot all slip through while the first
// ones are still being checked. One implementation keeps the counts in the
// process (inmem), another in Redis, shared by every instance (rdb).
type LoginGuard interface {
	// Attempt records an attempt of key and returns how many attempts key
	// had on record before it (0 for a key with a clean slate). When key
	// must still wait, the attempt is not recorded and wait is how long;
	// the caller refuses it without checking the password.
	Attempt(ctx context.Context, key string) (failures int, wait time.Duration, err error)
	// Succeeded takes back an attempt of key that turned out right (or was
	// never checked). With reset it forgets every attempt of key: the
	// owner of a phone proved the password. A key with nothing on record
	// is not an error.
	Succeeded(ctx context.Context, key string, reset bool) error
}

// Backoff is the policy of a LoginGuard: Free attempts go through at
// once; the attempt after them waits Base after the last one, and the wait
// doubles with every attempt after that, up to Max. A key with no attempt
// for Forget starts over.
type Backoff struct {
	Free   int
	Base   time.Duration
	Max    time.Duration
	Forget time.Duration
}

// Delay is how long after its last attempt a key that has n attempts on
// record must wait before the next one.
func (b Backoff) Delay(n int) time.Duration {
	if n < b.Free || b.Base <= 0 {
		return 0
	}
	shift := n - b.Free
	if shift >= 62 || b.Base > b.Max>>shift {
		return b.Max
	}
	return b.Base << shift
}
