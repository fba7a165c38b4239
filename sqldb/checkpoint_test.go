package sqldb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"seckill"
)

// TestSQLiteCheckpointsInBackground: the order writer's connection does not
// copy the WAL back into the database file itself at SQLite's default 1,000
// pages (its commits would pay for it); a background checkpoint does, soon
// after the writes, without anyone asking.
func TestSQLiteCheckpointsInBackground(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seckill.db")
	db := openAt(t, "sqlite:"+path)
	var pages int
	if err := db.WritePool().QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if pages <= 1000 {
		t.Fatalf("the writer checkpoints every %d pages itself", pages)
	}
	before := fileSize(t, path)
	const n = 6000 // well over 1,000 pages of WAL
	users := makeUsers(0, n)
	if err := db.CreateUsers(ctx, users); err != nil {
		t.Fatal(err)
	}
	sale := &seckill.Sale{Name: "cp", PriceCents: 1, OriginalPriceCents: 2, Stock: n, StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
	if err := db.CreateSale(ctx, sale); err != nil {
		t.Fatal(err)
	}
	reqs := make([]seckill.OrderRequest, n)
	for i, u := range users {
		reqs[i] = seckill.OrderRequest{SaleID: sale.ID, UserID: u.ID, Ticket: fmt.Sprintf("CP%d", i), PriceCents: 1, At: time.Now()}
	}
	if _, err := db.WriteOrders(ctx, reqs, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fileSize(t, path) < before+int64(n)*100 {
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes 10 s after %d orders (%d before): nothing checkpointed the WAL", fileSize(t, path), n, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestSQLiteReadsSeeWritesAfterCheckpoints: the background checkpoints run
// on the read pool; none may leave a read connection on an old snapshot
// (a statement left unfinished holds its read transaction open).
func TestSQLiteReadsSeeWritesAfterCheckpoints(t *testing.T) {
	ctx := context.Background()
	db := openAt(t, "sqlite:"+filepath.Join(t.TempDir(), "seckill.db"))
	for round := range 3 {
		time.Sleep(600 * time.Millisecond) // a checkpoint or more
		sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 1, StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		if err := db.CreateSale(ctx, sale); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 16 { // at once, so that every read connection serves some
			wg.Go(func() {
				if _, err := db.SaleStats(ctx, sale.ID); err != nil {
					t.Errorf("round %d, read %d: sale %d just created: %v", round, i, sale.ID, err)
				}
			})
		}
		wg.Wait()
	}
}
