package sqldb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"seckill"
)

// A database that is away — restarting, failing over, killing its
// sessions (pg_terminate_backend, KILL), or unreachable — breaks the
// statements under way on its connections; one that stops answering
// (frozen, its packets dropped) holds them until db's timeout ends them
// (see SetTimeout). Such a failure is not the
// request's fault: a read, or a transaction that never reached its
// commit, is run again on another connection (the pool drops the broken
// one), and what still fails is the busy error (503, retry), not an
// internal one (500).

// errDatabaseAway is the application error behind every failure to reach
// the database.
var errDatabaseAway = &seckill.Error{Code: seckill.EBusy, Message: "the database is unavailable; retry shortly"}

// awayError keeps the cause of a failure to reach the database while
// carrying the EBusy application error for seckill.ErrorCode.
type awayError struct{ err error }

func (e *awayError) Error() string   { return "database unavailable: " + e.err.Error() }
func (e *awayError) Unwrap() []error { return []error{errDatabaseAway, e.err} }

// readAttempts is how often a read runs while the connections under it
// break: when the server drops every session at once, each pooled
// connection fails one statement before the pool learns it is dead.
// dropIdle closes the idle ones, not those in use at the kill, which come
// back to the pool and fail once each: with 3 attempts, a review saw one
// read in eight runs (load 12) meet only such connections and answer busy
// with the server up. A failure on a dead connection is quick; one on a
// server that does not answer is not retried (connectTimedOut).
const readAttempts = 5

// lost tells whether err, of a statement run on ctx, says the connection
// under it broke or could not be made in time (connectTimeout), or the
// server refused it for now (shutting down, out of connections). The end
// of ctx is not: the caller gave up. Nor is what no retry mends — a host
// name that does not resolve, a certificate that does not verify —: that
// stays internal (500, logged) rather than a 503 its clients would retry
// for ever.
func (db *DB) lost(ctx context.Context, err error) bool {
	if err == nil || misconfigured(err) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connectTimedOut(ctx, err) && db.d.lost != nil
	}
	var ne *net.OpError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return true
	}
	return db.d.lost != nil && db.d.lost(err)
}

// connectTimedOut tells whether err, of a statement run on ctx, is a
// context's end that is not ctx's: the driver's own deadline on a new
// connection (PostgreSQL's connect_timeout) to a server that accepts
// connections but does not answer (frozen, or behind a proxy whose server
// is gone), or db's timeout on an operation (see bound), which a server
// that stops answering mid-statement runs into. pgx reports it as "timeout: context deadline exceeded"; taken
// for the caller's end it was answered 500 on every route (found by
// review). Another try would wait as long again: it is not retried; nor
// are the pool's idle connections dropped (dropIdle), which may be fine:
// dropping them on a slow handshake would only make more handshakes.
func connectTimedOut(ctx context.Context, err error) bool {
	return ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled))
}

// misconfigured tells whether err is a failure to connect that only a
// change of configuration mends.
func misconfigured(err error) bool {
	var (
		dns     *net.DNSError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		verify  *tls.CertificateVerificationError
	)
	return errors.As(err, &dns) && dns.IsNotFound || errors.As(err, &unknown) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &verify)
}

// away returns err as the busy error when it is a lost connection (see
// lost), else err as it is.
func (db *DB) away(ctx context.Context, err error) error {
	if db.lost(ctx, err) {
		return &awayError{err: err}
	}
	return err
}

// reread runs f, a read, on ctx bounded by db's timeout (see bound), again
// while the connection under it breaks, up to readAttempts times in all; a
// read still failing so is errDatabaseAway, as is one the bound ended. A
// read is safe to repeat; a write is not (see inTx, writeExec).
func reread[T any](ctx context.Context, db *DB, f func(ctx context.Context) (T, error)) (T, error) {
	bctx, cancel := db.bound(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		v, err := f(bctx)
		if err == nil || !db.lost(ctx, err) {
			return v, err
		}
		if connectTimedOut(ctx, err) {
			// A new connection did not answer in time, or the bound ended
			// a statement on a server that stopped answering: another try
			// would wait as long again, and the pooled connections may be
			// fine (a slow handshake).
			return v, &awayError{err: err}
		}
		db.dropIdle()
		if attempt == readAttempts || ctx.Err() != nil {
			return v, &awayError{err: err}
		}
	}
}

// dropIdle closes the idle connections of the pools after a statement
// found its connection lost. A server that ends one session has usually
// ended them all (pg_terminate_backend of every session, a restart, a
// failover), and each pooled connection would fail one statement before
// the pool learned it was dead: database/sql checks a connection it hands
// out only when it sat idle over a second (pgx's ResetSession), and a
// busy pool holds more dead connections (8 or more) than a request has
// attempts (readAttempts, maxAttempts), so one request alone met only
// dead ones and was answered busy with the server up. Connections in use
// are left alone; a statement on one of them fails once and the pool
// drops it.
func (db *DB) dropIdle() {
	if db.d.lost == nil {
		return // an engine in the process: no server to lose
	}
	pools := []*sql.DB{db.write}
	if db.read != db.write {
		pools = append(pools, db.read)
	}
	for _, p := range pools {
		// configurePool keeps as many idle as it opens.
		n := p.Stats().MaxOpenConnections
		p.SetMaxIdleConns(-1) // closes every idle connection
		p.SetMaxIdleConns(n)
	}
}
