package sqldb

import (
	"context"
	"database/sql"
	"strings"

	"github.com/pressly/goose/v3"
)

// InTx exposes inTx, with its retries, to the tests.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error { return db.inTx(ctx, fn) }

// MigrateDownTo rolls the database at url back to migration version, as
// a binary of that version left it; Open migrates it up again.
func MigrateDownTo(ctx context.Context, url string, version int64) error {
	scheme, _, _ := strings.Cut(url, ":")
	d := dialects[scheme]
	write, read, err := d.open(ctx, url)
	if err != nil {
		return err
	}
	defer write.Close()
	if read != write {
		defer read.Close()
	}
	p, err := goose.NewProvider(d.goose, write, d.migrations)
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}
