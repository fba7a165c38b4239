package seckill

import (
	"context"
	"time"
)

// Captcha is an issued captcha challenge.
type Captcha struct {
	Answer    string
	SaleID    int64
	UserID    int64
	ExpiresAt time.Time
}

// CaptchaStore keeps issued captchas until they are used or expire.
type CaptchaStore interface {
	// PutCaptcha stores c under id.
	PutCaptcha(ctx context.Context, id string, c Captcha) error
	// TakeCaptcha removes and returns the captcha: single use. ENotFound when
	// there is none or it expired.
	TakeCaptcha(ctx context.Context, id string) (*Captcha, error)
}
