//go:build !unix

package testenv

import "time"

// CPUTime is not measured here.
func CPUTime() time.Duration { return 0 }
