//go:build unix

package main

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDataDirPrivate starts the server on a data directory an older
// version left readable by everyone, with no umask to help, and checks
// that the directory, the secret, the database and the queue's store end
// up readable by their owner only. Not parallel: the umask is the
// process's.
func TestDataDirPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// What an older version left: 0755 directories, 0644 files.
	mustDo(os.MkdirAll(filepath.Join(dir, "nats", "old"), 0o755))
	mustDo(os.WriteFile(filepath.Join(dir, "secret"), []byte("0123456789abcdef0123456789abcdef"), 0o644))
	mustDo(os.WriteFile(filepath.Join(dir, "nats", "old", "msgs.blk"), nil, 0o644))

	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.LogLevel = "127.0.0.1:0", dir, "error"
	m.Config.AdminPhone, m.Config.AdminPassword = "19900000000", "admin-password" // writes to the database
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	defer m.Close()

	for name, want := range map[string]os.FileMode{
		"":                  0o700,
		"secret":            0o600,
		"seckill.db":        0o600,
		"seckill.db-wal":    0o600,
		"seckill.db-shm":    0o600,
		"nats":              0o700,
		"nats/old":          0o700,
		"nats/old/msgs.blk": 0o600,
		// The in-process payment sandbox's store: payments and buyers'
		// order numbers.
		"sandbox":             0o700,
		"sandbox/sandbox.db":  0o600,
		"sandbox/sandbox.pem": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%q has mode %#o, want %#o", "data/"+name, got, want)
		}
	}
	// A fresh data directory is private from the start.
	fresh := filepath.Join(t.TempDir(), "fresh")
	mustDo(privateDataDir(fresh))
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("fresh data directory: %v, %v", fi.Mode().Perm(), err)
	}
}
