package sqldb

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"seckill"
)

// TestLost: which errors say the database is away (answered busy, and a
// read or an uncommitted transaction runs again) and which do not.
func TestLost(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	noHost := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "db.invalid", IsNotFound: true}}
	for _, c := range []struct {
		name  string
		d     *dialect
		err   error
		want  bool
		ended bool // the caller's context has ended
	}{
		{"refused", &postgres, fmt.Errorf("sale 1: %w", refused), true, false},
		{"reset", &mysql, fmt.Errorf("x: %w", syscall.ECONNRESET), true, false},
		{"unexpected EOF", &postgres, fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true, false},
		{"terminated", &postgres, &pgconn.PgError{Code: "57P01"}, true, false},
		{"starting up", &postgres, &pgconn.PgError{Code: "57P03"}, true, false},
		{"too many connections", &postgres, &pgconn.PgError{Code: "53300"}, true, false},
		{"connection failure", &postgres, &pgconn.PgError{Code: "08006"}, true, false},
		{"protocol violation", &postgres, &pgconn.PgError{Code: "08P01"}, false, false},
		{"bad password", &postgres, &pgconn.PgError{Code: "28P01"}, false, false},
		{"unique violation", &postgres, &pgconn.PgError{Code: "23505"}, false, false},
		{"conn closed", &postgres, fmt.Errorf("x: %w", pgconn.ErrConnClosed), true, false},
		{"killed (MariaDB)", &mysql, &driver.MySQLError{Number: 1927}, true, false},
		{"server shutdown", &mysql, &driver.MySQLError{Number: 1053}, true, false},
		{"invalid connection", &mysql, fmt.Errorf("x: %w", driver.ErrInvalidConn), true, false},
		{"duplicate key", &mysql, &driver.MySQLError{Number: 1062}, false, false},
		{"host not found", &postgres, fmt.Errorf("connect: %w", noHost), false, false},
		{"unknown authority", &postgres, fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), false, false},
		{"cancelled", &postgres, fmt.Errorf("x: %w", &net.OpError{Op: "read", Err: context.Canceled}), false, true},
		{"deadline", &mysql, fmt.Errorf("x: %w", context.DeadlineExceeded), false, true},
		// pgx's connect_timeout on a server that accepts and never answers:
		// the driver's deadline, not the caller's.
		{"connect timeout", &postgres, fmt.Errorf("failed to connect: failed to receive message: timeout: %w", context.DeadlineExceeded), true, false},
		{"plain", &sqlite, errors.New("constraint failed"), false, false},
	} {
		db := &DB{d: c.d}
		ctx, cancel := context.WithCancel(context.Background())
		if c.ended {
			cancel()
		}
		if got := db.lost(ctx, c.err); got != c.want {
			t.Errorf("%s: lost(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
		if code := seckill.ErrorCode(db.away(ctx, c.err)); (code == seckill.EBusy) != c.want {
			t.Errorf("%s: away gives code %q", c.name, code)
		}
		cancel()
	}
}

// TestConnectTimeout: a server URL without its own connect timeout gets
// connectTimeout; one with it keeps it.
func TestConnectTimeout(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p%40ss@h:5432/db?sslmode=disable":                     "postgres://u:p%40ss@h:5432/db?connect_timeout=5&sslmode=disable",
		"postgresql://h/db?connect_timeout=1":                               "postgresql://h/db?connect_timeout=1",
		"postgres://h/db?search_path=s&application_name=a&connect_timeout=": "postgres://h/db?search_path=s&application_name=a&connect_timeout=",
	} {
		if got := withConnectTimeout(in); got != want {
			t.Errorf("withConnectTimeout(%q) = %q, want %q", in, got, want)
		}
	}
	for url, want := range map[string]time.Duration{
		"mysql://root@127.0.0.1:3306/test":            connectTimeout,
		"mysql://root@127.0.0.1:3306/test?timeout=2s": 2 * time.Second,
	} {
		cfg, err := mysqlConfig(url)
		if err != nil || cfg.Timeout != want {
			t.Errorf("mysqlConfig(%q): timeout %v, %v; want %v", url, cfg.Timeout, err, want)
		}
	}
}

// TestBound: an operation on a server engine runs under the store's
// timeout; on SQLite, or with the timeout 0, under the caller's context
// alone (a writer queued behind a crowd of SQLite writers is slow, not
// away).
func TestBound(t *testing.T) {
	for _, c := range []struct {
		name    string
		d       *dialect
		timeout time.Duration
		bounded bool
	}{
		{"postgres", &postgres, DefaultTimeout, true},
		{"mysql", &mysql, DefaultTimeout, true},
		{"postgres, no bound", &postgres, 0, false},
		{"sqlite", &sqlite, DefaultTimeout, false},
	} {
		db := &DB{d: c.d, timeout: c.timeout}
		ctx, cancel := db.bound(context.Background())
		deadline, ok := ctx.Deadline()
		cancel()
		if ok != c.bounded || ok && time.Until(deadline) > c.timeout {
			t.Errorf("%s: deadline %v (%v), want bounded %v by %v", c.name, deadline, ok, c.bounded, c.timeout)
		}
	}
}
