package httpapi

import (
	"context"
	"time"

	"github.com/coder/websocket"

	"seckill"
)

// A WebSocket ends with its session. Authentication happens once, at the
// handshake; what keeps a socket true to its session afterwards is here:
//
//   - its expiry: a per-socket timer (no goroutine while it waits) looks
//     the session up again when it would expire; a session extended
//     meanwhile (account.Service.Authenticate slides the expiry) re-arms
//     the timer for its new expiry, one that ended closes the socket;
//   - a revocation on any instance (a logout, DeleteUserSessions, which
//     deletes and announces each of the user's sessions): SessionEnded
//     finds the session's sockets by token hash and closes them;
//   - revocations that may have been missed (RevocationsMissed): each
//     socket looks its session up again at its next ping.
//
// Such a socket is closed with CloseSessionEnded, with a close handshake,
// so that the page can tell it from a server going away: it asks who is
// logged in instead of reconnecting (web/static/app.js).

// CloseSessionEnded is the WebSocket close code (in the range RFC 6455
// leaves to applications) of a socket whose session ended: expired,
// logged out or revoked, on any instance. The client must authenticate
// again before it opens another socket: a handshake with the same token is
// answered 401.
const CloseSessionEnded websocket.StatusCode = 4001

// SessionEnded closes this instance's sockets opened with the session
// whose token hash is tokenHash, with CloseSessionEnded, without waiting
// for them. Give it the token hash of every session any instance deletes
// (rdb.Sessions.FollowRevocations' evict), after the session cache has
// forgotten it: a handshake that raced the revocation looks its session up
// once its socket is registered, and must not find it in the cache.
func (s *Server) SessionEnded(tokenHash []byte) {
	if s.hub != nil {
		s.hub.closeSession(tokenHash)
	}
}

// RevocationsMissed says that sessions may have been deleted without
// SessionEnded hearing of it (FollowRevocations' reset; call it after the
// session cache's Reset): every socket looks its session up again at its
// next ping, so within WSConfig.PingInterval, spread over it rather than
// all at once.
func (s *Server) RevocationsMissed() {
	if s.hub != nil {
		s.hub.recheckAll()
	}
}

// checkSession looks the socket's session up again: at its expiry (the
// expiry timer's goroutine) or after a RevocationsMissed (the ping's). A
// session that lasts re-arms the expiry timer for its expiry, one that
// ended ends the socket. A store that cannot answer is asked again a
// PingInterval later, the socket kept meanwhile: a store outage must not
// close every socket whose session is due.
func (wc *wsConn) checkSession() {
	ctx, cancel := context.WithTimeout(wc.h.ctx, wc.h.cfg.WriteTimeout)
	sess, err := wc.h.sessionOf(ctx, wc.session)
	cancel()
	var next time.Duration
	switch {
	case seckill.ErrorCode(err) == seckill.EUnauthenticated, err == nil && sess.UserID != wc.user:
		wc.end("session ended")
		return
	case err != nil:
		if wc.h.ctx.Err() == nil {
			wc.h.log.Warn("websocket: cannot look its session up; asking again later", "user", wc.user, "err", err)
		}
		next = wc.h.cfg.PingInterval
	default:
		next = time.Until(sess.ExpiresAt)
	}
	wc.mu.Lock()
	if err == nil {
		wc.expires = sess.ExpiresAt
	}
	if !wc.dead && wc.expiry != nil {
		wc.expiry.Reset(next)
	}
	wc.mu.Unlock()
}

// end closes the socket with CloseSessionEnded (a close handshake, unlike
// drop: the client is there, and must learn why). Nothing more is written
// to it. Its reader then ends and gone unregisters it.
func (wc *wsConn) end(why string) {
	wc.mu.Lock()
	dead, c := wc.dead, wc.c
	if !dead {
		wc.dead, wc.ended = true, true
	}
	wc.mu.Unlock()
	if dead {
		return
	}
	wc.h.log.Info("websocket closed", "user", wc.user, "why", why)
	if c != nil { // else attach sees ended and closes it
		// Close waits for the client's close frame (or its timeout):
		// not on the caller, which may be the revocation feed.
		go func() { _ = c.Close(CloseSessionEnded, why) }()
	}
}
