package sqldb

import (
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strings"
	"sync/atomic"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/mysql/*.sql
var mysqlFS embed.FS

// mysql is the MySQL / MariaDB engine (go-sql-driver/mysql).
//
// The driver interpolates parameters into the statement text, so a bulk
// statement of any row count is one round trip and needs no preparing.
// There is no RETURNING (MySQL 8 has none): new rows' ids are read back
// with a SELECT, and WriteOrders looks up existing orders before its
// INSERT, which must then not conflict. Times are DATETIME(3) in UTC.
var mysql = dialect{
	name:       "mysql",
	goose:      goose.DialectMySQL,
	migrations: mustSub(mysqlFS, "migrations/mysql"),
	migrateOpts: func() ([]goose.ProviderOption, error) {
		// Instances starting together take turns (a named lock).
		return []goose.ProviderOption{goose.WithSessionLocker(mysqlMigrateLock{})}, nil
	},
	maxParams: 65535,
	// READ COMMITTED: each statement sees what committed before it, and
	// InnoDB takes no gap locks, which REPEATABLE READ would take on
	// every insert and lookup of the batch (more waits, more deadlocks).
	txOptions: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
	// At REPEATABLE READ InnoDB's plain SELECTs are consistent reads of
	// one read view, made at the transaction's first read and kept to its
	// end (READ COMMITTED makes one per statement); they take no locks.
	snapshot: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	retryable: func(err error) bool {
		var me *driver.MySQLError
		// ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
		return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
	},
	duplicate: func(err error) bool {
		var me *driver.MySQLError
		return errors.As(err, &me) && me.Number == 1062 // ER_DUP_ENTRY
	},
	lost: func(err error) bool {
		var me *driver.MySQLError
		if errors.As(err, &me) {
			// ER_CON_COUNT_ERROR (too many connections),
			// ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED (MariaDB's KILL),
			// ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8's idle disconnect).
			return me.Number == 1040 || me.Number == 1053 || me.Number == 1927 || me.Number == 4031
		}
		return errors.Is(err, driver.ErrInvalidConn)
	},
	open: openMySQL,
	q: queries{
		createUser: `INSERT INTO users (phone, password_hash, nickname, role, created_at) VALUES (?, ?, ?, ?, ?)`,
		createUsers: func(n int) string {
			return `INSERT INTO users (phone, password_hash, nickname, role, created_at) VALUES ` +
				rows(n, "(?, ?, ?, ?, ?)")
		},
		userIDs: func(n int) string {
			return `SELECT id, phone FROM users WHERE phone IN (` + params(n) + `)`
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
		// MySQL takes no LIMIT in an IN subquery; its DELETE takes one.
		deleteExpired: `DELETE FROM sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`,

		createSale: `INSERT INTO sales (name, description, image_url, price_cents, original_price_cents,
			stock, stock_left, starts_at, ends_at, require_captcha, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sale:  `SELECT ` + saleColumns + ` FROM sales WHERE id = ?`,
		sales: `SELECT ` + saleColumns + ` FROM sales ORDER BY starts_at, id`,
		// One statement, so every number comes from the same read view.
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
		endSale:   `UPDATE sales SET starts_at = LEAST(starts_at, ?), ends_at = ? WHERE id = ? AND ends_at > ?`,
		ledgerRow: `INSERT INTO stock_ledger (sale_id, delta, reason, created_at) VALUES (?, ?, ?, ?)`,

		// The batch's sales stay locked until it commits: no other writer
		// can take their stock or add their orders meanwhile, so the
		// existing orders looked up next are all there are. FenceTicket
		// takes the same lock, so the released tickets read next are all
		// there will be until the commit: each statement at READ COMMITTED
		// reads what committed before it began, after the lock was granted.
		stockLeft: func(n int) string {
			return `SELECT id, stock_left FROM sales WHERE id IN (` + params(n) + `) ORDER BY id FOR UPDATE`
		},
		// A plain INSERT: WriteOrders inserts only pairs it found without
		// an order, under the sale's lock, so a duplicate key here is a
		// real error (a reused order number), not a redelivery, and fails
		// the batch. (INSERT IGNORE would also silence truncation and
		// foreign-key errors.)
		insertOrder: func(n int) string {
			return `INSERT INTO orders (sale_id, user_id, order_no, price_cents, created_at, pay_deadline, status) VALUES ` +
				rows(n, "(?, ?, ?, ?, ?, ?, 'pending_payment')")
		},
		orderIDs: func(n int) string {
			return `SELECT id, user_id FROM orders WHERE sale_id = ? AND user_id IN (` + params(n) + `)`
		},
		takeStock:     `UPDATE sales SET stock_left = stock_left - ? WHERE id = ? AND stock_left >= ?`,
		order:         `SELECT ` + orderColumns + ` FROM orders WHERE id = ?`,
		orderBySU:     `SELECT ` + orderColumns + ` FROM orders WHERE sale_id = ? AND user_id = ?`,
		ordersBy:      `SELECT ` + orderColumns + ` FROM orders WHERE user_id = ? ORDER BY id DESC`,
		saleBuyers:    `SELECT user_id FROM orders WHERE sale_id = ? ORDER BY user_id`,
		ticketFenced:  `SELECT 1 FROM released_tickets WHERE ticket = ?`,
		fenceTicket:   `INSERT INTO released_tickets (ticket, sale_id, user_id, released_at) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE ticket = ticket`,
		fencedTickets: `SELECT ticket FROM released_tickets WHERE sale_id = ?`,
	},
}

// handshakeBound bounds a whole new connection, handshake included, by
// timeout. The driver's own timeout (cfg.Timeout) bounds only the dial: a
// server that accepts connections and never answers (frozen, or behind a
// proxy whose server is gone) held every request that needed a new
// connection for as long as its client waited, without an answer (found
// by review: over 40 s). The driver ends a handshake when its context
// ends; past timeout that is the busy error (connectTimedOut). The
// connections it makes end their commits too (endingConn).
type handshakeBound struct {
	sqldriver.Connector
	timeout time.Duration
}

func (c handshakeBound) Connect(ctx context.Context) (sqldriver.Conn, error) {
	var nc net.Conn // set by dialRecorded
	dctx := context.WithValue(ctx, dialedKey{}, &nc)
	if c.timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(dctx, c.timeout)
		defer cancel() // the driver stops watching ctx once Connect returns
	}
	conn, err := c.Connector.Connect(dctx)
	if err != nil {
		return nil, err
	}
	if mc, ok := conn.(mysqlDriverConn); ok && nc != nil {
		return &endingConn{mysqlDriverConn: mc, nc: nc}, nil
	}
	return conn, nil
}

// dialedKey carries, in the context of a new connection, where
// dialRecorded records the network connection it dials.
type dialedKey struct{}

// dialRecorded dials as the driver does (it turns TCP keepalives on
// itself) and records the connection for endingConn.
func dialRecorded(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if p, ok := ctx.Value(dialedKey{}).(*net.Conn); ok && err == nil {
		*p = nc
	}
	return nc, err
}

// mysqlDriverConn is what database/sql uses of the driver's connection.
type mysqlDriverConn interface {
	sqldriver.Conn
	sqldriver.ConnBeginTx
	sqldriver.ConnPrepareContext
	sqldriver.ExecerContext
	sqldriver.QueryerContext
	sqldriver.Pinger
	sqldriver.SessionResetter
	sqldriver.Validator
	sqldriver.NamedValueChecker
}

// endingConn is the driver's connection whose transactions end their
// commit and rollback when the context they began on ends. The driver
// watches the context of a statement, and closes the connection when it
// ends, but not that of a transaction's COMMIT or ROLLBACK: on a server
// that stopped answering (frozen, its packets dropped) a commit waited
// past the store's timeout (DB.SetTimeout) for as long as the server
// did, holding its caller and a connection of the pool.
type endingConn struct {
	mysqlDriverConn
	nc    net.Conn
	ended atomic.Bool // closed under the driver: not to be used again
}

func (c *endingConn) BeginTx(ctx context.Context, opts sqldriver.TxOptions) (sqldriver.Tx, error) {
	tx, err := c.mysqlDriverConn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return endingTx{Tx: tx, ctx: ctx, c: c}, nil
}

func (c *endingConn) IsValid() bool { return !c.ended.Load() && c.mysqlDriverConn.IsValid() }

func (c *endingConn) ResetSession(ctx context.Context) error {
	if c.ended.Load() {
		return sqldriver.ErrBadConn
	}
	return c.mysqlDriverConn.ResetSession(ctx)
}

type endingTx struct {
	sqldriver.Tx
	ctx context.Context
	c   *endingConn
}

func (tx endingTx) Commit() error   { return tx.end(tx.Tx.Commit) }
func (tx endingTx) Rollback() error { return tx.end(tx.Tx.Rollback) }

// end runs f, closing the network connection under it if tx's context
// ends first: the driver's read then fails, and f returns with the
// context's error joined to the driver's.
func (tx endingTx) end(f func() error) error {
	stop := context.AfterFunc(tx.ctx, func() {
		tx.c.ended.Store(true)
		tx.c.nc.Close()
	})
	err := f()
	if !stop() && err != nil {
		return errors.Join(err, tx.ctx.Err())
	}
	return err
}

// openMySQL opens one pool for reads and writes on the server named by a
// mysql://user:pass@host:port/db?params URL.
func openMySQL(ctx context.Context, url string) (write, read *sql.DB, err error) {
	cfg, err := mysqlConfig(url)
	if err != nil {
		return nil, nil, err
	}
	cfg.DialFunc = dialRecorded // for endingConn
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, nil, err
	}
	db := sql.OpenDB(handshakeBound{conn, cfg.Timeout})
	configurePool(db)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, db, nil
}

// mysqlConfig converts a mysql:// URL to the driver's configuration. The
// query takes the driver's DSN parameters (tls, timeout, collation, …),
// plus socket=PATH to connect through a Unix socket instead of host:port.
// Whatever the URL says, times are not parsed (the store reads DATETIME
// text itself, as UTC), one statement goes per query, parameters are
// interpolated client-side (one round trip per statement, no prepare), and
// unless the URL sets sql_mode the session is strict, so that a value too
// long for its column is an error rather than silently cut.
func mysqlConfig(url string) (*driver.Config, error) {
	u, err := neturl.Parse(url)
	if err != nil {
		// The error would quote the URL.
		return nil, errors.New("malformed URL: want mysql://user:pass@host:port/db")
	}
	if u.Opaque != "" || u.Host == "" && u.Query().Get("socket") == "" {
		return nil, errors.New("malformed URL: want mysql://user:pass@host:port/db")
	}
	q := u.Query()
	socket := q.Get("socket")
	q.Del("socket")
	cfg, err := driver.ParseDSN("/?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("URL parameters: %w", err)
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	if socket != "" {
		cfg.Net, cfg.Addr = "unix", socket
	} else {
		port := u.Port()
		if port == "" {
			port = "3306"
		}
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(u.Hostname(), port)
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if cfg.DBName == "" || strings.Contains(cfg.DBName, "/") {
		return nil, errors.New("malformed URL: want mysql://user:pass@host:port/db, with a database name")
	}
	cfg.ParseTime = false
	cfg.MultiStatements = false
	cfg.InterpolateParams = true
	cfg.ClientFoundRows = false
	cfg.Loc = time.UTC
	if q.Get("timeout") == "" {
		// A server that does not answer (frozen, or its packets dropped)
		// is away after this long, not after the system's TCP timeout.
		cfg.Timeout = connectTimeout
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
	}
	return cfg, nil
}

// mysqlMigrateLock makes instances that start together migrate one after
// the other (goose's lock.SessionLocker): MySQL's named lock GET_LOCK,
// taken on the connection goose runs the migrations on, so it cannot sit
// idle and time out while they run, and dies with it: a starter that dies
// frees it, and one whose connection drops fails its migration with it.
type mysqlMigrateLock struct{}

// mysqlMigrateLockName names the lock per database (instances of other
// databases on the same server do not wait for each other), hashed: MySQL
// refuses names longer than 64 characters.
const mysqlMigrateLockName = "CONCAT('seckill_migrate.', MD5(COALESCE(DATABASE(), '')))"

func (mysqlMigrateLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	var got sql.NullInt64
	// 300 s: a migration of a large table takes a while.
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+mysqlMigrateLockName+", 300)").Scan(&got); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	switch {
	case !got.Valid:
		return errors.New("migration lock: GET_LOCK failed")
	case got.Int64 != 1:
		return errors.New("migration lock: another instance held it for 300 s")
	}
	return nil
}

func (mysqlMigrateLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, "DO RELEASE_LOCK("+mysqlMigrateLockName+")")
	return err
}
