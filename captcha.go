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
	// TakeCaptcha removes and returns the captcha if it was issued to
	// userID: single use, and only its user's try uses it up. ENotFound when
	// there is none, it expired, or it is another user's (left in place, and
	// told apart from none by nobody, so an id learned over a shoulder is
	// worth nothing to someone else). The check and the removal are one
	// atomic step, so concurrent takers get it once.
	TakeCaptcha(ctx context.Context, id string, userID int64) (*Captcha, error)
}

// CaptchaMaker makes captcha challenges and checks the answers given to
// them. The engine keeps what it makes in a CaptchaStore and never draws a
// picture itself. Both methods are safe for concurrent use.
type CaptchaMaker interface {
	// New makes a challenge: the answer it expects and a PNG picture of its
	// question. An error means no challenge was made.
	New() (answer string, png []byte, err error)
	// Check reports whether given answers a challenge whose answer is
	// answer.
	Check(answer, given string) bool
}
