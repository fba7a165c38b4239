package httpapi

import (
	"net/http"
	"time"

	"seckill"
)

type benchUser struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

// benchUsers is POST /api/admin/bench/users {"count":N,"prefix":"1234"}: it
// creates N buyers whose phones are the prefix followed by 0…N-1, padded to
// 11 digits, each with an open session (account.Service.Provision), and
// answers {"users":[{"id":…,"token":"…"},…]}. It is routed only when
// Config.BenchUsers is set (the server's --bench-provisioning); otherwise
// the path is 404 like any unknown one. EInvalid for a count outside
// 1…account.MaxProvision or a prefix that is not digits starting with 1
// with room for count phones; EPhoneTaken if any of the phones is
// registered.
func (s *Server) benchUsers(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	req, err := parseBenchUsers(r.Body)
	if err != nil {
		return err
	}
	// Provisioning 100,000 accounts takes longer than the server's read
	// and write timeouts allow, which are there against slow clients, not
	// against the admin's own long request: its body is read, so they are
	// lifted for the rest of it (else the read deadline would cancel the
	// request's context and the write deadline cut the answer).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	users, err := s.cfg.Accounts.Provision(r.Context(), s.cfg.BenchUsers, req.Count, req.Prefix)
	if err != nil {
		return err
	}
	out := make([]benchUser, len(users))
	for i, u := range users {
		out[i] = benchUser{ID: u.ID, Token: u.Token}
	}
	s.log.Info("bench users provisioned", "count", len(users), "prefix", req.Prefix)
	writeJSON(w, http.StatusCreated, map[string]any{"users": out})
	return nil
}
