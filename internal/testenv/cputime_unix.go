//go:build unix

package testenv

import (
	"syscall"
	"time"
)

// CPUTime is the CPU time this process has used so far, user and system.
// The embedded backends (SQLite, the in-process gate, JetStream) run in
// the process, so on a machine shared with other work a benchmark's CPU
// per operation says more than its wall-clock rate.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
