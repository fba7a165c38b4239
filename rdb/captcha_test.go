package rdb

import (
	"context"
	"testing"
	"time"

	"seckill"
)

// TestCaptchaAcrossInstanceClocks: a captcha issued on one instance is
// answered on another whose clock disagrees by more than the captcha's
// life. Its expiry is Redis's key TTL, set from the issuing instance's
// clock, never compared with the taking instance's: before, an instance
// 3 min ahead refused every captcha another had just issued (and one
// behind would have accepted captchas past their expiry had Redis kept
// them).
func TestCaptchaAcrossInstanceClocks(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		prefix := testPrefix(t, c)
		base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		const life = 2 * time.Minute
		issuer := NewCaptchaStoreClock(c, prefix, func() time.Time { return base })
		for _, tc := range []struct {
			name string
			off  time.Duration
		}{{"ahead", 3 * time.Minute}, {"behind", -3 * time.Minute}} {
			t.Run(tc.name, func(t *testing.T) {
				taker := NewCaptchaStoreClock(c, prefix, func() time.Time { return base.Add(tc.off) })
				want := seckill.Captcha{Answer: "42", SaleID: 7, UserID: 9, ExpiresAt: base.Add(life)}
				id := "x-" + tc.name
				if err := issuer.PutCaptcha(ctx, id, want); err != nil {
					t.Fatal(err)
				}
				// Redis keeps it for its life as the issuer counts it,
				// whatever the clocks of Redis and the instances say.
				ttl, err := c.rdb.PTTL(ctx, issuer.key(id)).Result()
				if err != nil {
					t.Fatal(err)
				}
				if ttl <= life-5*time.Second || ttl > life {
					t.Errorf("key TTL %v, want the captcha's life %v", ttl, life)
				}
				got, err := taker.TakeCaptcha(ctx, id, want.UserID)
				if err != nil {
					t.Fatalf("a fresh captcha taken on an instance %v off the issuer: %v", tc.off, err)
				}
				if !got.ExpiresAt.Equal(want.ExpiresAt) || got.Answer != want.Answer || got.SaleID != want.SaleID || got.UserID != want.UserID {
					t.Errorf("took %+v, want %+v", got, want)
				}
				if _, err := taker.TakeCaptcha(ctx, id, want.UserID); seckill.ErrorCode(err) != seckill.ENotFound {
					t.Errorf("taken twice: err %v, want %s", err, seckill.ENotFound)
				}
			})
		}
	})
}
