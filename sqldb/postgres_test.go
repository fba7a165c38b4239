package sqldb_test

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"seckill/sqldb"
)

// freshPostgres returns a URL of the server in SECKILL_TEST_POSTGRES whose
// search_path is a new schema, dropped at the end of the test.
func freshPostgres(t testing.TB) string {
	t.Helper()
	base := serverURL(t, "SECKILL_TEST_POSTGRES")
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	schema := testName()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("SECKILL_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// killablePostgres opens a fresh PostgreSQL store whose sessions carry a
// name of their own, and returns it with a killer that ends them all
// (pg_terminate_backend) and says how many it ended.
func killablePostgres(t *testing.T) (*sqldb.DB, killer) {
	u, err := url.Parse(freshPostgres(t))
	mustOK(t, err)
	name := testName()
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	db := openAt(t, u.String())
	admin, err := sql.Open("pgx", serverURL(t, "SECKILL_TEST_POSTGRES"))
	mustOK(t, err)
	t.Cleanup(func() { admin.Close() })
	return db, func(t *testing.T) int {
		var n int
		mustOK(t, admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&n))
		return n
	}
}

func TestPostgres(t *testing.T) {
	serverURL(t, "SECKILL_TEST_POSTGRES")
	testEngine(t, freshPostgres)
	t.Run("SessionsKilled", func(t *testing.T) {
		db, kill := killablePostgres(t)
		testSessionsKilled(t, db, kill)
	})
	t.Run("Unreachable", func(t *testing.T) { testUnreachable(t, freshPostgres(t)) })
	t.Run("Unresponsive", func(t *testing.T) { testUnresponsive(t, freshPostgres(t), [2]string{"connect_timeout", "1"}) })
	t.Run("Frozen", func(t *testing.T) { testFrozen(t, freshPostgres(t)) })
	t.Run("BoundBeforeCommit", func(t *testing.T) { testBoundBeforeCommit(t, freshPostgres(t)) })
	t.Run("OpenTogether", func(t *testing.T) { testOpenTogether(t, freshPostgres) })
	t.Run("Engine", func(t *testing.T) {
		db := openFresh(t, freshPostgres)
		if got := db.Engine(); got != "postgres" {
			t.Errorf("Engine() = %q, want postgres", got)
		}
		if err := db.Ping(context.Background()); err != nil {
			t.Error(err)
		}
	})
	t.Run("PostgresqlScheme", func(t *testing.T) {
		u := freshPostgres(t)
		openAt(t, "postgresql"+strings.TrimPrefix(u, "postgres"))
	})
	// Migration 5 builds the sessions' expiry index CONCURRENTLY, outside
	// a transaction: it must exist and be valid once Open returns.
	t.Run("SessionsExpiryIndex", func(t *testing.T) {
		u := freshPostgres(t)
		openAt(t, u)
		pg, err := sql.Open("pgx", u)
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close()
		ctx := context.Background()
		var def string
		err = pg.QueryRowContext(ctx, `SELECT pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relname = 'sessions_expires' AND n.nspname = current_schema() AND i.indisvalid`).Scan(&def)
		if err != nil || !strings.Contains(def, "(expires_at)") {
			t.Fatalf("valid index sessions_expires after Open: %q, %v", def, err)
		}
	})
}
