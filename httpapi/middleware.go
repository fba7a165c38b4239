package httpapi

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"seckill"
)

// authedHandler is an endpoint that needs a session.
type authedHandler func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error

// token returns the bearer token or the cookie.
func token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value
	}
	return ""
}

// authed authenticates the request. Each client address has a budget of
// tokens that authenticate nobody (Config.BadTokens), charged so that a
// flood of them costs few store lookups:
//   - a token the session cache knows, or one signed here
//     (account.Config.TokenKey), is looked up and charged after, if the
//     lookup fails; once the budget is spent it goes on only if vouched;
//   - any other token (invented, or unsigned: older, or under a changed
//     key) holds a token of the budget during its lookup, charged if the
//     lookup fails in any way: a check that took nothing let every request
//     in flight when a token refilled through to a lookup (found by review:
//     300 lookups a second from one address with a 2 ms store instead of
//     5), and a lookup that failed (the store down, the client gone) was
//     charged nothing at all.
//
// Beyond the budget the answer is 429 rate_limited, before any lookup.
// Before, one client flooding invented tokens shut every buyer behind the
// same address (a NAT, a /64 or /48 block) out of buying, logging out
// and reading their orders until its budget refilled (found by review).
func (s *Server) authed(h authedHandler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok := token(r)
		if tok == "" {
			_, err := s.cfg.Accounts.Authenticate(r.Context(), tok)
			return err
		}
		a, ip := s.cfg.Accounts, s.clientIP(r)
		var settle func(charge bool)
		if a.KnownToken(tok) || a.SignedToken(tok) {
			if s.badAuth.exhausted(ip) && !s.vouched(tok, ip) {
				return errUnknownTokens
			}
		} else {
			var ok bool
			if settle, ok = s.badAuth.hold(ip); !ok {
				return errUnknownTokens
			}
		}
		sess, err := a.Authenticate(r.Context(), tok)
		if settle != nil {
			settle(err != nil)
		}
		switch {
		case err == nil:
			return h(w, r, sess)
		case settle == nil:
			if seckill.ErrorCode(err) == seckill.EUnauthenticated && a.SignedToken(tok) {
				s.dead.add(tok)
			}
			if !s.badAuth.take(ip) {
				return errUnknownTokens
			}
		}
		return err
	}
}

// errUnknownTokens refuses an address over its budget of unknown tokens.
var errUnknownTokens = seckill.Errorf(seckill.ERateLimited, "too many requests with unknown tokens; slow down")

// vouched reports whether a token may be looked up from address ip, over
// its budget of unknown tokens: one the session cache knows (served from
// memory, or read again when its entry is stale: at most one lookup per
// entry and cache lifetime, as for anyone), or one signed here
// (account.Config.TokenKey) that this instance has not found without a
// session lately, within the address's budget of such lookups
// (Config.SignedLookups). An invented token has no signature; a signed one
// is issued only at a login. The signature lets a buyer through whose
// session this instance has not read yet (made on another instance, or its
// cache reset): before, they were refused until the flood stopped. A
// logged-out or expired token costs one lookup, then joins the dead; the
// budget bounds the lookups of a sender with more dead tokens than the set
// holds, and of any while the store fails (a failed lookup finds no one
// dead).
func (s *Server) vouched(tok, ip string) bool {
	a := s.cfg.Accounts
	if a.KnownToken(tok) {
		return true
	}
	return a.SignedToken(tok) && !s.dead.has(tok) && s.signed.take(ip)
}

// maxDeadTokens bounds the signed tokens kept as found without a
// session: past it the set starts over.
const maxDeadTokens = 1 << 16

// tokenSet is a bounded set of tokens, safe for concurrent use. It keeps
// each token's SHA-256, 32 bytes whatever the token: a token is a slice of
// its request's header, and keeping it kept the whole header (found by
// review: 32 KB an entry, padded with spaces or another cookie).
type tokenSet struct {
	max int
	mu  sync.Mutex
	m   map[[sha256.Size]byte]struct{}
}

func newTokenSet(max int) *tokenSet {
	return &tokenSet{max: max, m: map[[sha256.Size]byte]struct{}{}}
}

func (t *tokenSet) add(tok string) {
	k := sha256.Sum256([]byte(tok))
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		clear(t.m)
	}
	t.m[k] = struct{}{}
}

func (t *tokenSet) has(tok string) bool {
	k := sha256.Sum256([]byte(tok))
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[k]
	return ok
}

func (s *Server) admin(h authedHandler) handler {
	return s.authed(func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
		if sess.Role != seckill.RoleAdmin {
			return seckill.Errorf(seckill.EForbidden, "admins only")
		}
		return h(w, r, sess)
	})
}

func (s *Server) allow(ctx context.Context, l seckill.Limiter, key string) error {
	if l == nil {
		return nil
	}
	ok, err := l.Allow(ctx, key)
	if err != nil {
		return err
	}
	if !ok {
		return seckill.Errorf(seckill.ERateLimited, "too many requests; slow down")
	}
	return nil
}

func (s *Server) limitIP(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.allow(r.Context(), s.cfg.IPLimit, s.clientIP(r)); err != nil {
			return err
		}
		return h(w, r)
	}
}

// read takes a token of the user's bucket of reads (Config.Reads), in
// process: 429 rate_limited beyond it (Retry-After: 1, writeError's, as
// the bucket refills several tokens a second). It comes after
// authentication, which a flood of unknown tokens pays for per address
// (authed), and before the store is read.
func (s *Server) read(h authedHandler) authedHandler { return s.readFrom(s.reads, h) }

// readFrom is read on the budget b: /result has one of its own, so that
// what spends the others (a page loading, which another site can make
// happen by sending a window to it) never holds a buyer's result polls.
func (s *Server) readFrom(b *ipBuckets, h authedHandler) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
		if !b.take(strconv.FormatInt(sess.UserID, 10)) {
			return seckill.Errorf(seckill.ERateLimited, "too many reads; slow down")
		}
		return h(w, r, sess)
	}
}

// limited applies the per-user and per-IP buckets.
func (s *Server) limited(h authedHandler) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
		if err := s.takeTokens(r, sess); err != nil {
			return err
		}
		return h(w, r, sess)
	}
}

// takeTokens takes a token from the user's bucket and one from the client
// IP's.
func (s *Server) takeTokens(r *http.Request, sess *seckill.Session) error {
	if err := s.allow(r.Context(), s.cfg.UserLimit, strconv.FormatInt(sess.UserID, 10)); err != nil {
		return err
	}
	return s.allow(r.Context(), s.cfg.IPLimit, s.clientIP(r))
}
