package account

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"seckill"
)

// Bulk provisioning of the buyers of a load test: many accounts in one
// call, each with an open session, so that the load generator logs in
// without hashing a password per buyer.

// BulkUsers creates many accounts in one go (sqldb.DB does).
type BulkUsers interface {
	// CreateUsers inserts users and sets their IDs. EPhoneTaken, with
	// nothing inserted, if any phone is registered.
	CreateUsers(ctx context.Context, users []*seckill.User) error
}

// MaxProvision is the most accounts one Provision call creates.
const MaxProvision = 100_000

// provisionWorkers open sessions concurrently: on engines with row
// locking the inserts overlap; SQLite serialises them anyway.
const provisionWorkers = 8

// Provisioned is an account Provision created, with its session's token.
type Provisioned struct {
	ID    int64
	Token string
}

// ValidateProvision checks the arguments of Provision: a count of 1 to
// MaxProvision, and a prefix of 1 to 10 digits starting with 1 that leaves
// room for count phones. EInvalid says which is wrong.
func ValidateProvision(count int, prefix string) error {
	if count < 1 || count > MaxProvision {
		return seckill.Errorf(seckill.EInvalid, "count must be 1 to %d", MaxProvision)
	}
	digits := 11 - len(prefix)
	if !strings.HasPrefix(prefix, "1") || strings.Trim(prefix, "0123456789") != "" || digits < 1 {
		return seckill.Errorf(seckill.EInvalid, "prefix must be 1 to 10 digits starting with 1")
	}
	if room := pow10(digits); int64(count) > room {
		return seckill.Errorf(seckill.EInvalid, "a prefix of %d digits leaves room for %d phones", len(prefix), room)
	}
	return nil
}

// Provision creates count buyers in users, whose phones are prefix followed
// by 0…count-1 padded to 11 digits (so runs with different prefixes do not
// collide), opens a session for each and returns them in phone order.
// Every account shares one password hash that no one knows: they are used
// through the sessions handed out here, never logged in by password.
// EInvalid for arguments ValidateProvision refuses; EPhoneTaken, with
// nothing created, if any of the phones is registered.
func (s *Service) Provision(ctx context.Context, users BulkUsers, count int, prefix string) ([]Provisioned, error) {
	if err := ValidateProvision(count, prefix); err != nil {
		return nil, err
	}
	hash, err := s.provisionHash()
	if err != nil {
		return nil, err
	}
	digits := 11 - len(prefix)
	us := make([]*seckill.User, count)
	for i := range us {
		us[i] = &seckill.User{
			Phone: fmt.Sprintf("%s%0*d", prefix, digits, i), Nickname: "bench",
			Role: seckill.RoleBuyer, PasswordHash: hash,
		}
	}
	if err := users.CreateUsers(ctx, us); err != nil {
		return nil, err
	}
	out := make([]Provisioned, len(us))
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range min(provisionWorkers, len(us)) {
		wg.Go(func() {
			for j := next.Add(1) - 1; j < int64(len(us)); j = next.Add(1) - 1 {
				tok, _, err := s.OpenSession(ctx, us[j])
				if err != nil {
					errMu.Lock()
					first = cmp.Or(first, err)
					errMu.Unlock()
					next.Store(int64(len(us))) // the others stop too
					return
				}
				out[j] = Provisioned{ID: us[j].ID, Token: tok}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, fmt.Errorf("provision sessions: %w", first)
	}
	return out, nil
}

// unknownPasswordHash hashes a random password no one is told: provisioned
// accounts share one (hashing per account would take minutes by design)
// and are used through the sessions Provision opens.
func unknownPasswordHash(p Params) (string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return HashPassword(hex.EncodeToString(raw), p)
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}
