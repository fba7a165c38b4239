package testenv

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of the admin connection
)

// Name returns prefix followed by random hex: a name (schema, database,
// key prefix) no other test nor another run uses, valid unquoted in SQL
// and free of glob characters.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// FreshDatabase creates an empty database for one test on the server whose
// URL is base — on PostgreSQL a schema, named by the search_path of the
// URL returned; on MySQL a database, named by its path — and drops it when
// the test ends. It fails the test if the server refuses, or if base is
// neither a postgres(ql):// nor a mysql:// URL.
func FreshDatabase(t testing.TB, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("database URL: %v", err)
	}
	name := Name("t_")
	var driver, dsn, create, drop string
	switch u.Scheme {
	case "postgres", "postgresql":
		driver, dsn = "pgx", base
		create, drop = "CREATE SCHEMA "+name, "DROP SCHEMA "+name+" CASCADE"
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
	case "mysql":
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr = "tcp", u.Host
		if u.Port() == "" {
			cfg.Addr += ":3306"
		}
		if u.User != nil {
			cfg.User = u.User.Username()
			cfg.Passwd, _ = u.User.Password()
		}
		driver, dsn = "mysql", cfg.FormatDSN()
		create, drop = "CREATE DATABASE "+name+" CHARACTER SET utf8mb4", "DROP DATABASE "+name
		u.Path = "/" + name
	default:
		t.Fatalf("no fresh database for a %q URL", u.Scheme)
	}
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the drop, so it runs after it.
	t.Cleanup(func() { _ = admin.Close() })
	if _, err := admin.Exec(create); err != nil {
		t.Fatalf("%s: %v", create, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(drop); err != nil {
			t.Errorf("%s: %v", drop, err)
		}
	})
	return u.String()
}
