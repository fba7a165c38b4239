package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"seckill"
	"seckill/account"
)

// CookieName is the session cookie set at login.
const CookieName = "seckill_token"

type userJSON struct {
	ID       int64        `json:"id"`
	Phone    string       `json:"phone"`
	Nickname string       `json:"nickname"`
	Role     seckill.Role `json:"role,omitempty"`
}

// createUser is POST /api/users. Each attempt that gets as far as the
// store (valid fields) takes one of the client address's registrations
// (Config.Registrations), taken or not: the budget bounds both the hashing
// and how many phones one address can learn are registered
// (409 phone_taken). Beyond it, 429 rate_limited.
func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	req, err := parseCreateUser(r.Body)
	if err != nil {
		return err
	}
	if !s.signups.take(s.clientIP(r)) {
		w.Header().Set("Retry-After", "60")
		return seckill.Errorf(seckill.ERateLimited, "too many registrations from your address; try again later")
	}
	u, err := s.cfg.Accounts.Register(r.Context(), req.Phone, req.Password, req.Nickname)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, userJSON{ID: u.ID, Phone: u.Phone, Nickname: u.Nickname})
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	req, err := parseLogin(r.Body)
	if seckill.ErrorCode(err) == seckill.EInvalid && (req.Phone == "" || req.Password == "") {
		return seckill.Errorf(seckill.EBadCredentials, "wrong phone or password")
	} else if err != nil {
		return err
	}
	tok, sess, u, err := s.cfg.Accounts.LoginFrom(r.Context(), req.Phone, req.Password, s.clientIP(r))
	if we := (*account.WaitError)(nil); errors.As(err, &we) {
		// The phone or the address is in back-off: say when to come back.
		w.Header().Set("Retry-After", strconv.Itoa(we.Seconds()))
	}
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: tok, Path: "/", Expires: sess.ExpiresAt,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secure(r),
	})
	writeJSON(w, http.StatusOK, map[string]any{
		"token": tok, "expires_at": sess.ExpiresAt,
		"user": userJSON{ID: u.ID, Phone: u.Phone, Nickname: u.Nickname, Role: u.Role},
	})
	return nil
}

// logout is authed like every route that takes a token: invented tokens
// count against the client address's budget before the store is asked.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	if err := s.cfg.Accounts.Logout(r.Context(), token(r)); err != nil {
		return err
	}
	// The session's sockets would go on pushing its results. Those on
	// other instances close when the deletion's announcement reaches them
	// (SessionEnded); without Redis there are none.
	s.SessionEnded(sess.TokenHash)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secure(r)})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	u, err := s.cfg.Accounts.User(r.Context(), sess.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userJSON{ID: u.ID, Phone: u.Phone, Nickname: u.Nickname, Role: u.Role})
	return nil
}
