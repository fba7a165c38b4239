package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"seckill"
)

// webSocket is GET /api/ws: after the same authentication as the other
// endpoints (401 before any upgrade), it upgrades to a WebSocket on which
// the server pushes the user's order results and order statuses, and to
// every socket the changes of the sales' units left (salepush.go).
// coder/websocket's same-origin check stays on: the cookie authenticates
// a browser's handshake, so another site's page must not open one (a
// proxy in front must pass the Host header through for the check to
// pass). Handshake refusals past authentication get the contract's JSON
// errors too: 400 invalid (not a WebSocket handshake) and 403 forbidden
// (a foreign Origin), with the library's reason as the message. 429 when
// the user holds MaxPerUser sockets here already; 503 while the result
// bus cannot be subscribed to, or after Close.
//
// The server's read, write and idle timeouts stop at the upgrade: net/http
// clears the connection's deadlines when coder/websocket hijacks it, so a
// socket lives as long as it answers pings and its session lasts
// (wssession.go); each write is bounded by
// WSConfig.WriteTimeout instead (cmd/seckill's
// TestWebSocketOutlivesTimeouts keeps it so).
//
// A socket gets the results published after its handshake was
// authenticated; nothing earlier is replayed, so a client that opens its
// socket after buying asks /result once. The push and /result are fed by
// separate subscriptions to the same bus: they carry the same outcome,
// and a poll right after a push may still answer queued for a moment.
func (s *Server) webSocket(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	return s.openSocket(w, r, sess, false)
}

// adminSocket is GET /api/admin/ws: /api/ws for an admin (401 without a
// session, 403 for a buyer's, before any upgrade), whose socket also
// gets the dashboard stream (dashboard.go).
func (s *Server) adminSocket(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	s.dash.subscribe()
	return s.openSocket(w, r, sess, true)
}

func (s *Server) openSocket(w http.ResponseWriter, r *http.Request, sess *seckill.Session, dash bool) error {
	// The API's own origin rule first (coder/websocket's compares hosts
	// only, and would let an http:// page of this host open a socket of
	// the site its buyers reach over HTTPS).
	if o := r.Header.Get("Origin"); o != "" && !s.originAllowed(o, r) {
		return seckill.Errorf(seckill.EForbidden, "cross-site request refused: Origin does not match this site")
	}
	if err := s.hub.start(); err != nil {
		return err
	}
	s.sales.start()
	if dash {
		s.dashPush.start()
	}
	wc, err := s.hub.register(sess.UserID, s.clientIP(r), sess.TokenHash, sess.ExpiresAt, dash)
	if err != nil {
		return err
	}
	// A revocation that arrived between the authentication and the
	// registration found no socket to close (SessionEnded): look again,
	// now that one would be found.
	if _, err := s.cfg.Accounts.SessionOf(r.Context(), sess.TokenHash); err != nil {
		s.hub.unregister(wc)
		return err
	}
	rw := &handshakeRefusal{ResponseWriter: w}
	var conn atomic.Pointer[websocket.Conn]
	c, err := websocket.Accept(rw, r, &websocket.AcceptOptions{OnPingReceived: pingBudget(&conn)})
	if err != nil {
		s.hub.unregister(wc)
		s.log.Debug("websocket handshake refused", "err", err)
		return refusalError(rw.status, err)
	}
	conn.Store(c) // before attach starts reading, and so before any ping
	s.hub.attach(wc, c)
	return nil
}

// handshakeRefusal passes coder/websocket's handshake through to w, except
// a refusal (a status of 400 or more and its plain-text body), which it
// keeps back so that webSocket can answer it as JSON.
type handshakeRefusal struct {
	http.ResponseWriter
	status int // the refusal's status; 0 while there is none
}

func (w *handshakeRefusal) WriteHeader(status int) {
	if status >= 400 {
		w.status = status
		// Headers of the plain-text refusal and of the 426 the JSON
		// answer replaces (it sets its own Content-Type).
		for _, h := range []string{"Content-Type", "X-Content-Type-Options", "Upgrade", "Connection"} {
			w.Header().Del(h)
		}
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *handshakeRefusal) Write(b []byte) (int, error) {
	if w.status != 0 {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets the library reach the connection to hijack it.
func (w *handshakeRefusal) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// refusalError is the application error for a handshake the library
// refused with status: the client's mistake (400 invalid, 403 forbidden for
// a foreign Origin), or internal (the connection could not be taken over).
func refusalError(status int, err error) error {
	why := strings.TrimPrefix(err.Error(), "failed to accept WebSocket connection: ")
	switch {
	case status == http.StatusForbidden:
		return seckill.Errorf(seckill.EForbidden, "this site's pages only may open a socket: %s", why)
	case status >= 400 && status < 500:
		return seckill.Errorf(seckill.EInvalid, "not a WebSocket handshake: %s", why)
	}
	return fmt.Errorf("websocket handshake: %w", err)
}

// A client's pings are answered at most clientPingRate a second, with a
// burst of clientPingBurst; browsers send none, and other clients' keep-
// alives are seconds apart. Past that the socket is closed: answering a
// ping flood (about 20,000 a second from one socket, found by review)
// cost half a core, beyond the per-address request budget.
const (
	clientPingRate  = 1
	clientPingBurst = 5
)

// pingBudget is the socket's OnPingReceived: it answers pings within the
// budget and closes the socket at the first one over it (the hub's reader
// then ends, and unregisters it).
func pingBudget(conn *atomic.Pointer[websocket.Conn]) func(context.Context, []byte) bool {
	budget := rate.NewLimiter(clientPingRate, clientPingBurst)
	var closing atomic.Bool
	return func(context.Context, []byte) bool {
		if budget.Allow() {
			return true
		}
		if c := conn.Load(); c != nil && closing.CompareAndSwap(false, true) {
			// Not here: Close waits for the reader this runs in.
			go func() { _ = c.Close(websocket.StatusPolicyViolation, "too many pings") }()
		}
		return false
	}
}
