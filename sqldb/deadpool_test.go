package sqldb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"seckill"
)

// TestPostgresPoolOfKilledSessions: the server ends every session of a
// pool that was busy a moment ago (pg_terminate_backend), and comes back
// at once. The pool still holds its connections, each of which fails the
// statement it runs next; database/sql checks a connection it hands out
// only when it sat idle over a second (pgx's ResetSession). A read tried
// 3 connections and a transaction 5, fewer than the pool holds (8 or
// more), so one request alone, with the server up, was answered busy:
// every attempt met a dead connection.
func TestPostgresPoolOfKilledSessions(t *testing.T) {
	db, kill := killablePostgres(t)
	ctx := context.Background()
	now := time.Now()
	sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 10, StartsAt: now, EndsAt: now.Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))

	for round, call := range []struct {
		name string
		f    func() error
	}{
		{"Sale", func() error { _, err := db.Sale(ctx, sale.ID); return err }},
		{"CreateUser", func() error { return db.CreateUser(ctx, makeUsers(100, 1)[0]) }},
	} {
		// Fill the pool: many readers at once, each a snapshot (two
		// statements in a transaction), so the pool opens every
		// connection it may.
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for range 5 {
					if _, _, err := db.SaleSnapshot(ctx, sale.ID); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		killed := kill(t)
		time.Sleep(100 * time.Millisecond) // the sessions are gone; the server is up
		err := call.f()
		t.Logf("round %d: %d sessions killed; %s: %v", round, killed, call.name, err)
		if err != nil {
			t.Errorf("%s with the server up, after it ended the pool's %d sessions: %v (code %s)", call.name, killed, err, seckill.ErrorCode(err))
		}
	}
}
