package httpapi

import (
	"context"

	"seckill"
)

// stillAdmin reports whether the dashboard socket wc may have the next
// dashboard message: whether the session that opened it still lasts and
// is an admin's. A socket outlives what authenticated its handshake —
// a logout on another instance, a revocation or password rotation
// anywhere, the session's expiry — so each message asks again (through
// the session cache: no store round trip per message) and a socket whose
// session ended is closed, as a logout anywhere closes it (SessionEnded).
// A store that cannot answer withholds this message only.
func (s *Server) stillAdmin(ctx context.Context, wc *wsConn) bool {
	sess, err := s.cfg.Accounts.SessionOf(ctx, wc.session)
	switch {
	case seckill.ErrorCode(err) == seckill.EUnauthenticated:
		wc.end("session ended")
		return false
	case err != nil:
		s.log.Debug("dashboard push: session check", "user", wc.user, "err", err)
		return false
	case sess.UserID != wc.user || sess.Role != seckill.RoleAdmin:
		wc.end("no longer an admin")
		return false
	}
	return true
}
