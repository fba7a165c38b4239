package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// answers records, per buyer of a crowd, what the per-ticket check of I3
// needs: the ticket of the buyer's first 202, and whether some answer left
// the buyer's purchase unknown to the crowd — a 503 (busy, which may still
// go through), an answer lost with its connection, an unexpected status,
// or a 409 the buyer met without a 202 of their own (an admission whose
// answer was lost). A count of orders against a count of 202s cannot tell
// a lost 202 from such a purchase that went through after all; asking each
// buyer's /result can.
type answers struct {
	ticket []atomic.Pointer[string]
	unsure []atomic.Bool
}

func newAnswers(n int) *answers {
	return &answers{ticket: make([]atomic.Pointer[string], n), unsure: make([]atomic.Bool, n)}
}

// note records buyer u's answer c, with the ticket of a 202.
func (a *answers) note(u int, c class, ticket string) {
	switch c {
	case cAccepted:
		a.ticket[u].CompareAndSwap(nil, &ticket)
	case cSoldOut, cRateLimited:
		// A refusal: nothing of this press was admitted.
	default:
		a.unsure[u].Store(true)
	}
}

// from is what a records of the buyers from the i-th on.
func (a *answers) from(i int) *answers {
	return &answers{ticket: a.ticket[i:], unsure: a.unsure[i:]}
}

// TicketCheck is what the buyers' /result answered after the crowd.
type TicketCheck struct {
	// Accepted counts buyers answered 202; Orders those of them whose
	// /result is a success under the ticket of their (first) 202.
	Accepted, Orders int
	// Successes counts every asked buyer whose /result is a success: the
	// accepted ones, and those whose unknown answer went through. Buyers
	// the crowd only refused (410, 429) are not asked: they hold nothing.
	Successes int64
	Asked     int
	// Missing names up to maxMissing accepted tickets that are not orders.
	Missing []string
}

const maxMissing = 5

// add counts o's buyers with t's.
func (t *TicketCheck) add(o TicketCheck) {
	t.Accepted += o.Accepted
	t.Orders += o.Orders
	t.Successes += o.Successes
	t.Asked += o.Asked
	t.Missing = append(t.Missing, o.Missing...)
}

// resultsReadAtOnce bounds the /result reads in flight.
const resultsReadAtOnce = 32

// verifyTickets asks the /result of every buyer of users that a holds a
// 202 or an unknown answer of, at rest (every 202 already counted as an
// order by the stats): a 202 is kept only if it is an order under its own
// ticket (I3, per ticket, as design.md states it).
func (b *runner) verifyTickets(ctx context.Context, base string, saleID int64, users []user, a *answers) (TicketCheck, error) {
	var tc TicketCheck
	var mu sync.Mutex
	var firstErr error
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(resultsReadAtOnce, len(users)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				u := int(next.Add(1) - 1)
				if u >= len(users) {
					return
				}
				tp := a.ticket[u].Load()
				if tp == nil && !a.unsure[u].Load() {
					continue
				}
				r, err := b.result(ctx, base, saleID, users[u])
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = fmt.Errorf("result of user %d: %w", users[u].id, err)
					}
				default:
					tc.Asked++
					if r.Status == "success" {
						tc.Successes++
					}
					if tp != nil {
						tc.Accepted++
						if r.Status == "success" && r.Ticket == *tp {
							tc.Orders++
						} else if len(tc.Missing) < maxMissing {
							tc.Missing = append(tc.Missing, fmt.Sprintf("user %d ticket %s: %s order %d ticket %q", users[u].id, *tp, r.Status, r.OrderID, r.Ticket))
						}
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return tc, firstErr
}

type purchaseResult struct {
	Status  string `json:"status"`
	OrderID int64  `json:"order_id"`
	Ticket  string `json:"ticket"`
}

// resultWait bounds how long one buyer's /result waits out 429s and 503s.
const resultWait = 30 * time.Second

// result reads a buyer's /result of the sale, waiting out its read budget.
func (b *runner) result(ctx context.Context, base string, saleID int64, u user) (purchaseResult, error) {
	deadline := time.Now().Add(resultWait)
	for {
		var r purchaseResult
		err := b.call(ctx, "GET", fmt.Sprintf("%s/api/sales/%d/result", base, saleID), u.auth, nil, http.StatusOK, &r)
		var he *httpError
		if err == nil || !errors.As(err, &he) || (he.status != http.StatusTooManyRequests && he.status != http.StatusServiceUnavailable) ||
			time.Now().Add(he.retryAfter).After(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(he.retryAfter):
		}
	}
}
