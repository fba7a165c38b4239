// Package contract holds one test suite per interface of package seckill.
// Every backend runs the suite of each interface it implements, so the
// embedded backends and the production ones are held to the same behaviour.
package contract

import (
	"testing"

	"seckill"
)

// wantCode fails the test unless err carries the application error code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := seckill.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}
