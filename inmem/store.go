package inmem

import (
	"bytes"
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"seckill"
)

var (
	_ seckill.UserStore      = (*Store)(nil)
	_ seckill.SessionStore   = (*Store)(nil)
	_ seckill.SessionRevoker = (*Store)(nil)
	_ seckill.SaleStore      = (*Store)(nil)
	_ seckill.OrderStore     = (*Store)(nil)
)

// Store keeps users, sessions, sales, orders, the stock ledger and the
// order lifecycle (payments, units to return to the gate; lifecycle.go) in
// memory, with the semantics of the SQL stores (package sqldb): one order
// per (sale, user), a conditional stock decrement, a ledger that sums to
// stock_left, one winner when a payment races a cancel, and reads that see
// one consistent state. It is lost with the
// process, so it serves tests and demos, never a sale that must survive a
// restart. Every method is safe for concurrent use.
//
// Times come back as SQL gives them: UTC, whole milliseconds.
type Store struct {
	now func() time.Time

	// One lock for everything: a write batch holds it for its whole
	// transaction and every read sees the state between two writes, which
	// is SQL's snapshot (SaleSnapshot, SaleStats).
	mu       sync.RWMutex
	users    map[int64]*seckill.User
	phones   map[string]int64
	sessions map[string]seckill.Session
	sales    map[int64]*storeSale
	orders   map[int64]*seckill.Order
	bySU     map[[2]int64]int64 // (sale, user) → order: the unique key
	byNo     map[string]int64   // order number → order, for payments
	byUser   map[int64][]int64  // user → orders, oldest first
	lastUser int64
	lastSale int64
	lastOrd  int64
	lc       lifecycle // payments and the gate's outbox (lifecycle.go)
}

type storeSale struct {
	s      seckill.Sale
	ledger int64           // sum of the stock-ledger deltas
	buyers []int64         // users holding an order, any status
	fenced map[string]bool // tickets whose reservations were released (FenceTicket)
	saleLifecycle
}

// NewStore returns an empty store on the wall clock.
func NewStore() *Store { return NewStoreClock(time.Now) }

// NewStoreClock returns an empty store whose creation times and session
// expiry are read from now (tests inject a clock).
func NewStoreClock(now func() time.Time) *Store {
	return &Store{
		now:      now,
		users:    make(map[int64]*seckill.User),
		phones:   make(map[string]int64),
		sessions: make(map[string]seckill.Session),
		sales:    make(map[int64]*storeSale),
		orders:   make(map[int64]*seckill.Order),
		bySU:     make(map[[2]int64]int64),
		byNo:     make(map[string]int64),
		byUser:   make(map[int64][]int64),
		lc:       newLifecycle(),
	}
}

// stamp is t as SQL gives it back: UTC, whole milliseconds.
func stamp(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// Ping reports that the store answers; it always does.
func (s *Store) Ping(context.Context) error { return nil }

// CreateUser inserts u and sets its ID and CreatedAt. EPhoneTaken if the
// phone is registered.
func (s *Store) CreateUser(ctx context.Context, u *seckill.User) error {
	return s.CreateUsers(ctx, []*seckill.User{u})
}

// CreateUsers inserts users at once and sets their IDs and CreatedAt.
// EPhoneTaken, with nothing inserted, if any phone is registered or appears
// twice.
func (s *Store) CreateUsers(_ context.Context, users []*seckill.User) error {
	created := stamp(s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		if _, taken := s.phones[u.Phone]; taken || seen[u.Phone] {
			return seckill.Errorf(seckill.EPhoneTaken, "phone %s is registered", u.Phone)
		}
		seen[u.Phone] = true
	}
	for _, u := range users {
		s.lastUser++
		u.ID, u.CreatedAt = s.lastUser, created
		c := *u
		s.users[u.ID], s.phones[u.Phone] = &c, u.ID
	}
	return nil
}

// UpdateUser stores u's nickname, role and password hash. ENotFound if
// there is no user with u.ID.
func (s *Store) UpdateUser(_ context.Context, u *seckill.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.users[u.ID]
	if !ok {
		return seckill.Errorf(seckill.ENotFound, "no user %d", u.ID)
	}
	cur.Nickname, cur.Role, cur.PasswordHash = u.Nickname, u.Role, u.PasswordHash
	return nil
}

// UserByID returns the user or ENotFound.
func (s *Store) UserByID(_ context.Context, id int64) (*seckill.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[id]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no user %d", id)
	}
	c := *u
	return &c, nil
}

// UserByPhone returns the user or ENotFound.
func (s *Store) UserByPhone(ctx context.Context, phone string) (*seckill.User, error) {
	s.mu.RLock()
	id, ok := s.phones[phone]
	s.mu.RUnlock()
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no user with phone %s", phone)
	}
	return s.UserByID(ctx, id)
}

// CreateSession stores sess (replacing one with the same token hash).
func (s *Store) CreateSession(_ context.Context, sess seckill.Session) error {
	sess.TokenHash = bytes.Clone(sess.TokenHash)
	sess.ExpiresAt = stamp(sess.ExpiresAt)
	s.mu.Lock()
	s.sessions[string(sess.TokenHash)] = sess
	s.mu.Unlock()
	return nil
}

// Session returns the session with this token hash, or ENotFound when
// there is none or it expired (ExpiresAt at or before now).
func (s *Store) Session(_ context.Context, tokenHash []byte) (*seckill.Session, error) {
	now := s.now()
	s.mu.RLock()
	sess, ok := s.sessions[string(tokenHash)]
	s.mu.RUnlock()
	if !ok || !now.Before(sess.ExpiresAt) {
		return nil, seckill.Errorf(seckill.ENotFound, "no session")
	}
	sess.TokenHash = bytes.Clone(sess.TokenHash)
	return &sess, nil
}

// TouchSession moves the expiry of a live session. A missing or expired
// session is left alone and is not an error.
func (s *Store) TouchSession(_ context.Context, tokenHash []byte, expiresAt time.Time) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.sessions[string(tokenHash)]; ok && now.Before(sess.ExpiresAt) {
		sess.ExpiresAt = stamp(expiresAt)
		s.sessions[string(tokenHash)] = sess
	}
	return nil
}

// DeleteSession removes a session. A missing session is not an error.
func (s *Store) DeleteSession(_ context.Context, tokenHash []byte) error {
	s.mu.Lock()
	delete(s.sessions, string(tokenHash))
	s.mu.Unlock()
	return nil
}

// UserSessions returns the token hashes of every session of the user.
func (s *Store) UserSessions(_ context.Context, userID int64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hashes [][]byte
	for k, sess := range s.sessions {
		if sess.UserID == userID {
			hashes = append(hashes, []byte(k))
		}
	}
	return hashes, nil
}

// DeleteUserSessions removes every session of the user and returns their
// token hashes.
func (s *Store) DeleteUserSessions(_ context.Context, userID int64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hashes [][]byte
	for k, sess := range s.sessions {
		if sess.UserID == userID {
			hashes = append(hashes, []byte(k))
			delete(s.sessions, k)
		}
	}
	return hashes, nil
}

// CreateSale inserts sale, sets ID, CreatedAt and StockLeft = Stock, and
// records the initial stock in the ledger. EInvalid if the stock is
// negative or above seckill.MaxStock.
func (s *Store) CreateSale(_ context.Context, sale *seckill.Sale) error {
	if sale.Stock < 0 || sale.Stock > seckill.MaxStock {
		return seckill.Errorf(seckill.EInvalid, "stock %d out of range 0..%d", sale.Stock, seckill.MaxStock)
	}
	created := stamp(s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSale++
	sale.ID, sale.CreatedAt, sale.StockLeft = s.lastSale, created, sale.Stock
	c := *sale
	c.StartsAt, c.EndsAt = stamp(c.StartsAt), stamp(c.EndsAt)
	s.sales[c.ID] = &storeSale{s: c, ledger: c.Stock}
	return nil
}

// Sale returns the sale or ENotFound.
func (s *Store) Sale(_ context.Context, id int64) (*seckill.Sale, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss, ok := s.sales[id]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no sale %d", id)
	}
	c := ss.s
	return &c, nil
}

// EndSale stops a sale early (seckill.SaleStore). ENotFound if no sale.
func (s *Store) EndSale(_ context.Context, id int64, at time.Time) (*seckill.Sale, error) {
	at = stamp(at)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sales[id]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no sale %d", id)
	}
	if ss.s.EndsAt.After(at) {
		ss.s.EndsAt = at
		if ss.s.StartsAt.After(at) {
			ss.s.StartsAt = at
		}
	}
	c := ss.s
	return &c, nil
}

// Sales returns every sale, by start time then id.
func (s *Store) Sales(context.Context) ([]*seckill.Sale, error) {
	s.mu.RLock()
	out := make([]*seckill.Sale, 0, len(s.sales))
	for _, ss := range s.sales {
		c := ss.s
		out = append(out, &c)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *seckill.Sale) int {
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// SaleStats counts the sale's orders by status and sums its ledger, from
// one consistent state. ENotFound if there is no such sale.
func (s *Store) SaleStats(_ context.Context, id int64) (*seckill.SaleStats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss, ok := s.sales[id]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no sale %d", id)
	}
	st := &seckill.SaleStats{Stock: ss.s.Stock, SQLStockLeft: ss.s.StockLeft, LedgerSum: ss.ledger}
	for _, u := range ss.buyers {
		st.Orders++
		switch s.orders[s.bySU[[2]int64{id, u}]].Status {
		case seckill.OrderPending:
			st.Pending++
		case seckill.OrderPaid:
			st.Paid++
		case seckill.OrderCancelled:
			st.Cancelled++
		case seckill.OrderRefunded:
			st.Refunded++
		}
	}
	return st, nil
}

// WriteOrders stores a batch at once, as one SQL transaction would: the
// first request of each (sale, user) inserts a pending order if the pair
// holds none and the sale has a unit left (taking it, with a ledger entry),
// reports the order the pair holds if it has one (taking no unit), and
// fails with ESoldOut or ENotFound (no such sale) otherwise; a later
// request of the same pair in the batch shares that outcome. A request
// whose ticket FenceTicket recorded changes nothing, and the next request
// of its pair is the first; it reports the order its pair holds after the
// batch, if any, and fails with EExpired otherwise. One result per
// request, in order. It never fails.
func (s *Store) WriteOrders(_ context.Context, reqs []seckill.OrderRequest, payBy time.Time) ([]seckill.OrderResult, error) {
	res := make([]seckill.OrderResult, len(reqs))
	payBy = stamp(payBy)
	// The batch holds the store, as SQL's holds its sales: FenceTicket
	// decides either before it or after it.
	s.mu.Lock()
	defer s.mu.Unlock()
	var fenced []int
	for i, r := range reqs {
		res[i] = seckill.OrderResult{SaleID: r.SaleID, UserID: r.UserID, Result: seckill.Result{Ticket: r.Ticket}}
		ss, ok := s.sales[r.SaleID]
		if !ok {
			res[i].Status, res[i].Reason = seckill.ResultFailed, seckill.ENotFound
			continue
		}
		if ss.fenced[r.Ticket] {
			fenced = append(fenced, i) // answered below, once the batch's orders are in
			continue
		}
		key := [2]int64{r.SaleID, r.UserID}
		if id, ok := s.bySU[key]; ok {
			res[i].Status, res[i].OrderID = seckill.ResultSuccess, id
			continue
		}
		if ss.s.StockLeft <= 0 {
			res[i].Status, res[i].Reason = seckill.ResultFailed, seckill.ESoldOut
			continue
		}
		ss.s.StockLeft--
		ss.ledger--
		ss.buyers = append(ss.buyers, r.UserID)
		s.lastOrd++
		o := &seckill.Order{
			ID: s.lastOrd, OrderNo: r.Ticket, SaleID: r.SaleID, UserID: r.UserID,
			PriceCents: r.PriceCents, Status: seckill.OrderPending,
			CreatedAt: stamp(r.At), PayDeadline: payBy,
		}
		s.orders[o.ID], s.bySU[key], s.byNo[o.OrderNo] = o, o.ID, o.ID
		s.byUser[r.UserID] = append(s.byUser[r.UserID], o.ID)
		res[i].Status, res[i].OrderID = seckill.ResultSuccess, o.ID
	}
	for _, i := range fenced {
		if id, ok := s.bySU[[2]int64{reqs[i].SaleID, reqs[i].UserID}]; ok {
			res[i].Status, res[i].OrderID = seckill.ResultSuccess, id
		} else {
			res[i].Status, res[i].Reason = seckill.ResultFailed, seckill.EExpired
		}
	}
	return res, nil
}

// Order returns the order or ENotFound.
func (s *Store) Order(_ context.Context, id int64) (*seckill.Order, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.order(id)
}

func (s *Store) order(id int64) (*seckill.Order, error) {
	o, ok := s.orders[id]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "no order %d", id)
	}
	c := *o
	return &c, nil
}

// OrderBySaleUser returns the user's order in the sale or ENotFound.
func (s *Store) OrderBySaleUser(_ context.Context, saleID, userID int64) (*seckill.Order, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.bySU[[2]int64{saleID, userID}]
	if !ok {
		return nil, seckill.Errorf(seckill.ENotFound, "user %d has no order in sale %d", userID, saleID)
	}
	return s.order(id)
}

// OrdersByUser returns the user's orders, newest (highest id) first.
func (s *Store) OrdersByUser(_ context.Context, userID int64) ([]*seckill.Order, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := s.byUser[userID]
	out := make([]*seckill.Order, 0, len(ids))
	for _, id := range slices.Backward(ids) {
		c := *s.orders[id]
		out = append(out, &c)
	}
	return out, nil
}

// SaleBuyers returns the users holding an order of any status in the sale,
// by user id.
func (s *Store) SaleBuyers(_ context.Context, saleID int64) ([]int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []int64
	if ss, ok := s.sales[saleID]; ok {
		out = slices.Clone(ss.buyers)
		slices.Sort(out)
	}
	return out, nil
}

// SaleSnapshot returns the sale's stock_left and its buyers from one
// consistent state. ENotFound if there is no such sale.
func (s *Store) SaleSnapshot(_ context.Context, saleID int64) (int64, []int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss, ok := s.sales[saleID]
	if !ok {
		return 0, nil, seckill.Errorf(seckill.ENotFound, "no sale %d", saleID)
	}
	buyers := slices.Clone(ss.buyers)
	slices.Sort(buyers)
	return ss.s.StockLeft, buyers, nil
}

// FenceTicket decides that ticket (userID's request in saleID) never
// becomes an order, under the lock every WriteOrders holds: true if the
// ticket was fenced before or is recorded now, false (nothing recorded)
// if the pair holds an order. A sale that does not exist has no order to
// write: true, and nothing is kept.
func (s *Store) FenceTicket(_ context.Context, saleID, userID int64, ticket string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sales[saleID]
	if !ok || ss.fenced[ticket] {
		return true, nil
	}
	if _, ok := s.bySU[[2]int64{saleID, userID}]; ok {
		return false, nil
	}
	if ss.fenced == nil {
		ss.fenced = make(map[string]bool)
	}
	ss.fenced[ticket] = true
	return true, nil
}

// FencedTickets returns the tickets of the sale that FenceTicket recorded.
func (s *Store) FencedTickets(_ context.Context, saleID int64) (map[string]bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fenced := make(map[string]bool)
	if ss, ok := s.sales[saleID]; ok {
		maps.Copy(fenced, ss.fenced)
	}
	return fenced, nil
}
