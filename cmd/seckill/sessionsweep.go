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

// sweepSessions deletes expired sessions from db at once and then every
// every, until ctx ends. Expiry is judged by the database's clock, the
// one every instance reads; several instances sweeping at once delete
// each row once (a batch finds what another left). A failed sweep is
// logged and tried again at the next tick.
func sweepSessions(ctx context.Context, db *sqldb.DB, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now, err := db.Now(ctx)
		if err == nil {
			var n int64
			n, err = db.DeleteExpiredSessions(ctx, now)
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
