package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"seckill"
	"seckill/sqldb"
)

// frozenBound is the store's timeout in testFrozen: short, so the test is
// quick; the calls are given 3 times as long.
const frozenBound = time.Second

// testFrozen: a server that stops answering mid-statement (SIGSTOP, a
// partition that drops packets: here a proxy that holds every byte) held
// every call that reached it, on an idle pooled connection, in flight, or
// in a commit, for as long as it was frozen: there was no deadline but the
// caller's (found by review). With the store's timeout each is busy once
// it passes, a caller's own end stays its own, and once the server answers
// again the same store works, none of its connections left stuck.
func testFrozen(t *testing.T, serverURL string) {
	ctx := context.Background()
	db, p := openProxied(t, serverURL)
	db.SetTimeout(frozenBound)
	now := time.Now()
	sale, _, reqs := saleWithBuyers(t, db, 5000, 2000, now)
	readAll(t, db, sale.ID) // idle connections in the pool

	// busyInTime runs call with a caller that would wait far longer than
	// the bound and wants it busy within 3 times the bound.
	busyInTime := func(name string, call func(ctx context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 10*frozenBound)
		defer cancel()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- call(cctx) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(12 * frozenBound): // a call deaf to its context
			t.Errorf("%s with the database frozen: no answer after %v", name, 12*frozenBound)
			return
		}
		took := time.Since(start)
		t.Logf("%s frozen: %v after %v", name, err, took.Round(time.Millisecond))
		switch {
		case seckill.ErrorCode(err) != seckill.EBusy:
			t.Errorf("%s with the database frozen: %v (code %q) after %v, want busy", name, err, seckill.ErrorCode(err), took)
		case took > 3*frozenBound:
			t.Errorf("%s with the database frozen: busy after %v, want about the bound (%v)", name, took, frozenBound)
		}
	}

	// The writer's batch, frozen in flight (or, if it is quicker, on
	// its commit): busy, its outcome unknown.
	written := make(chan error, 1)
	go func() {
		_, err := db.WriteOrders(ctx, reqs, now.Add(time.Hour))
		written <- err
	}()
	time.Sleep(5 * time.Millisecond)
	p.stall(true)
	busyInTime("WriteOrders", func(ctx context.Context) error {
		select {
		case err := <-written:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	busyInTime("Sale", func(ctx context.Context) error { _, err := db.Sale(ctx, sale.ID); return err })
	busyInTime("SaleStats", func(ctx context.Context) error { _, err := db.SaleStats(ctx, sale.ID); return err })
	busyInTime("CreateUser", func(ctx context.Context) error { return db.CreateUser(ctx, makeUsers(9000, 1)[0]) })
	busyInTime("Ping", func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return &seckill.Error{Code: seckill.EBusy, Message: err.Error()} // Ping is not classified
		}
		return nil
	})

	// The caller's own end is its own, not the database's.
	for _, c := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, frozenBound/4) }, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(frozenBound/4, cancel)
			return cctx, cancel
		}, context.Canceled},
	} {
		cctx, cancel := c.ctx()
		_, err := db.Sale(cctx, sale.ID)
		werr := db.CreateUser(cctx, makeUsers(9001, 1)[0])
		cancel()
		for _, err := range []error{err, werr} {
			if !errors.Is(err, c.want) || seckill.ErrorCode(err) == seckill.EBusy {
				t.Errorf("caller's %s with the database frozen: %v (code %q), want %v", c.name, err, seckill.ErrorCode(err), c.want)
			}
		}
	}
	p.stall(false)

	// A commit that the server stops answering.
	busyInTime("commit", func(ctx context.Context) error {
		return db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE sales SET name = 'committed'`); err != nil {
				return err
			}
			p.stall(true)
			return nil
		})
	})
	p.stall(false)

	// The same store works again, on every connection of its pool; the
	// batch, redelivered, is written once (its first commit's outcome was
	// unknown).
	start := time.Now()
	readAll(t, db, sale.ID)
	res, err := db.WriteOrders(ctx, reqs, now.Add(time.Hour))
	mustOK(t, err)
	t.Logf("back %v after the thaw", time.Since(start).Round(time.Millisecond))
	for i, r := range res {
		if r.Status != seckill.ResultSuccess {
			t.Fatalf("redelivered request %d: %+v", i, r)
		}
	}
	st, err := db.SaleStats(ctx, sale.ID)
	mustOK(t, err)
	if st.Orders != int64(len(reqs)) || st.SQLStockLeft != sale.Stock-int64(len(reqs)) || st.LedgerSum != st.SQLStockLeft {
		t.Errorf("after the thaw: %+v, want %d orders", st, len(reqs))
	}
}

// readAll reads at once on more connections than the pool holds, and
// wants every read answered: none may be stuck on a connection to a
// server that stopped answering once.
func readAll(t *testing.T, db *sqldb.DB, saleID int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range cap(errs) {
		wg.Go(func() {
			if _, err := db.SaleStats(context.Background(), saleID); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("read with the database up: %v", err)
	}
}

// testBoundBeforeCommit: a transaction whose bound (the store's timeout)
// ends before its commit is rolled back by database/sql, and its commit
// fails "transaction has already been committed or rolled back": that was
// taken for a commit of unknown outcome and answered 500 (seen in CI,
// a payment's notification under load). It is busy: not committed.
func testBoundBeforeCommit(t *testing.T, serverURL string) {
	db := openAt(t, serverURL)
	db.SetTimeout(200 * time.Millisecond)
	err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		if _, err := tx.Exec(`UPDATE sales SET name = 'never'`); err != nil {
			return err
		}
		time.Sleep(400 * time.Millisecond) // the bound ends: database/sql rolls back
		return nil
	})
	if seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("a transaction past its bound before its commit: %v (code %q), want busy", err, seckill.ErrorCode(err))
	}
}
