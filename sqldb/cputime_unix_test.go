//go:build unix

package sqldb_test

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process has used so far, user and system.
// SQLite runs in the process, so on a machine shared with other work its
// CPU per order says more than its wall-clock rate.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
