package seckill

import (
	"errors"
	"fmt"
	"time"
)

// Application error codes. They are the stable codes of the HTTP contract
// (api.md); the HTTP layer maps each to one status in one place.
const (
	EInvalid         = "invalid"            // malformed or out-of-range input
	ETooLarge        = "too_large"          // request body over the limit
	EUnauthenticated = "unauthenticated"    // no session, or it expired
	EForbidden       = "forbidden"          // wrong role
	ENotFound        = "not_found"          // no such resource (or not yours)
	EMethod          = "method_not_allowed" // the path exists, the method does not
	EPhoneTaken      = "phone_taken"        // account exists
	EBadCredentials  = "bad_credentials"    // wrong phone or password
	EBadCaptcha      = "bad_captcha"        // wrong, expired or reused captcha
	ENotStarted      = "not_started"        // sale window not open yet
	EEnded           = "ended"              // sale window closed
	EBadPath         = "bad_path"           // hidden purchase path does not match
	EDuplicate       = "duplicate"          // user already holds a unit of this sale
	ESoldOut         = "sold_out"           // no units left
	ERateLimited     = "rate_limited"       // a token bucket is empty
	EBusy            = "busy"               // backend unavailable or overloaded; retry later
	EInternal        = "internal"           // anything else; details stay in the log
	ENotPayable      = "not_payable"        // order cannot be paid in its state
	ENotCancellable  = "not_cancellable"    // order cannot be cancelled in its state
	EBadSignature    = "bad_signature"      // payment callback not signed by the provider
	EAmountMismatch  = "amount_mismatch"    // payment callback amount differs from the order
	EExpired         = "expired"            // a result's reason: the request reached the queue after its reservation was released
)

// Error is the application error: a stable code and a message safe to show a
// client. Anything that is not an *Error is internal.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when set on a rate_limited or busy error, is when the
	// client may try again: the API's Retry-After (else 1 s).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an application error with the given code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the application error in err's chain, "" for
// nil and EInternal for any other error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// RetryAfter returns the RetryAfter of the application error in err's
// chain, 0 when it has none.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// ErrorMessage returns the client-safe message of err: the application
// error's message, or a generic text for internal errors.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
