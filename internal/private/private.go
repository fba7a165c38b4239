// Package private keeps files readable and writable by their owner only.
package private

import (
	"errors"
	"io/fs"
	"os"
)

// SQLite makes the SQLite database file at path and its companions
// (-wal, -shm, -journal) readable and writable by this user only (0600).
// A missing database file is created with that mode whatever the umask,
// and SQLite gives the companions it creates the database file's mode;
// files from an older version or a laxer umask are changed. Call it before
// opening the database.
func SQLite(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
