package sqldb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers driver "sqlite"

	"seckill/internal/private"
)

//go:embed migrations/sqlite/*.sql
var sqliteFS embed.FS

// sqlite is the SQLite engine (modernc.org/sqlite, pure Go).
var sqlite = dialect{
	name:       "sqlite",
	goose:      goose.DialectSQLite3,
	migrations: mustSub(sqliteFS, "migrations/sqlite"),
	maxParams:  32766, // SQLITE_MAX_VARIABLE_NUMBER since 3.32
	prepare:    true,
	returning:  true,
	seqIDs:     true,
	timeMS:     true,
	// A transaction reads one snapshot from its first read to its end (WAL
	// keeps it for the reader); the driver takes no isolation level, and
	// ReadOnly makes BEGIN a deferred one that takes no write lock.
	snapshot:   &sql.TxOptions{ReadOnly: true},
	open:       openSQLite,
	background: checkpoints,
	q: queries{
		createUser: `INSERT INTO users (phone, password_hash, nickname, role, created_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (phone) DO NOTHING RETURNING id`,
		createUsers: func(n int) string {
			return `INSERT INTO users (phone, password_hash, nickname, role, created_at) VALUES ` +
				rows(n, "(?, ?, ?, ?, ?)") + ` ON CONFLICT (phone) DO NOTHING RETURNING id, phone`
		},
		updateUser:  `UPDATE users SET nickname = ?, role = ?, password_hash = ? WHERE id = ?`,
		userByID:    `SELECT id, phone, password_hash, nickname, role, created_at FROM users WHERE id = ?`,
		userByPhone: `SELECT id, phone, password_hash, nickname, role, created_at FROM users WHERE phone = ?`,

		createSession: `INSERT INTO sessions (token_hash, user_id, role, expires_at, created_at) VALUES (?, ?, ?, ?, ?)`,
		session:       `SELECT token_hash, user_id, role, expires_at FROM sessions WHERE token_hash = ? AND expires_at > ?`,
		// An expired session stays expired: touching it must not log its
		// holder back in.
		touchSession:       `UPDATE sessions SET expires_at = ? WHERE token_hash = ? AND expires_at > ?`,
		deleteSession:      `DELETE FROM sessions WHERE token_hash = ?`,
		userSessions:       `SELECT token_hash FROM sessions WHERE user_id = ?`,
		deleteUserSessions: `DELETE FROM sessions WHERE user_id = ?`,
		deleteExpired:      `DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at <= ? LIMIT ?)`,

		createSale: `INSERT INTO sales (name, description, image_url, price_cents, original_price_cents,
			stock, stock_left, starts_at, ends_at, require_captcha, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		sale:  `SELECT ` + saleColumns + ` FROM sales WHERE id = ?`,
		sales: `SELECT ` + saleColumns + ` FROM sales ORDER BY starts_at, id`,
		// One statement, so every number comes from the same snapshot.
		saleStats: `SELECT s.stock, s.stock_left,
				(SELECT COALESCE(SUM(l.delta), 0) FROM stock_ledger l WHERE l.sale_id = s.id),
				o.total, o.pending, o.paid, o.cancelled, o.refunded
			FROM sales s, (SELECT COUNT(*) AS total,
					COALESCE(SUM(status = 'pending_payment'), 0) AS pending,
					COALESCE(SUM(status = 'paid'), 0) AS paid,
					COALESCE(SUM(status = 'cancelled'), 0) AS cancelled,
					COALESCE(SUM(status = 'refunded'), 0) AS refunded
				FROM orders WHERE sale_id = ?) o
			WHERE s.id = ?`,
		saleLeft:  `SELECT stock_left FROM sales WHERE id = ?`,
		endSale:   `UPDATE sales SET starts_at = MIN(starts_at, ?), ends_at = ? WHERE id = ? AND ends_at > ?`, // times are unix ms: scalar MIN compares them
		ledgerRow: `INSERT INTO stock_ledger (sale_id, delta, reason, created_at) VALUES (?, ?, ?, ?)`,

		// No row locks: the write transaction holds the database's only
		// write lock from BEGIN (IMMEDIATE).
		stockLeft: func(n int) string {
			return `SELECT id, stock_left FROM sales WHERE id IN (` + params(n) + `)`
		},
		// Conflicts on (sale_id, user_id) are skipped, not errors: they are
		// redeliveries of orders already written. No RETURNING: the rows
		// inserted get consecutive rowids after the largest (seqIDs).
		insertOrder: func(n int) string {
			return `INSERT INTO orders (sale_id, user_id, order_no, price_cents, created_at, pay_deadline, status) VALUES ` +
				rows(n, "(?, ?, ?, ?, ?, ?, 'pending_payment')") +
				` ON CONFLICT (sale_id, user_id) DO NOTHING`
		},
		maxOrderID: `SELECT COALESCE(MAX(id), 0) FROM orders`,
		orderIDs: func(n int) string {
			return `SELECT id, user_id FROM orders WHERE sale_id = ? AND user_id IN (` + params(n) + `)`
		},
		takeStock:     `UPDATE sales SET stock_left = stock_left - ? WHERE id = ? AND stock_left >= ?`,
		order:         `SELECT ` + orderColumns + ` FROM orders WHERE id = ?`,
		orderBySU:     `SELECT ` + orderColumns + ` FROM orders WHERE sale_id = ? AND user_id = ?`,
		ordersBy:      `SELECT ` + orderColumns + ` FROM orders WHERE user_id = ? ORDER BY id DESC`,
		saleBuyers:    `SELECT user_id FROM orders WHERE sale_id = ? ORDER BY user_id`,
		ticketFenced:  `SELECT 1 FROM released_tickets WHERE ticket = ?`,
		fenceTicket:   `INSERT INTO released_tickets (ticket, sale_id, user_id, released_at) VALUES (?, ?, ?, ?) ON CONFLICT (ticket) DO NOTHING`,
		fencedTickets: `SELECT ticket FROM released_tickets WHERE sale_id = ?`,
	},
}

// openSQLite opens the SQLite file named by the URL as two pools: one connection for
// writes and several for reads.
//
// WAL lets readers run alongside the writer; synchronous=NORMAL in WAL mode
// keeps every committed transaction across a process crash (only a power
// loss can take back the last ones); _txlock=immediate takes the write lock
// at BEGIN, so two writers can never both hold read locks and deadlock on
// the upgrade, which busy_timeout cannot resolve (this matters for other
// processes on the same file, such as `seckill migrate`).
func openSQLite(ctx context.Context, dbURL string) (write, read *sql.DB, err error) {
	// "sqlite://x" and "sqlite:x" name the same file, as do
	// "file:///tmp/x" and "file:/tmp/x".
	_, path, _ := strings.Cut(dbURL, ":")
	path = strings.TrimPrefix(path, "//")
	if path == "" {
		return nil, nil, errors.New("empty path: want sqlite:PATH")
	}
	if strings.Contains(path, ":memory:") || strings.Contains(path, "mode=memory") {
		// Each connection would get its own empty database.
		return nil, nil, errors.New("in-memory databases are not supported; use a file (a temp dir for tests)")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, nil, fmt.Errorf("path %q: query parameters are not supported", path)
	}
	if err := private.SQLite(path); err != nil { // phone numbers, password and token hashes
		return nil, nil, err
	}
	pragmas := url.Values{
		"_busy_timeout": {"10000"},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_foreign_keys": {"on"},
		"_pragma":       {"cache_size(-32000)", "temp_store(memory)"},
	}
	wp := url.Values{"_txlock": {"immediate"}}
	for k, v := range pragmas {
		wp[k] = v
	}
	wp["_pragma"] = append(slices.Clone(wp["_pragma"]), fmt.Sprintf("wal_autocheckpoint(%d)", walAutoCheckpoint))
	// The schema's REFERENCES are not checked: every write goes through
	// this connection, and the order writer's tables are its hot path.
	// PostgreSQL's and MySQL's orders and ledger have no foreign keys for
	// the same reason (their first migration); WriteOrders finds each sale
	// in its transaction before it writes the sale's orders and ledger
	// row, admission checked the user, and nothing deletes users or
	// sales. With a crowd's buyers in no order of id, the checks' lookups
	// of users and sales were a quarter of SQLite's CPU per order
	// (BENCHMARKS.md).
	wp["_foreign_keys"] = []string{"off"}
	write, err = sql.Open("sqlite", path+"?"+wp.Encode())
	if err != nil {
		return nil, nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// The first connection creates the file and switches it to WAL before
	// any reader opens it.
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, nil, err
	}

	rp := url.Values{"_query_only": {"1"}}
	for k, v := range pragmas {
		rp[k] = v
	}
	read, err = sql.Open("sqlite", path+"?"+rp.Encode())
	if err != nil {
		write.Close()
		return nil, nil, err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	read.SetConnMaxLifetime(0)
	read.SetConnMaxIdleTime(0)
	return write, read, nil
}

// The writer leaves checkpoints to checkpoints, so that copying the WAL
// back into the database file (and its fsync) is not done inline by the
// commit that crosses SQLite's default 1,000 pages: BenchmarkWriterDrain
// (sqlite/live, medians of 3 alternating) went from 19.5 to 16.0 ms of SQL
// per batch of 2,000 and from 1.02 to 0.85 s to drain 100,000 orders. The
// writer still checkpoints itself past walAutoCheckpoint pages (about
// 80 MB), should the background ones fall behind.
const (
	walAutoCheckpoint = 20_000
	checkpointEvery   = 500 * time.Millisecond
)

// checkpoints runs a PASSIVE checkpoint on a read connection every
// checkpointEvery until stopped: it copies what no reader still needs from
// the WAL into the database without waiting for (or blocking) the writer
// or the readers, so the writer's next commit can start the WAL over.
func checkpoints(db *DB) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// Errors (busy, closed) are left to the next tick and, at
			// worst, to the writer's own checkpoint.
			_, _ = db.read.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
