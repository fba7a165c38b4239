package inmem

import (
	"context"
	"sync"
	"time"

	"seckill"
)

var _ seckill.CaptchaStore = (*CaptchaStore)(nil)

// CaptchaStore keeps issued captchas in memory until they are taken or
// expire. Expired entries are swept as new ones arrive.
type CaptchaStore struct {
	mu    sync.Mutex
	items map[string]seckill.Captcha
	swept time.Time
	now   func() time.Time
}

// NewCaptchaStore returns an empty store.
func NewCaptchaStore() *CaptchaStore { return NewCaptchaStoreClock(time.Now) }

// NewCaptchaStoreClock returns an empty store that expires captchas by now.
func NewCaptchaStoreClock(now func() time.Time) *CaptchaStore {
	return &CaptchaStore{items: make(map[string]seckill.Captcha), now: now}
}

// PutCaptcha stores c under id.
func (s *CaptchaStore) PutCaptcha(_ context.Context, id string, c seckill.Captcha) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) > 10*time.Second {
		for k, v := range s.items {
			if !now.Before(v.ExpiresAt) {
				delete(s.items, k)
			}
		}
		s.swept = now
	}
	s.items[id] = c
	return nil
}

// TakeCaptcha removes and returns userID's captcha; ENotFound if absent,
// expired or another user's (which stays).
func (s *CaptchaStore) TakeCaptcha(_ context.Context, id string, userID int64) (*seckill.Captcha, error) {
	s.mu.Lock()
	c, ok := s.items[id]
	if ok && c.UserID != userID {
		ok = false
	} else {
		delete(s.items, id)
	}
	s.mu.Unlock()
	if !ok || !s.now().Before(c.ExpiresAt) {
		return nil, seckill.Errorf(seckill.ENotFound, "captcha expired or already used")
	}
	return &c, nil
}
