package contract

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// TestLoginGuard checks a LoginGuard implementation. newGuard returns a
// fresh guard with policy p whose keys no other guard shares.
func TestLoginGuard(t *testing.T, newGuard func(t *testing.T, p seckill.Backoff) seckill.LoginGuard) {
	ctx := context.Background()
	attempt := func(t *testing.T, g seckill.LoginGuard, key string) (int, time.Duration) {
		t.Helper()
		n, wait, err := g.Attempt(ctx, key)
		if err != nil {
			t.Fatalf("Attempt(%q): %v", key, err)
		}
		return n, wait
	}
	succeeded := func(t *testing.T, g seckill.LoginGuard, key string, reset bool) {
		t.Helper()
		if err := g.Succeeded(ctx, key, reset); err != nil {
			t.Fatalf("Succeeded(%q, %v): %v", key, reset, err)
		}
	}
	// long is a policy under which nobody waits out a back-off during a test.
	long := seckill.Backoff{Free: 3, Base: time.Hour, Max: 4 * time.Hour, Forget: 24 * time.Hour}

	t.Run("FreeThenWait", func(t *testing.T) {
		g := newGuard(t, long)
		for i := range 3 {
			if n, wait := attempt(t, g, "p"); n != i || wait != 0 {
				t.Fatalf("free attempt %d: %d on record, wait %v; want %d, 0", i+1, n, wait, i)
			}
		}
		for range 3 {
			// Refused attempts are not recorded: the wait does not grow.
			n, wait := attempt(t, g, "p")
			if n != 3 || wait <= 59*time.Minute || wait > time.Hour {
				t.Fatalf("attempt after the free ones: %d on record, wait %v; want 3, about 1h", n, wait)
			}
		}
		if n, wait := attempt(t, g, "other"); n != 0 || wait != 0 {
			t.Fatalf("another key: %d on record, wait %v", n, wait)
		}
	})

	t.Run("ResetOnSuccess", func(t *testing.T) {
		g := newGuard(t, long)
		for range 3 {
			attempt(t, g, "p")
		}
		succeeded(t, g, "p", true)
		for i := range 3 {
			if n, wait := attempt(t, g, "p"); n != i || wait != 0 {
				t.Fatalf("attempt %d after a reset: %d on record, wait %v", i+1, n, wait)
			}
		}
		succeeded(t, g, "never-tried", true)
		succeeded(t, g, "never-tried", false)
	})

	t.Run("SucceededTakesBackOne", func(t *testing.T) {
		g := newGuard(t, long)
		attempt(t, g, "ip")
		attempt(t, g, "ip")
		succeeded(t, g, "ip", false)
		if n, wait := attempt(t, g, "ip"); n != 1 || wait != 0 {
			t.Fatalf("after one taken back: %d on record, wait %v; want 1, 0", n, wait)
		}
		attempt(t, g, "ip")
		if _, wait := attempt(t, g, "ip"); wait == 0 {
			t.Fatal("fourth attempt with three on record went through")
		}
	})

	t.Run("Doubles", func(t *testing.T) {
		base := 100 * time.Millisecond
		g := newGuard(t, seckill.Backoff{Free: 1, Base: base, Max: 4 * base, Forget: time.Minute})
		// A wait counts from the attempt that went through (made after
		// allowed): on a loaded machine some of it may have passed before
		// the next attempt asks (CI saw 84 ms of a 400 ms wait left).
		allowed := time.Now()
		attempt(t, g, "p")
		for i, want := range []time.Duration{base, 2 * base, 4 * base, 4 * base} {
			_, wait := attempt(t, g, "p")
			if wait <= want/2-time.Since(allowed) || wait > want {
				t.Fatalf("wait %d: %v, want about %v", i+1, wait, want)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				allowed = time.Now()
				if _, wait = attempt(t, g, "p"); wait == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still waiting %v after 5 s", wait)
				}
				time.Sleep(wait)
			}
		}
	})

	t.Run("Forgets", func(t *testing.T) {
		g := newGuard(t, seckill.Backoff{Free: 1, Base: 100 * time.Millisecond, Max: 100 * time.Millisecond, Forget: 200 * time.Millisecond})
		attempt(t, g, "p")
		// Every try may be recorded, so each waits out Forget first.
		deadline := time.Now().Add(5 * time.Second)
		for {
			time.Sleep(250 * time.Millisecond)
			if n, _ := attempt(t, g, "p"); n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("key not forgotten 5 s after a Forget of 200 ms")
			}
		}
	})

	t.Run("ConcurrentExact", func(t *testing.T) {
		// 64 goroutines guess at once: exactly the free attempts go through,
		// even though none of them has been taken back or confirmed.
		g := newGuard(t, seckill.Backoff{Free: 10, Base: time.Hour, Max: time.Hour, Forget: time.Hour})
		var passed atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if _, wait, err := g.Attempt(ctx, "hot"); err != nil {
						t.Error(err)
					} else if wait == 0 {
						passed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if passed.Load() != 10 {
			t.Fatalf("%d attempts went through, want 10", passed.Load())
		}
	})
}
