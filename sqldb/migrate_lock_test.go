package sqldb

import (
	"context"
	"testing"
	"time"

	"seckill/internal/testenv"
)

// TestMySQLMigrateLock: the migration lock is held by the connection goose
// migrates on; a second instance waits for it (here: gives up after its
// deadline) while the first holds it, and gets it once the first lets go.
// (A review found the first version holding the lock on a connection of its
// own, idle through the migration: a server closing idle connections freed
// it mid-migration, and the first instance's unlock then failed its start.)
func TestMySQLMigrateLock(t *testing.T) {
	url := testenv.FreshDatabase(t, testenv.URL(t, "SECKILL_TEST_MYSQL"))
	ctx := context.Background()
	db, _, err := openMySQL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c1, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	var l mysqlMigrateLock
	if err := l.SessionLock(ctx, c1); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := l.SessionLock(lctx, c2); err == nil {
		t.Fatal("a second instance took the migration lock while the first held it")
	}
	if err := l.SessionUnlock(ctx, c1); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	c3, err := db.Conn(ctx) // c2 may be spent by its cancelled wait
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := l.SessionLock(ctx, c3); err != nil {
		t.Fatalf("the lock after the first let go: %v", err)
	}
	if err := l.SessionUnlock(ctx, c3); err != nil {
		t.Fatal(err)
	}
}
