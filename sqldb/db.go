// Package sqldb keeps users, sessions, sales, orders and the stock ledger in
// a SQL database through database/sql. It implements seckill.UserStore,
// seckill.SessionStore, seckill.SaleStore and seckill.OrderStore.
//
// One DB type serves every engine; what differs between engines (the SQL
// text, the driver's DSN, the migrations) sits behind a small dialect value,
// one file per engine (sqlite.go). The shared code holds the logic and the
// scanning, never an engine's SQL.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/pressly/goose/v3"

	"seckill"
)

var (
	_ seckill.UserStore    = (*DB)(nil)
	_ seckill.SessionStore = (*DB)(nil)
	_ seckill.SaleStore    = (*DB)(nil)
	_ seckill.OrderStore   = (*DB)(nil)
)

// DB is a connection to one SQL database. It is safe for concurrent use.
type DB struct {
	// write runs every transaction that changes data; read serves queries.
	// They are the same pool on engines with row locking. SQLite allows one
	// writer at a time, so there write is a pool of one connection: writers
	// queue in Go (honouring their contexts) instead of spinning on
	// SQLITE_BUSY, and read is a separate pool that WAL lets run alongside.
	write *sql.DB
	read  *sql.DB
	d     *dialect
	now   func() time.Time

	// stmts holds the hot statements prepared on the write pool, by SQL
	// text; it is not changed after Open. Parsing a 500-row INSERT costs
	// about as much as running it.
	stmts map[string]*sql.Stmt
}

// dialect is what one engine needs beyond database/sql: how to open it, its
// migrations and its SQL. Statements whose text depends on a row count are
// functions of that count.
type dialect struct {
	name       string
	goose      goose.Dialect
	migrations fs.FS
	// maxParams is the most bind parameters one statement may carry.
	maxParams int
	// open returns the write and read pools for the part of the URL after
	// the scheme.
	open func(ctx context.Context, path string) (write, read *sql.DB, err error)
	q    queries
}

// queries is the SQL of one engine. Parameters are listed next to each
// statement that is not obvious; times are unix milliseconds.
type queries struct {
	createUser  string // phone, password_hash, nickname, role, created_at → id; no row if the phone is taken
	createUsers func(n int) string
	updateUser  string
	userByID    string
	userByPhone string

	createSession string
	session       string // token_hash, now
	touchSession  string // expires_at, token_hash, now
	deleteSession string

	createSale   string
	sale         string
	sales        string
	saleStats    string
	initialStock string             // sale_id, stock, created_at: the ledger row of a new sale
	orderLedger  func(n int) string // n rows of sale_id, order_id, created_at: -1 for an order

	stockLeft   func(n int) string // id, stock_left of n sale ids
	insertOrder func(n int) string // n rows of sale_id, user_id, order_no, price_cents, created_at, pay_deadline → id, sale_id, user_id of those inserted
	orderIDs    func(n int) string // sale_id, then n user ids → id, user_id
	takeStock   string             // n, sale id, n: only where stock_left >= n
	order       string
	orderBySU   string
	ordersBy    string
	saleBuyers  string
}

// dialects maps URL schemes to engines.
var dialects = map[string]*dialect{
	"sqlite": &sqlite,
	"file":   &sqlite,
}

// Open connects to the database at url and brings its schema up to date.
//
// Accepted URLs:
//
//	sqlite:PATH, sqlite://PATH, file:PATH   a SQLite file, created if missing
//
// An unknown scheme or a malformed URL is an error, as is a database whose
// migrations fail.
func Open(ctx context.Context, url string) (*DB, error) {
	scheme, rest, ok := strings.Cut(url, ":")
	d := dialects[scheme]
	if !ok || d == nil {
		return nil, fmt.Errorf("sqldb: unsupported database URL %q: want sqlite:PATH", redact(url))
	}
	// "sqlite://x" and "sqlite:x" name the same file, as do
	// "file:///tmp/x" and "file:/tmp/x".
	rest = strings.TrimPrefix(rest, "//")
	write, read, err := d.open(ctx, rest)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open %s: %w", d.name, err)
	}
	db := &DB{write: write, read: read, d: d, now: time.Now, stmts: map[string]*sql.Stmt{}}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.prepareHot(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// redact hides a password in a URL before it goes into an error message.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	auth, host, ok := strings.Cut(rest, "@")
	if !ok {
		return url
	}
	if user, _, ok := strings.Cut(auth, ":"); ok {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return url
}

// migrate applies the engine's pending migrations. It is a no-op on an
// up-to-date database.
func (db *DB) migrate(ctx context.Context) error {
	p, err := goose.NewProvider(db.d.goose, db.write, db.d.migrations)
	if err != nil {
		return fmt.Errorf("sqldb: migrations: %w", err)
	}
	// Not p.Close: it would close db.write.
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqldb: migrate: %w", err)
	}
	return nil
}

// Close closes the database. Committed transactions are durable.
func (db *DB) Close() error {
	for _, st := range db.stmts {
		st.Close()
	}
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("sqldb: ping: %w", err)
	}
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqldb: ping: %w", err)
	}
	return nil
}

// Engine names the database engine: "sqlite".
func (db *DB) Engine() string { return db.d.name }

// inTx runs fn in a write transaction and commits it if fn returns nil.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// prepareHot prepares the statements of the order writer's hot path on
// the write pool, once: every row count chunkSizes can produce. (Preparing
// later, inside a transaction, would wait for the write pool's only
// connection, which that transaction holds.)
func (db *DB) prepareHot(ctx context.Context) error {
	q := db.d.q
	hot := []string{q.takeStock}
	for size := 1; size <= maxChunk; size *= 2 {
		hot = append(hot, q.stockLeft(size), q.insertOrder(size), q.orderLedger(size))
	}
	for _, query := range hot {
		st, err := db.write.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("sqldb: prepare: %w", err)
		}
		db.stmts[query] = st
	}
	return nil
}

// txQuery runs query in tx, as a prepared statement if it is a hot one.
func (db *DB) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := db.stmts[query]; st != nil {
		// On the write pool's one connection this reuses the statement.
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// txExec runs query in tx, as a prepared statement if it is a hot one.
func (db *DB) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := db.stmts[query]; st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// maxChunk is the most rows one hot statement carries.
const maxChunk = 512

// chunkSizes splits n rows into chunks of at most limit (and maxChunk)
// rows, each a power of two, largest first, so that statements built for a
// row count come in the few shapes prepareHot prepared.
func chunkSizes(n, limit int) []int {
	top := 1
	for top*2 <= min(limit, maxChunk) {
		top *= 2
	}
	var sizes []int
	for size := top; n > 0; size /= 2 {
		for n >= size {
			sizes = append(sizes, size)
			n -= size
		}
	}
	return sizes
}
