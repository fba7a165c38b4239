//go:build unix

package sqldb_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"seckill"
)

// TestSQLiteFilesPrivate checks that the database file and its WAL and
// shared-memory companions are readable by their owner only (0600), with
// no umask to help, and that an existing world-readable database is made
// private when opened. Not parallel: the umask is the process's.
func TestSQLiteFilesPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seckill.db")

	wantModes := func(t *testing.T, names ...string) {
		t.Helper()
		for _, name := range names {
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("%s has mode %#o, want 0600", filepath.Base(name), m)
			}
		}
	}

	db := openAt(t, "sqlite:"+path)
	if err := db.CreateUser(ctx, &seckill.User{Phone: "13800000000", Nickname: "n", Role: seckill.RoleBuyer, PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	wantModes(t, path, path+"-wal", path+"-shm")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// A file left world-readable by an older version is made private.
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(name, 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	openAt(t, "sqlite:"+path)
	wantModes(t, path)
}
