package sqldb

import (
	"context"
	"testing"
	"time"

	"seckill/internal/testenv"
)

// TestMySQLMigrateLockLostWhileHeld (review): mysqlMigrateLock holds
// GET_LOCK on a connection that stays idle for the whole migration (goose
// migrates on a connection of its own). A server that closes idle
// connections (wait_timeout, here 1 s on that session; a proxy's idle
// timeout; a failover) frees the lock in the middle of a long migration:
// another instance then takes it and migrates alongside (the "Table
// already exists" this lock was meant to stop), and the first one's
// Unlock fails, which goose returns from Up, so sqldb.Open fails after a
// migration that went through.
func TestMySQLMigrateLockLostWhileHeld(t *testing.T) {
	url := testenv.FreshDatabase(t, testenv.URL(t, "SECKILL_TEST_MYSQL"))
	ctx := context.Background()
	db, _, err := openMySQL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	first := &mysqlMigrateLock{}
	if err := first.Lock(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := first.conn.ExecContext(ctx, "SET SESSION wait_timeout = 1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // a migration of a large table, the lock's connection idle

	second := &mysqlMigrateLock{}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := second.Lock(lctx, db); err == nil {
		t.Errorf("a second instance took the migration lock while the first still held it (its idle connection was closed by the server)")
		_ = second.Unlock(ctx, db)
	}
	if err := first.Unlock(ctx, db); err != nil {
		t.Errorf("the first instance's Unlock after its migration: %v (goose returns it from Up: sqldb.Open fails)", err)
	}
}
