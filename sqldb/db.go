// Package sqldb keeps users, sessions, sales, orders and the stock ledger in
// a SQL database through database/sql. It implements seckill.UserStore,
// seckill.SessionStore, seckill.SaleStore and seckill.OrderStore.
//
// One DB type serves every engine; what differs between engines (the SQL
// text, the driver's DSN, the migrations) sits behind a small dialect value,
// one file per engine (sqlite.go, postgres.go, mysql.go). The shared code
// holds the logic and the scanning, never an engine's SQL: the store
// methods by table (users.go, sessions.go, sales.go, orders.go) over the
// helpers they share, in query.go (transactions, hot statements, one row
// or ENotFound, all rows), bulk.go (chunking of VALUES and IN lists) and
// scan.go (column lists, times, rows into types).
package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/pressly/goose/v3"

	"seckill"
	"seckill/internal/redact"
)

var (
	_ seckill.UserStore      = (*DB)(nil)
	_ seckill.SessionStore   = (*DB)(nil)
	_ seckill.SessionRevoker = (*DB)(nil)
	_ seckill.SaleStore      = (*DB)(nil)
	_ seckill.OrderStore     = (*DB)(nil)
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

	stopBackground func() // the dialect's background work; nil if none

	sessionBatch int // sessions DeleteExpiredSessions deletes per transaction

	timeout time.Duration // bounds each operation on a server engine (see bound); 0: none
}

// dialect is what one engine needs beyond database/sql: how to open it, its
// migrations and its SQL. Statements whose text depends on a row count are
// functions of that count.
type dialect struct {
	name       string
	goose      goose.Dialect
	migrations fs.FS
	// migrateOpts guard the migrations against other processes running
	// them at the same time, where the engine offers a lock.
	migrateOpts func() ([]goose.ProviderOption, error)
	// maxParams is the most bind parameters one statement may carry.
	maxParams int
	// prepare says to prepare the hot statements at Open and to cut bulk
	// statements into power-of-two row counts, so that few shapes exist.
	// Engines whose driver caches statements itself, or interpolates
	// parameters, leave it false and send any row count in one statement.
	prepare bool
	// arrays says bulk statements take one array per column (a `same`
	// column as one scalar) instead of rows of parameters, and IN lists
	// one array: one statement text for any row count.
	arrays bool
	// returning says INSERT … RETURNING works. Without it, one-row inserts
	// read LastInsertId, bulk inserts read their ids back with a SELECT,
	// and WriteOrders looks up existing orders before inserting.
	returning bool
	// seqIDs says the rows one INSERT adds get consecutive ids after the
	// largest, in VALUES order, so insertOrder has no RETURNING and the
	// ids come from RowsAffected and LastInsertId (see insertOrdersSeq).
	seqIDs bool
	// background, if set, runs beside the pools until stop is called (and
	// has returned): the engine's housekeeping (SQLite's checkpoints).
	background func(db *DB) (stop func())
	// insertFirst says WriteOrders inserts the orders before it locks the
	// sales (placeOrders, which needs returning, row locks and the
	// takeStocks and deleteOrders queries) instead of after (writeOrders).
	insertFirst bool
	// timeMS stores times as unix milliseconds; otherwise as a time.Time
	// in UTC at millisecond precision.
	timeMS bool
	// txOptions are those of every write transaction.
	txOptions *sql.TxOptions
	// snapshot are the options of a read-only transaction whose reads
	// all see one snapshot of the database (SaleSnapshot).
	snapshot *sql.TxOptions
	// retryable tells whether err aborted a transaction that a plain retry
	// may get through: a serialization failure, a deadlock, a lock wait
	// timeout. Nil when the engine has none.
	retryable func(err error) bool
	// lost tells whether err is the engine's way of saying the session
	// was ended or refused by the server (see DB.lost, which also knows
	// the network's and database/sql's). Nil for an engine in the process.
	lost func(err error) bool
	// duplicate tells whether err is a unique-key violation; only used
	// where returning is false (elsewhere ON CONFLICT DO NOTHING says it).
	duplicate func(err error) bool
	// open returns the write and read pools for url.
	open func(ctx context.Context, url string) (write, read *sql.DB, err error)
	q    queries
}

// queries is the SQL of one engine. Parameters are listed next to each
// statement that is not obvious; n rows of a bulk statement are n rows of
// parameters, or one array per column (see dialect.arrays).
type queries struct {
	createUser  string             // phone, password_hash, nickname, role, created_at → id; no row if the phone is taken
	createUsers func(n int) string // n rows of phone, password_hash, nickname, role, created_at → id, phone (without returning: no rows)
	userIDs     func(n int) string // n phones → id, phone (only without returning)
	updateUser  string
	userByID    string
	userByPhone string

	createSession      string
	session            string // token_hash, now
	touchSession       string // expires_at, token_hash, now
	deleteSession      string
	userSessions       string
	deleteUserSessions string
	deleteExpired      string // expires_at at or before, batch size: at most that many expired sessions

	createSale string
	sale       string
	sales      string
	saleStats  string
	saleLeft   string // id → stock_left
	endSale    string // at, at, id, at: ends the sale at at unless it ended by then
	ledgerRow  string // sale_id, delta, reason, created_at

	stockLeft   func(n int) string // id, stock_left of n sale ids, locked against other writers until the transaction ends
	insertOrder func(n int) string // n rows of sale_id, user_id, order_no, price_cents, created_at, pay_deadline → id, sale_id, user_id of those inserted (without returning: no rows, and conflicts are errors)
	orderIDs    func(n int) string // sale_id, then n user ids → id, user_id
	takeStock   string             // n, sale id, n: only where stock_left >= n
	maxOrderID  string             // → the largest order id, 0 if none (only where seqIDs is set)
	// Only where insertFirst is set:
	takeStocks   string // array of sale ids, array of counts, created_at: takeStock and its ledger row for each sale, one row affected per sale that had the units
	deleteOrders string // array of order ids
	order        string
	orderBySU    string
	ordersBy     string
	saleBuyers   string

	// The reconciler's verdicts (fence.go). FenceTicket holds the sale
	// with stockLeft(1) and asks orderIDs(1) for the pair's order.
	ticketFenced  string // ticket → 1 if it is recorded
	fenceTicket   string // ticket, sale_id, user_id, released_at; nothing if the ticket is fenced already
	fencedTickets string // sale_id → ticket (an index lookup: WriteOrders runs it for every sale of every batch)
}

// dialects maps URL schemes to engines.
var dialects = map[string]*dialect{
	"sqlite":     &sqlite,
	"file":       &sqlite,
	"postgres":   &postgres,
	"postgresql": &postgres,
	"mysql":      &mysql,
}

// Open connects to the database at url and brings its schema up to date.
//
// Accepted URLs:
//
//	sqlite:PATH, sqlite://PATH, file:PATH   a SQLite file, created if missing
//	postgres://user:pass@host:port/db?…     PostgreSQL (postgresql:// too); the
//	                                        query takes libpq/pgx parameters
//	                                        such as sslmode and search_path
//	mysql://user:pass@host:port/db?…        MySQL 8.0.16+ or MariaDB 10.5+; the
//	                                        query takes go-sql-driver/mysql
//	                                        parameters, plus socket=PATH for a
//	                                        Unix socket
//
// An unknown scheme or a malformed URL is an error, as is a database whose
// migrations fail. Errors never show the URL's password.
func Open(ctx context.Context, url string) (*DB, error) {
	scheme, _, ok := strings.Cut(url, ":")
	d := dialects[scheme]
	if !ok || d == nil {
		return nil, fmt.Errorf("sqldb: unsupported database URL %q: want sqlite:PATH, postgres://… or mysql://…", redact.URL(url))
	}
	write, read, err := d.open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open %s: %w", d.name, redact.Error(err, url))
	}
	db := &DB{write: write, read: read, d: d, now: time.Now, stmts: map[string]*sql.Stmt{},
		sessionBatch: sessionDeleteBatch, timeout: DefaultTimeout}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, redact.Error(err, url)
	}
	if err := db.prepareHot(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if d.background != nil {
		db.stopBackground = d.background(db)
	}
	return db, nil
}

// migrate applies the engine's pending migrations. It is a no-op on an
// up-to-date database.
func (db *DB) migrate(ctx context.Context) error {
	var opts []goose.ProviderOption
	if db.d.migrateOpts != nil {
		var err error
		if opts, err = db.d.migrateOpts(); err != nil {
			return fmt.Errorf("sqldb: migrations: %w", err)
		}
	}
	p, err := goose.NewProvider(db.d.goose, db.write, db.d.migrations, opts...)
	if err != nil {
		return fmt.Errorf("sqldb: migrations: %w", err)
	}
	// Not p.Close: it would close db.write.
	for try := 1; ; try++ {
		_, err := p.Up(ctx)
		// goose looks for pending migrations before it takes the lock, and
		// on MySQL the version table's creation and its first row are two
		// commits: an instance starting together with the first one can
		// find the table without its row. The first one's row is a moment
		// away.
		if err != nil && strings.Contains(err.Error(), "missing zero version migration") && try < 10 {
			select {
			case <-time.After(500 * time.Millisecond):
				continue
			case <-ctx.Done():
			}
		}
		if err != nil {
			return fmt.Errorf("sqldb: migrate: %w", err)
		}
		return nil
	}
}

// DefaultTimeout is how long an operation of a DB on a server engine may
// take before the database counts as away (see SetTimeout).
const DefaultTimeout = 5 * time.Second

// SetTimeout bounds each operation of db on PostgreSQL or MySQL (a read,
// with its retries; a write transaction, commit included) by d, 0 for no
// bound. Past it the operation fails with the busy error, as if the
// database were away: a server that stops answering mid-statement (frozen,
// or its packets dropped) would otherwise hold every request that reaches
// it until it answers again. The driver closes the connection it gave up
// on. The longest operation of a large sale, its stats, took well under
// the default (see RELIABILITY.md). SQLite has no bound: it runs in the
// process, and a writer waiting its turn behind a crowd of writers is
// slow, not away. Migrations at Open are not bounded either. Call
// SetTimeout before db is in use.
func (db *DB) SetTimeout(d time.Duration) { db.timeout = d }

// bound returns ctx with db's operation timeout, where there is one (see
// SetTimeout). The end of the bound while ctx lives is a lost database
// (see lost and connectTimedOut), not the caller giving up.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if db.timeout <= 0 || db.d.lost == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, db.timeout)
}

// Close closes the database. Committed transactions are durable.
func (db *DB) Close() error {
	if db.stopBackground != nil {
		db.stopBackground()
	}
	for _, st := range db.stmts {
		st.Close()
	}
	err := closed(db.write.Close())
	if db.read != db.write {
		err = errors.Join(err, closed(db.read.Close()))
	}
	return err
}

// closed is the error of closing a pool, less a connection that was
// broken already: it is closed all the same, and nothing was lost. MySQL's
// driver fails its goodbye on a connection whose context watcher is
// closing it (a transaction cut by its bound just before), with its
// unexported errBadConnNoWrite, "bad connection" (seen in CI; a stop of
// serve then exited with that error).
func closed(err error) error {
	if errors.Is(err, driver.ErrBadConn) || err != nil && err.Error() == "bad connection" {
		return nil
	}
	return err
}

// Ping checks that the database answers, within db's timeout (see
// SetTimeout).
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("sqldb: ping: %w", err)
	}
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqldb: ping: %w", err)
	}
	return nil
}

// Engine names the database engine: "sqlite", "postgres" or "mysql".
func (db *DB) Engine() string { return db.d.name }

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
