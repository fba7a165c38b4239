package sqldb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"seckill/internal/contract"
)

func testLifecycle(t *testing.T, fresh freshURL) {
	t.Run("Plans", func(t *testing.T) { testLifecyclePlans(t, fresh) })
	t.Run("Clock", func(t *testing.T) { testClock(t, fresh) })
	t.Run("MigrateRefund", func(t *testing.T) { testMigrateRefund(t, fresh) })
	t.Run("MigratePayOpened", func(t *testing.T) { testMigratePayOpened(t, fresh) })
	contract.TestLifecycle(t, func(t *testing.T) contract.LifecycleStores {
		db := openFresh(t, fresh)
		return contract.LifecycleStores{
			Stores:    contract.Stores{Users: db, Sessions: db, Sales: db, Orders: db},
			Lifecycle: db,
		}
	})
}

func TestLifecycleSQLite(t *testing.T) { testLifecycle(t, freshSQLite) }

func TestLifecyclePostgres(t *testing.T) {
	serverURL(t, "SECKILL_TEST_POSTGRES")
	testLifecycle(t, freshPostgres)
}

func TestLifecycleMySQL(t *testing.T) {
	serverURL(t, "SECKILL_TEST_MYSQL")
	testLifecycle(t, freshMySQL)
}

// testLifecyclePlans checks that the sweeper's and the outbox's reads go
// through their indexes, not a scan of orders or of the ledger.
func testLifecyclePlans(t *testing.T, fresh freshURL) {
	db := openFresh(t, fresh)
	expired, unapplied, err := db.ExplainLifecycle(context.Background(), time.Now())
	mustOK(t, err)
	if !strings.Contains(expired, "orders_status_deadline") {
		t.Errorf("ExpiredOrders does not use orders_status_deadline:\n%s", expired)
	}
	// The index gives the deadline order: no sort of every expired order.
	for _, sort := range []string{"TEMP B-TREE", "filesort", "Sort "} {
		if strings.Contains(expired, sort) {
			t.Errorf("ExpiredOrders sorts (%s):\n%s", sort, expired)
		}
	}
	if !strings.Contains(unapplied, "stock_ledger_unapplied") {
		t.Errorf("UnappliedReturns does not use stock_ledger_unapplied:\n%s", unapplied)
	}
	t.Logf("ExpiredOrders:\n%sUnappliedReturns:\n%s", expired, unapplied)
}

// testClock checks that Now reads the server's clock: close to this
// process's (same machine), in UTC, moving forward.
func testClock(t *testing.T, fresh freshURL) {
	db := openFresh(t, fresh)
	ctx := context.Background()
	a, err := db.Now(ctx)
	mustOK(t, err)
	if d := time.Since(a); d < -5*time.Second || d > 5*time.Second || a.Location() != time.UTC {
		t.Fatalf("Now = %v, %v off the local clock; want the server's UTC time", a, d)
	}
	time.Sleep(20 * time.Millisecond) // a clock that moves, not a constant
	b, err := db.Now(ctx)
	mustOK(t, err)
	if !b.After(a) {
		t.Fatalf("Now went from %v to %v", a, b)
	}
}
