package sqldb_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// freshMySQL returns a URL of the server in SECKILL_TEST_MYSQL
// (mysql://user:pass@host:port/db) naming a new database, dropped at the
// end of the test.
func freshMySQL(t testing.TB) string {
	t.Helper()
	admin, u := mysqlAdmin(t)
	name := testName()
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// mysqlAdmin returns a pool on the server in SECKILL_TEST_MYSQL, closed at
// the end of the test, and the server's URL.
func mysqlAdmin(t testing.TB) (*sql.DB, *url.URL) {
	t.Helper()
	base := serverURL(t, "SECKILL_TEST_MYSQL")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("SECKILL_TEST_MYSQL: %v", err)
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = "tcp", u.Host
	if u.Port() == "" {
		cfg.Addr += ":3306"
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin := sql.OpenDB(conn)
	t.Cleanup(func() { admin.Close() })
	return admin, u
}

func TestMySQL(t *testing.T) {
	serverURL(t, "SECKILL_TEST_MYSQL")
	testEngine(t, freshMySQL)
	t.Run("SessionsKilled", func(t *testing.T) {
		fresh := freshMySQL(t)
		db := openAt(t, fresh)
		admin, _ := mysqlAdmin(t)
		u, err := url.Parse(fresh)
		mustOK(t, err)
		name := strings.TrimPrefix(u.Path, "/")
		testSessionsKilled(t, db, func(t *testing.T) int {
			ids, err := admin.Query(`SELECT id FROM information_schema.processlist WHERE db = ?`, name)
			mustOK(t, err)
			var kill []int64
			for ids.Next() {
				var id int64
				mustOK(t, ids.Scan(&id))
				kill = append(kill, id)
			}
			mustOK(t, ids.Err())
			n := 0
			for _, id := range kill {
				if _, err := admin.Exec(fmt.Sprintf("KILL CONNECTION %d", id)); err == nil {
					n++
				}
			}
			return n
		})
	})
	t.Run("Unreachable", func(t *testing.T) { testUnreachable(t, freshMySQL(t)) })
	t.Run("Unresponsive", func(t *testing.T) { testUnresponsive(t, freshMySQL(t), [2]string{"timeout", "1s"}) })
	t.Run("Frozen", func(t *testing.T) { testFrozen(t, freshMySQL(t)) })
	t.Run("BoundBeforeCommit", func(t *testing.T) { testBoundBeforeCommit(t, freshMySQL(t)) })
	t.Run("OpenTogether", func(t *testing.T) { testOpenTogether(t, freshMySQL) })
	t.Run("Engine", func(t *testing.T) {
		db := openFresh(t, freshMySQL)
		if got := db.Engine(); got != "mysql" {
			t.Errorf("Engine() = %q, want mysql", got)
		}
		if err := db.Ping(context.Background()); err != nil {
			t.Error(err)
		}
	})
}
