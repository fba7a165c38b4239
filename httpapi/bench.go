package httpapi

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"seckill"
	"seckill/account"
)

// BulkUsers creates many accounts in one go (sqldb.DB does).
type BulkUsers interface {
	// CreateUsers inserts users and sets their IDs. EPhoneTaken, with
	// nothing inserted, if any phone is registered.
	CreateUsers(ctx context.Context, users []*seckill.User) error
}

// MaxBenchUsers is the most accounts one call of the bench provisioning
// route creates.
const MaxBenchUsers = 100_000

// benchSessionWorkers open sessions concurrently: on engines with row
// locking the inserts overlap; SQLite serialises them anyway.
const benchSessionWorkers = 8

type benchUser struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

// benchHash is the one password hash every benchmark account shares: they
// log in through the sessions handed out at creation, never by password,
// and hashing per account would take minutes by design.
var benchHash = sync.OnceValues(func() (string, error) {
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	return account.HashPassword(hex.EncodeToString(raw), account.DefaultParams)
})

// benchUsers is POST /api/admin/bench/users {"count":N,"prefix":"1234"}: it
// creates N buyers whose phones are the prefix followed by 0…N-1, padded to
// 11 digits (so runs with different prefixes do not collide), opens a
// session for each, and answers {"users":[{"id":…,"token":"…"},…]}. It is
// routed only when Config.BenchUsers is set (the server's
// --bench-provisioning); otherwise the path is 404 like any unknown one.
// EInvalid for a count outside 1…MaxBenchUsers or a prefix that is not
// digits starting with 1 with room for count phones; EPhoneTaken if any of
// the phones is registered.
func (s *Server) benchUsers(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	req, err := parseBenchUsers(r.Body)
	if err != nil {
		return err
	}
	if req.Count < 1 || req.Count > MaxBenchUsers {
		return seckill.Errorf(seckill.EInvalid, "count must be 1 to %d", MaxBenchUsers)
	}
	digits := 11 - len(req.Prefix)
	if !strings.HasPrefix(req.Prefix, "1") || strings.Trim(req.Prefix, "0123456789") != "" || digits < 1 {
		return seckill.Errorf(seckill.EInvalid, "prefix must be 1 to 10 digits starting with 1")
	}
	if room := pow10(digits); int64(req.Count) > room {
		return seckill.Errorf(seckill.EInvalid, "a prefix of %d digits leaves room for %d phones", len(req.Prefix), room)
	}
	hash, err := benchHash()
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
	users := make([]*seckill.User, req.Count)
	for i := range users {
		users[i] = &seckill.User{
			Phone: fmt.Sprintf("%s%0*d", req.Prefix, digits, i), Nickname: "bench",
			Role: seckill.RoleBuyer, PasswordHash: hash,
		}
	}
	if err := s.cfg.BenchUsers.CreateUsers(r.Context(), users); err != nil {
		return err
	}
	out := make([]benchUser, len(users))
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range min(benchSessionWorkers, len(users)) {
		wg.Go(func() {
			for j := next.Add(1) - 1; j < int64(len(users)); j = next.Add(1) - 1 {
				tok, _, err := s.cfg.Accounts.OpenSession(r.Context(), users[j])
				if err != nil {
					errMu.Lock()
					first = cmp.Or(first, err)
					errMu.Unlock()
					next.Store(int64(len(users))) // the others stop too
					return
				}
				out[j] = benchUser{ID: users[j].ID, Token: tok}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("bench sessions: %w", first)
	}
	s.log.Info("bench users provisioned", "count", len(users), "prefix", req.Prefix)
	writeJSON(w, http.StatusCreated, map[string]any{"users": out})
	return nil
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}
