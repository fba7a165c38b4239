package sqldb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	neturl "net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/postgres/*.sql
var postgresFS embed.FS

// postgres is the PostgreSQL engine (pgx through database/sql).
//
// Bulk statements take one array per column and unnest them, so a batch of
// any size is one statement of one shape, which pgx prepares once per
// connection and caches. Times are TIMESTAMPTZ.
var postgres = dialect{
	name:       "postgres",
	goose:      goose.DialectPostgres,
	migrations: mustSub(postgresFS, "migrations/postgres"),
	migrateOpts: func() ([]goose.ProviderOption, error) {
		// Instances starting together take turns (an advisory lock).
		l, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, err
		}
		return []goose.ProviderOption{goose.WithSessionLocker(l)}, nil
	},
	maxParams:   65535,
	arrays:      true,
	returning:   true,
	insertFirst: true,
	// READ COMMITTED: a statement after a row lock reads what the lock's
	// holder committed while it waited, which FenceTicket and WriteOrders
	// rely on (fence.go); at REPEATABLE READ it would read the snapshot of
	// the transaction's first statement, taken before the wait.
	txOptions: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
	// REPEATABLE READ takes one snapshot for the whole transaction (READ
	// COMMITTED one per statement); read-only, it never fails to serialize.
	snapshot: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	retryable: func(err error) bool {
		var pe *pgconn.PgError
		// serialization_failure, deadlock_detected
		return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
	},
	duplicate: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
	},
	lost: func(err error) bool {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			// Class 08 connection_exception but protocol_violation (a
			// bug, not an outage); admin_shutdown (the session was
			// terminated: pg_terminate_backend, a fast shutdown),
			// crash_shutdown, cannot_connect_now (starting up or in
			// recovery), too_many_connections. Authentication failures
			// (class 28) are not: no retry mends them.
			return strings.HasPrefix(pe.Code, "08") && pe.Code != "08P01" || pe.Code == "57P01" ||
				pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
		}
		// A failure to connect is lost by its cause (refused, reset, a
		// server starting up), which DB.lost and the codes above judge.
		return errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err)
	},
	open: openPostgres,
	q: queries{
		createUser: `INSERT INTO users (phone, password_hash, nickname, role, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (phone) DO NOTHING RETURNING id`,
		createUsers: func(int) string {
			return `INSERT INTO users (phone, password_hash, nickname, role, created_at)
				SELECT phone, password_hash, nickname, role, $5::timestamptz
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS r (phone, password_hash, nickname, role)
				ON CONFLICT (phone) DO NOTHING RETURNING id, phone`
		},
		updateUser:  `UPDATE users SET nickname = $1, role = $2, password_hash = $3 WHERE id = $4`,
		userByID:    `SELECT id, phone, password_hash, nickname, role, created_at FROM users WHERE id = $1`,
		userByPhone: `SELECT id, phone, password_hash, nickname, role, created_at FROM users WHERE phone = $1`,

		createSession: `INSERT INTO sessions (token_hash, user_id, role, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)`,
		session:       `SELECT token_hash, user_id, role, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2`,
		// An expired session stays expired: touching it must not log its
		// holder back in.
		touchSession:       `UPDATE sessions SET expires_at = $1 WHERE token_hash = $2 AND expires_at > $3`,
		deleteSession:      `DELETE FROM sessions WHERE token_hash = $1`,
		userSessions:       `SELECT token_hash FROM sessions WHERE user_id = $1`,
		deleteUserSessions: `DELETE FROM sessions WHERE user_id = $1`,
		deleteExpired:      `DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at <= $1 LIMIT $2)`,

		createSale: `INSERT INTO sales (name, description, image_url, price_cents, original_price_cents,
			stock, stock_left, starts_at, ends_at, require_captcha, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
		sale:  `SELECT ` + saleColumns + ` FROM sales WHERE id = $1`,
		sales: `SELECT ` + saleColumns + ` FROM sales ORDER BY starts_at, id`,
		// One statement, so every number comes from the same snapshot.
		saleStats: `SELECT s.stock, s.stock_left,
				(SELECT COALESCE(SUM(l.delta), 0)::bigint FROM stock_ledger l WHERE l.sale_id = s.id),
				o.total, o.pending, o.paid, o.cancelled, o.refunded
			FROM sales s, (SELECT COUNT(*) AS total,
					COUNT(*) FILTER (WHERE status = 'pending_payment') AS pending,
					COUNT(*) FILTER (WHERE status = 'paid') AS paid,
					COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled,
					COUNT(*) FILTER (WHERE status = 'refunded') AS refunded
				FROM orders WHERE sale_id = $1) o
			WHERE s.id = $2`,
		saleLeft:  `SELECT stock_left FROM sales WHERE id = $1`,
		endSale:   `UPDATE sales SET starts_at = LEAST(starts_at, $1), ends_at = $2 WHERE id = $3 AND ends_at > $4`,
		ledgerRow: `INSERT INTO stock_ledger (sale_id, delta, reason, created_at) VALUES ($1, $2, $3, $4)`,

		// The batch's sales stay locked until it commits: no other writer
		// can take their stock or add their orders meanwhile, nor can
		// FenceTicket, which takes the same lock, record a release of
		// theirs; the next statement (at READ COMMITTED, a new snapshot)
		// sees every release recorded before the lock was granted. NO KEY
		// UPDATE, as the stock UPDATE itself takes, lets the foreign keys
		// of other tables keep pointing at them.
		stockLeft: func(int) string {
			return `SELECT id, stock_left FROM sales WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE`
		},
		// Conflicts on (sale_id, user_id) are skipped, not errors: they are
		// redeliveries of orders already written. RETURNING lists only the
		// rows inserted, in no promised order. The rows go in by (sale_id,
		// user_id), so that writers waiting for each other's uncommitted
		// orders of one (sale, user) wait in one order (see placeOrders).
		insertOrder: func(int) string {
			return `INSERT INTO orders (sale_id, user_id, order_no, price_cents, created_at, pay_deadline, status)
				SELECT sale_id, user_id, order_no, price_cents, created_at, $6::timestamptz, 'pending_payment'
				FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[])
					AS r (sale_id, user_id, order_no, price_cents, created_at)
				ORDER BY sale_id, user_id
				ON CONFLICT (sale_id, user_id) DO NOTHING RETURNING id, sale_id, user_id`
		},
		orderIDs: func(int) string {
			return `SELECT id, user_id FROM orders WHERE sale_id = $1 AND user_id = ANY($2::bigint[])`
		},
		takeStock: `UPDATE sales SET stock_left = stock_left - $1 WHERE id = $2 AND stock_left >= $3`,
		takeStocks: `WITH taken AS (
				UPDATE sales s SET stock_left = s.stock_left - n.c
				FROM unnest($1::bigint[], $2::bigint[]) AS n (id, c)
				WHERE s.id = n.id AND s.stock_left >= n.c RETURNING s.id, n.c)
			INSERT INTO stock_ledger (sale_id, delta, reason, created_at)
			SELECT id, -c, 'order', $3::timestamptz FROM taken`,
		deleteOrders:  `DELETE FROM orders WHERE id = ANY($1::bigint[])`,
		order:         `SELECT ` + orderColumns + ` FROM orders WHERE id = $1`,
		orderBySU:     `SELECT ` + orderColumns + ` FROM orders WHERE sale_id = $1 AND user_id = $2`,
		ordersBy:      `SELECT ` + orderColumns + ` FROM orders WHERE user_id = $1 ORDER BY id DESC`,
		saleBuyers:    `SELECT user_id FROM orders WHERE sale_id = $1 ORDER BY user_id`,
		ticketFenced:  `SELECT 1 FROM released_tickets WHERE ticket = $1`,
		fenceTicket:   `INSERT INTO released_tickets (ticket, sale_id, user_id, released_at) VALUES ($1, $2, $3, $4) ON CONFLICT (ticket) DO NOTHING`,
		fencedTickets: `SELECT ticket FROM released_tickets WHERE sale_id = $1`,
	},
}

// openPostgres opens one pool for reads and writes: PostgreSQL locks rows,
// so writers need no queue of their own. The URL goes to pgx unchanged
// (postgres:// and postgresql:// are both its forms).
func openPostgres(ctx context.Context, url string) (write, read *sql.DB, err error) {
	db, err := sql.Open("pgx", withConnectTimeout(url))
	if err != nil {
		return nil, nil, err
	}
	configurePool(db)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, db, nil
}

// connectTimeout bounds a new connection to a server engine unless its
// URL sets its own (PostgreSQL connect_timeout, MySQL timeout): a server
// that does not answer (frozen, or its packets dropped) is away (busy)
// after this long, not after the system's TCP timeout of minutes.
const connectTimeout = 5 * time.Second

// withConnectTimeout returns the postgres:// URL with connect_timeout set
// to connectTimeout unless it sets one; any other URL as it is (pgx
// reports what is wrong with it).
func withConnectTimeout(url string) string {
	u, err := neturl.Parse(url)
	if err != nil || u.Scheme == "" {
		return url
	}
	q := u.Query()
	if q.Has("connect_timeout") {
		return url
	}
	q.Set("connect_timeout", strconv.Itoa(int(connectTimeout/time.Second)))
	u.RawQuery = q.Encode()
	return u.String()
}

// configurePool sizes a pool of a server engine: enough connections for
// the order writers and the readers of one instance, few enough that
// several instances fit in the server's connection limit.
func configurePool(db *sql.DB) {
	n := max(8, 4*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(time.Hour)
}
