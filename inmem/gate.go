// Package inmem holds the in-process backends of the embedded default: the
// stock gate, rate limiters, captcha store and a session cache. They keep
// their state in memory and are lost with the process; the engine rebuilds
// the gate from SQL and the queue at start. Store and Queue stand in for
// SQL and the order queue in tests: each backend here passes the contract
// suite of its interface (internal/contract), as the real ones do.
package inmem

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"seckill"
)

var _ seckill.StockGate = (*Gate)(nil)

// Gate is the in-process stock gate: one mutex per sale guarding the units
// left and the set of buyers. The critical section is a map lookup and an
// insert, so contention stays low even for one hot sale.
type Gate struct {
	mu     sync.RWMutex
	sales  map[int64]*gateSale
	claims map[int64]uint64 // sale → the claim of the Load that may install it
	seq    uint64           // last claim handed out
	now    func() time.Time // stamps reservations and measures their age
}

type gateSale struct {
	mu       sync.Mutex
	left     int64
	buyers   map[int64]int      // user → 1 + its pending slot, 0 when none is pending
	pending  pendingSlab        // reservations not yet settled in SQL
	returned map[int64]struct{} // orders whose unit came back (Return)
	limits   *Limiter           // the buyers' purchase buckets (Reservation.Limit); nil until one is asked for
}

// NewGate returns an empty gate on the wall clock; every sale must be
// loaded before it admits.
func NewGate() *Gate { return NewGateClock(time.Now) }

// NewGateClock returns an empty gate whose reservations are stamped and
// aged by now (tests inject a clock). The gate lives in one process, so
// one clock serves everyone who compares its times.
func NewGateClock(now func() time.Time) *Gate {
	return &Gate{sales: make(map[int64]*gateSale), claims: make(map[int64]uint64), now: now}
}

func (g *Gate) sale(id int64) *gateSale {
	g.mu.RLock()
	s := g.sales[id]
	g.mu.RUnlock()
	return s
}

// Load claims an unloaded sale, reads its state and installs it if the
// sale is still unloaded and the claim still this call's.
func (g *Gate) Load(ctx context.Context, saleID int64, snapshot seckill.GateSnapshot) (bool, error) {
	g.mu.Lock()
	if g.sales[saleID] != nil {
		g.mu.Unlock()
		return false, nil
	}
	g.seq++
	claim := g.seq
	g.claims[saleID] = claim
	g.mu.Unlock()

	c, err := snapshot(ctx)
	if err != nil {
		g.mu.Lock()
		if g.claims[saleID] == claim {
			delete(g.claims, saleID)
		}
		g.mu.Unlock()
		return false, err
	}
	s := &gateSale{
		left: c.Left, buyers: make(map[int64]int, len(c.Buyers)+len(c.Queued)),
		returned: make(map[int64]struct{}, len(c.Returned)),
	}
	buyers, claimed := c.Split()
	for _, u := range buyers {
		s.buyers[u] = 0
	}
	at := g.now().UnixNano()
	for _, q := range claimed {
		slot := s.pending.add(q.UserID, q.Ticket, at)
		s.pending.claim(slot)
		s.buyers[q.UserID] = 1 + slot
	}
	for _, o := range c.Returned {
		s.returned[o] = struct{}{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sales[saleID] != nil || g.claims[saleID] != claim {
		return false, nil
	}
	delete(g.claims, saleID)
	g.sales[saleID] = s
	return true, nil
}

// Reserve takes one unit for the user unless they hold one or none is left
// (seckill.StockGate.Reserve): a refusal takes a token of the user's
// bucket, the reservation none, so a buyer who presses once costs no
// bucket.
func (g *Gate) Reserve(_ context.Context, r seckill.Reservation) (seckill.GateResult, error) {
	s := g.sale(r.SaleID)
	if s == nil {
		return 0, seckill.Errorf(seckill.EBusy, "stock of sale %d is not loaded", r.SaleID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var limits *Limiter
	if r.Limit.PerSecond > 0 {
		limits = s.limiter(r.Limit, g.now)
		if !limits.hasToken(r.UserID) {
			return seckill.Limited, nil
		}
	}
	refused := seckill.Duplicate
	if _, ok := s.buyers[r.UserID]; !ok {
		if s.left > 0 {
			s.left--
			s.buyers[r.UserID] = 1 + s.pending.add(r.UserID, r.Ticket, g.now().UnixNano())
			return seckill.Reserved, nil
		}
		refused = seckill.SoldOut
	}
	if limits != nil {
		// Under s.mu, whose holders alone use the sale's buckets, on a
		// clock that only moves on: the token just seen is there.
		limits.take(r.UserID)
	}
	return refused, nil
}

// limiter is the sale's purchase buckets for the budget b. Every caller
// passes the same budget (the engine's configuration); a budget that
// changes starts every bucket over. Called with s.mu held.
func (s *gateSale) limiter(b seckill.Bucket, now func() time.Time) *Limiter {
	if s.limits == nil || s.limits.limit != rate.Limit(b.PerSecond) || s.limits.burst != max(b.Burst, 1) {
		s.limits = NewLimiterClock(b.PerSecond, b.Burst, now)
	}
	return s.limits
}

// Release gives back the user's unit and forgets the user, unless the
// writer claimed the reservation.
func (g *Gate) Release(_ context.Context, saleID, userID int64, ticket string) (bool, error) {
	s := g.sale(saleID)
	if s == nil {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, buyer := s.buyers[userID]
	slot := v - 1
	if !buyer {
		return true, nil // released before (or never a buyer): nothing pending
	}
	if slot < 0 || !s.pending.holds(slot, ticket) || s.pending.claimed(slot) {
		return false, nil
	}
	s.drop(userID, slot)
	return true, nil
}

// Withdraw gives back the user's unit and forgets the user if their
// reservation, claimed or not, has this ticket.
func (g *Gate) Withdraw(_ context.Context, saleID, userID int64, ticket string) (bool, error) {
	s := g.sale(saleID)
	if s == nil {
		return false, seckill.Errorf(seckill.EBusy, "stock of sale %d is not loaded", saleID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := s.buyers[userID] - 1
	if slot < 0 || !s.pending.holds(slot, ticket) {
		return false, nil
	}
	s.drop(userID, slot)
	return true, nil
}

// drop undoes the user's reservation in slot: the unit comes back, the user
// is forgotten, and the press costs a token of their bucket (it ended
// without a unit). Called with s.mu held.
func (s *gateSale) drop(userID int64, slot int) {
	s.pending.drop(slot)
	delete(s.buyers, userID)
	s.left++
	if s.limits != nil {
		s.limits.take(userID)
	}
}

// Claim marks the reservations pending with the tickets given as claimed
// and allows them, allows buyers with none pending, and refuses the rest.
func (g *Gate) Claim(_ context.Context, saleID int64, reqs []seckill.Settled) ([]bool, error) {
	s := g.sale(saleID)
	if s == nil {
		return nil, seckill.Errorf(seckill.EBusy, "stock of sale %d is not loaded", saleID)
	}
	allowed := make([]bool, len(reqs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range reqs {
		v, buyer := s.buyers[r.UserID]
		if slot := v - 1; slot >= 0 {
			if s.pending.holds(slot, r.Ticket) {
				s.pending.claim(slot)
				allowed[i] = true
			}
			continue
		}
		allowed[i] = buyer
	}
	return allowed, nil
}

// Settle forgets the reservations pending with the tickets given; their
// users stay buyers.
func (g *Gate) Settle(_ context.Context, saleID int64, settled []seckill.Settled) error {
	s := g.sale(saleID)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range settled {
		if slot := s.buyers[st.UserID] - 1; slot >= 0 && s.pending.holds(slot, st.Ticket) {
			s.pending.drop(slot)
			s.buyers[st.UserID] = 0
		}
	}
	if s.pending.n == 0 {
		// Once the writer has caught up, let the peak of a big sale go.
		s.pending = pendingSlab{}
	}
	return nil
}

// Stale lists pending reservations at least olderThan old by the gate's
// clock, but not those claimed.
func (g *Gate) Stale(_ context.Context, saleID int64, olderThan time.Duration) ([]seckill.Reservation, error) {
	s := g.sale(saleID)
	if s == nil {
		return nil, nil
	}
	cutoff := g.now().Add(-olderThan).UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []seckill.Reservation
	s.pending.each(func(slot int, p *pending) {
		if p.at <= cutoff && !p.claimed() {
			out = append(out, seckill.Reservation{SaleID: saleID, UserID: p.user, Ticket: s.pending.ticket(slot), At: time.Unix(0, p.at)})
		}
	})
	return out, nil
}

// Return adds the orders' units back once per order id, in one step.
func (g *Gate) Return(_ context.Context, saleID int64, orderIDs []int64) (int, error) {
	if len(orderIDs) > seckill.MaxReturn {
		return 0, fmt.Errorf("inmem: return of %d orders to sale %d: at most %d at once", len(orderIDs), saleID, seckill.MaxReturn)
	}
	s := g.sale(saleID)
	if s == nil {
		return 0, seckill.Errorf(seckill.EBusy, "stock of sale %d is not loaded", saleID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range orderIDs {
		if _, ok := s.returned[id]; !ok {
			s.returned[id] = struct{}{}
			n++
		}
	}
	s.left += int64(n)
	return n, nil
}

// Left returns the units left of a loaded sale.
func (g *Gate) Left(_ context.Context, saleID int64) (int64, bool, error) {
	s := g.sale(saleID)
	if s == nil {
		return 0, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.left, true, nil
}

// Pending reports whether the user's reservation of the sale is pending.
func (g *Gate) Pending(_ context.Context, saleID, userID int64) (bool, bool, error) {
	s := g.sale(saleID)
	if s == nil {
		return false, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buyers[userID] > 0, true, nil
}

// Forget drops the sale.
func (g *Gate) Forget(_ context.Context, saleID int64) error {
	g.mu.Lock()
	delete(g.sales, saleID)
	delete(g.claims, saleID)
	g.mu.Unlock()
	return nil
}

// Unload forgets every sale.
func (g *Gate) Unload(context.Context) error {
	g.mu.Lock()
	g.sales = make(map[int64]*gateSale)
	g.claims = make(map[int64]uint64)
	g.mu.Unlock()
	return nil
}
