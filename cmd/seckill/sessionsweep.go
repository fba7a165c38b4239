package main

import (
	"context"
	"log/slog"
	"time"

	"seckill/sqldb"
)

// sessionSweepEvery is how often each instance deletes the sessions that
// expired from SQL (they are refused from the moment they expire; this
// only keeps them from piling up).
const sessionSweepEvery = 10 * time.Minute

// sessionSweepGrace is how long past its expiry, on the database's clock,
// a session is kept before the sweep deletes it. The expiry was set on the
// clock of the instance that opened or extended the session; Redis keeps
// its fast copy until then on Redis's clock (PEXPIREAT), and instances
// serve it until then on theirs. A row deleted while one of those clocks
// still has it live breaks what revocations rely on: a Redis copy whose
// row is gone is named by no store DeleteUserSessions asks. A day is far
// beyond any clock the engine runs on, and the table still holds no more
// than a day of expired sessions.
const sessionSweepGrace = 24 * time.Hour

// sweepSessions deletes the sessions expired for sessionSweepGrace from
// db at once and then every every, until ctx ends. Expiry is judged by
// the database's clock, the one every instance reads, less the grace;
// several instances sweeping at once delete each row once (a batch finds
// what another left). A failed sweep is
// logged and tried again at the next tick.
func sweepSessions(ctx context.Context, db *sqldb.DB, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now, err := db.Now(ctx)
		if err == nil {
			var n int64
			n, err = db.DeleteExpiredSessions(ctx, now.Add(-sessionSweepGrace))
			if n > 0 {
				log.Info("expired sessions deleted", "sessions", n)
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("deleting expired sessions failed; trying again later", "in", every, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
