package sqldb_test

import (
	"testing"

	"seckill/internal/contract"
)

func testLifecycle(t *testing.T, fresh freshURL) {
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
