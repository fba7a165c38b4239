package contract

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seckill"
)

// TestLimiter checks a Limiter implementation. newLimiter returns fresh
// buckets refilling at perSecond holding at most burst tokens.
func TestLimiter(t *testing.T, newLimiter func(t *testing.T, perSecond float64, burst int) seckill.Limiter) {
	ctx := context.Background()
	allow := func(t *testing.T, l seckill.Limiter, key string) bool {
		t.Helper()
		ok, err := l.Allow(ctx, key)
		if err != nil {
			t.Fatalf("Allow(%q): %v", key, err)
		}
		return ok
	}

	t.Run("BurstThenDeny", func(t *testing.T) {
		// One token per 10 s: the burst is all there is during the test.
		l := newLimiter(t, 0.1, 3)
		for i := 0; i < 3; i++ {
			if !allow(t, l, "u1") {
				t.Fatalf("request %d of the burst denied", i+1)
			}
		}
		if allow(t, l, "u1") {
			t.Fatal("request beyond the burst allowed")
		}
		// Keys do not share buckets.
		if !allow(t, l, "u2") {
			t.Fatal("other key denied")
		}
	})

	t.Run("Refills", func(t *testing.T) {
		l := newLimiter(t, 20, 1)
		if !allow(t, l, "k") {
			t.Fatal("first request denied")
		}
		deadline := time.Now().Add(5 * time.Second)
		for !allow(t, l, "k") {
			if time.Now().After(deadline) {
				t.Fatal("bucket did not refill within 5 s at 20 tokens/s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("ConcurrentExact", func(t *testing.T) {
		// 64 goroutines race for a burst of 50 on one key and a slow refill:
		// exactly 50 pass.
		l := newLimiter(t, 0.01, 50)
		var passed atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					if ok, err := l.Allow(ctx, "hot"); err != nil {
						t.Error(err)
					} else if ok {
						passed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if passed.Load() != 50 {
			t.Fatalf("%d requests passed, want 50", passed.Load())
		}
	})

	t.Run("ManyKeys", func(t *testing.T) {
		l := newLimiter(t, 0.01, 1)
		for i := 0; i < 5000; i++ {
			if !allow(t, l, fmt.Sprintf("ip-%d", i)) {
				t.Fatalf("first request of key %d denied", i)
			}
		}
		if allow(t, l, "ip-17") {
			t.Fatal("second request of a key allowed")
		}
	})
}

// TestCaptchaStore checks a CaptchaStore implementation.
func TestCaptchaStore(t *testing.T, newStore func(t *testing.T) seckill.CaptchaStore) {
	ctx := context.Background()
	t.Run("SingleUse", func(t *testing.T) {
		s := newStore(t)
		c := seckill.Captcha{Answer: "12", SaleID: 3, UserID: 4, ExpiresAt: time.Now().Add(time.Minute)}
		if err := s.PutCaptcha(ctx, "a", c); err != nil {
			t.Fatal(err)
		}
		// Another user's try finds nothing and takes nothing.
		_, err := s.TakeCaptcha(ctx, "a", 5)
		wantCode(t, err, seckill.ENotFound)
		got, err := s.TakeCaptcha(ctx, "a", 4)
		if err != nil {
			t.Fatal(err)
		}
		if got.Answer != c.Answer || got.SaleID != c.SaleID || got.UserID != c.UserID || !got.ExpiresAt.Equal(c.ExpiresAt) {
			t.Fatalf("TakeCaptcha = %+v, want %+v", got, c)
		}
		_, err = s.TakeCaptcha(ctx, "a", 4)
		wantCode(t, err, seckill.ENotFound)
	})
	t.Run("Unknown", func(t *testing.T) {
		_, err := newStore(t).TakeCaptcha(ctx, "nope", 4)
		wantCode(t, err, seckill.ENotFound)
	})
	t.Run("Expired", func(t *testing.T) {
		s := newStore(t)
		c := seckill.Captcha{Answer: "1", ExpiresAt: time.Now().Add(-time.Second)}
		if err := s.PutCaptcha(ctx, "old", c); err != nil {
			t.Fatal(err)
		}
		_, err := s.TakeCaptcha(ctx, "old", 0)
		wantCode(t, err, seckill.ENotFound)
	})
	t.Run("ConcurrentTakeOnce", func(t *testing.T) {
		s := newStore(t)
		if err := s.PutCaptcha(ctx, "race", seckill.Captcha{Answer: "1", UserID: 7, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		// Its user's takers race, and others' with them: one of its
		// user's wins, once.
		var won, others atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				user := int64(7 + i%2)
				if _, err := s.TakeCaptcha(ctx, "race", user); err == nil {
					if user == 7 {
						won.Add(1)
					} else {
						others.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if won.Load() != 1 || others.Load() != 0 {
			t.Fatalf("captcha taken %d times by its user and %d by another, want once by its user", won.Load(), others.Load())
		}
	})
}

// TestLocker checks a Locker implementation. Locks of different tests must
// not collide: newLocker may prefix names.
func TestLocker(t *testing.T, newLocker func(t *testing.T) seckill.Locker) {
	ctx := context.Background()
	t.Run("Exclusive", func(t *testing.T) {
		l := newLocker(t)
		lease, ok, err := l.TryLock(ctx, "rebuild", time.Minute)
		if err != nil || !ok {
			t.Fatalf("first TryLock: %v, %v", ok, err)
		}
		if _, ok, err := l.TryLock(ctx, "rebuild", time.Minute); err != nil || ok {
			t.Fatalf("second TryLock while held: %v, %v", ok, err)
		}
		if _, ok, _ := l.TryLock(ctx, "other", time.Minute); !ok {
			t.Fatal("another name is locked too")
		}
		if err := lease.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := l.TryLock(ctx, "rebuild", time.Minute); !ok {
			t.Fatal("lock not free after release")
		}
		if ok, err := lease.Extend(ctx, time.Minute); err != nil || ok {
			t.Fatalf("Extend after release: %v, %v; want false", ok, err)
		}
	})
	t.Run("LeaseExpires", func(t *testing.T) {
		l := newLocker(t)
		stale, ok, _ := l.TryLock(ctx, "lease", 50*time.Millisecond)
		if !ok {
			t.Fatal("TryLock failed")
		}
		deadline := time.Now().Add(5 * time.Second)
		var lease seckill.Lease
		for {
			if lease, ok, _ = l.TryLock(ctx, "lease", time.Minute); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("lease of 50 ms still held after 5 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The first holder's release must not free the new holder's lock,
		// nor its extend take it over.
		if ok, err := stale.Extend(ctx, time.Minute); err != nil || ok {
			t.Fatalf("an expired holder's Extend: %v, %v; want false", ok, err)
		}
		if err := stale.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := l.TryLock(ctx, "lease", time.Minute); ok {
			t.Fatal("an expired holder's release freed the new holder's lock")
		}
		_ = lease.Release(ctx)
	})
	t.Run("Extend", func(t *testing.T) {
		l := newLocker(t)
		lease, ok, _ := l.TryLock(ctx, "extend", time.Second)
		if !ok {
			t.Fatal("TryLock failed")
		}
		// Extended every 300 ms, a lease of a second holds for 2.4.
		for range 8 {
			time.Sleep(300 * time.Millisecond)
			if ok, err := lease.Extend(ctx, time.Second); err != nil || !ok {
				t.Fatalf("Extend of a held lease: %v, %v", ok, err)
			}
			if _, ok, _ := l.TryLock(ctx, "extend", time.Minute); ok {
				t.Fatal("an extended lease was taken")
			}
		}
		_ = lease.Release(ctx)
	})
	t.Run("OneWinner", func(t *testing.T) {
		l := newLocker(t)
		var won atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, ok, err := l.TryLock(ctx, "race", time.Minute); err != nil {
					t.Error(err)
				} else if ok {
					won.Add(1)
				}
			}()
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d holders, want 1", won.Load())
		}
	})
}
