package seckill

import (
	"context"
	"slices"
	"time"
)

// GateResult is the answer of the stock gate.
type GateResult int

const (
	Reserved  GateResult = iota + 1 // one unit taken for this user
	Duplicate                       // the user already holds a unit
	SoldOut                         // no units left
	Limited                         // the user's purchase bucket in the sale is empty (Reservation.Limit)
)

func (r GateResult) String() string {
	switch r {
	case Reserved:
		return "reserved"
	case Duplicate:
		return "duplicate"
	case SoldOut:
		return "sold_out"
	case Limited:
		return "limited"
	}
	return "unknown"
}

// Reservation is what the gate records for a unit it handed out.
type Reservation struct {
	SaleID int64
	UserID int64
	Ticket string
	// At is when the gate recorded it, by the gate's own clock (Redis's
	// TIME for a shared gate): instances compare reservations' ages, and
	// their wall clocks may disagree. Reserve ignores the caller's At.
	At time.Time
	// Limit is the user's purchase bucket in this sale, which Reserve
	// looks at before anything else and takes a token of when it refuses
	// (see StockGate.Reserve): the per-user purchase limit lives in the
	// gate, so that a purchase costs one step of a shared gate rather
	// than a limiter's and the gate's. The zero Limit takes none.
	Limit Bucket
}

// Bucket is a token bucket: Burst tokens at once, refilled at PerSecond
// tokens a second. PerSecond <= 0 is no bucket: every take succeeds.
type Bucket struct {
	PerSecond float64
	Burst     int
}

// GateContents is the state a sale is loaded into the gate with (see
// StockGate.Load).
type GateContents struct {
	// Left is the units left.
	Left int64
	// Buyers hold a unit each, with no reservation pending: the users
	// with an order in SQL.
	Buyers []int64
	// Queued are the requests on their way to SQL (in the queue): each
	// holds a unit, and is installed as a reservation already claimed by
	// the writer, under its ticket, so that the gate knows which request
	// holds the user's unit (Claim allows that ticket and refuses
	// another; Withdraw can give the unit back). A user listed in Buyers
	// or twice here holds one unit, as a buyer with no reservation.
	Queued []Settled
	// Returned are the orders whose unit Left includes already (cancelled
	// and refunded orders whose return the gate must treat as applied; see
	// StockGate.Return).
	Returned []int64
}

// Split divides c's unit holders as the gate installs them: buyers with no
// reservation (Buyers, and the users queued under two tickets or holding
// an order as well), and the claimed reservations of the users queued
// under one ticket (a request queued twice is one request).
func (c GateContents) Split() (buyers []int64, claimed []Settled) {
	type queued struct {
		ticket string
		two    bool // under two tickets
	}
	byUser := make(map[int64]queued, len(c.Queued))
	for _, q := range c.Queued {
		if u, ok := byUser[q.UserID]; !ok {
			byUser[q.UserID] = queued{ticket: q.Ticket}
		} else if u.ticket != q.Ticket {
			byUser[q.UserID] = queued{two: true}
		}
	}
	buyers = slices.Clip(c.Buyers) // appended to below, never into the caller's array
	for _, u := range c.Buyers {
		delete(byUser, u) // a buyer already
	}
	for _, q := range c.Queued {
		u, ok := byUser[q.UserID]
		switch {
		case !ok:
		case u.two:
			buyers = append(buyers, q.UserID)
		default:
			claimed = append(claimed, Settled{UserID: q.UserID, Ticket: u.ticket})
		}
		delete(byUser, q.UserID) // once
	}
	return buyers, claimed
}

// GateSnapshot reads the state a sale is loaded into the gate with.
type GateSnapshot func(ctx context.Context) (GateContents, error)

// GateState is the snapshot of a state known without reading anything,
// with nothing queued nor returned.
func GateState(left int64, buyers []int64) GateSnapshot {
	return func(context.Context) (GateContents, error) { return GateContents{Left: left, Buyers: buyers}, nil }
}

// Settled names one request by its user and its ticket: one SQL has
// settled (StockGate.Settle), or one the writer claims (StockGate.Claim).
type Settled struct {
	UserID int64
	Ticket string
}

// MaxReturn is the most orders one StockGate.Return takes (a relay's
// page): one step of the gate, so one Redis script, must stay short.
const MaxReturn = 500

// StockGate is the atomic stock counter in front of SQL. Every method is safe
// for concurrent use.
type StockGate interface {
	// Load loads a sale the gate does not hold: it claims the sale, reads
	// its state with snapshot (after the claim), and installs that state
	// with no reservation pending, in one atomic step. It never replaces a
	// loaded sale: a live sale has reservations on their way to the queue
	// that no snapshot shows, and replacing it would forget them while
	// their orders land. It reports whether it installed the state; false
	// with a nil error when the sale was loaded already, or when its claim
	// was lost before the install — another Load claimed the sale since
	// (its snapshot is the newer one), or the gate lost its state meanwhile
	// (a restarted Redis) — so that a snapshot older than anything admitted
	// is never installed. Ask again if the sale is still not loaded. An
	// error of snapshot is returned and nothing is installed. The
	// snapshot's returned orders are installed as returned in the same
	// step, so that a Return of their units is a no-op, and its queued
	// requests as claimed reservations (GateContents.Queued).
	Load(ctx context.Context, saleID int64, snapshot GateSnapshot) (loaded bool, err error)
	// Reserve does, atomically: if r.Limit is a bucket and the user's
	// bucket of this sale has no token → Limited, and nothing else changes;
	// else if the user already holds a unit of the sale → Duplicate; else
	// if no unit is left → SoldOut (either takes a token); else take one
	// unit, record the user, remember the reservation stamped with the
	// gate's clock (until Settle or Release) and answer Reserved, taking
	// no token: the bucket counts the presses that end without a unit
	// kept, refused here or released later (Release takes the token then),
	// and the press that reserves, once per user and sale, writes no
	// bucket. EBusy if the sale is not loaded (no token is taken). The
	// bucket is per user and sale, refilled by the gate's clock from
	// r.Limit (a burst of at least one), and kept only while it is not
	// full: a bucket idle long enough to refill is forgotten, as good as
	// new. Settle and Return leave buckets alone.
	Reserve(ctx context.Context, r Reservation) (GateResult, error)
	// Release undoes the user's pending reservation with this ticket, which
	// will never become an order: the unit returns and the user and their
	// reservation are forgotten, so they may try again. It takes a token of
	// the user's bucket of the sale when the gate knows the sale's bucket
	// (a Reserve of the sale with a Limit reached this gate): the press
	// ended without a unit, as a refused one does. It is a no-op when the
	// user holds no pending reservation with that ticket (none, one
	// settled, a newer one after a release, or one claimed by the writer),
	// or the sale is not loaded. released reports whether the reservation
	// is released: undone now, or, the sale loaded, the user holding
	// nothing and no buyer (released before: what a retry of a release
	// whose answer was lost finds). False when the user holds it claimed
	// or settled, holds another, or the sale is not loaded.
	Release(ctx context.Context, saleID, userID int64, ticket string) (released bool, err error)
	// Withdraw undoes the user's pending reservation with this ticket
	// whether or not the writer claimed it (Release leaves a claimed one
	// alone): the
	// unit returns and the user and their reservation are forgotten, and
	// a token of the user's bucket is taken as Release does. Call it only
	// for a ticket SQL has fenced (OrderStore.FenceTicket answered true):
	// the writer then never writes its request, so a claim on it promises
	// nothing. withdrawn reports whether it undid a reservation now; false
	// when the user holds no reservation with that ticket (withdrawn or
	// released before, settled, another ticket, a buyer with none). EBusy
	// if the sale is not loaded: a load in progress may install the
	// request's reservation from the queue (GateContents.Queued), so the
	// caller must ask again once the sale is loaded, not take the answer
	// for "nothing to withdraw".
	Withdraw(ctx context.Context, saleID, userID int64, ticket string) (withdrawn bool, err error)
	// Claim fences requests the order writer is about to write to SQL
	// against Release: for each request (its user and ticket), atomically,
	//   - the user's pending reservation has that ticket → it is marked
	//     claimed (Release no longer touches it; Settle clears it, and Stale
	//     no longer lists it) and the request is allowed;
	//   - the user holds no pending reservation but is a buyer (loaded by a
	//     rebuild from an order in SQL, or from two requests in the queue;
	//     or settled already) → allowed;
	//   - otherwise (the user is no buyer, or holds a pending reservation
	//     with another ticket) its reservation was released and its unit is
	//     back in stock → refused: the request must not become an order.
	// allowed[i] answers reqs[i]; requests are answered in order, so of two
	// of one user the second sees what the first did. Claiming again what
	// is claimed is allowed, so a batch written again (after SQL failed)
	// claims again. EBusy if the sale is not loaded (nothing is claimed).
	Claim(ctx context.Context, saleID int64, reqs []Settled) (allowed []bool, err error)
	// Settle forgets the pending reservations SQL has settled (as orders or
	// refusals); their users stay recorded as buyers. A reservation is
	// settled only if it is pending with the ticket given: a request
	// redelivered after a rebuild must not settle a newer reservation of the
	// same buyer (whose publish may still fail and need a Release). Unknown
	// users, tickets and sales are ignored.
	Settle(ctx context.Context, saleID int64, settled []Settled) error
	// Stale returns the sale's reservations at least olderThan old and not
	// settled, released or claimed: candidates for the reconciler (a
	// claimed one is in the writer's hands, which settles it). Ages are measured
	// on the gate's clock, the one that stamped the reservations, never the
	// caller's: instances whose clocks disagree see the same ages. With
	// olderThan 0 every pending reservation is returned.
	Stale(ctx context.Context, saleID int64, olderThan time.Duration) ([]Reservation, error)
	// Return gives the units of cancelled or refunded orders of the sale
	// back, once per order, in one atomic step: each order not in the
	// sale's returned set adds one unit to what is left and its id to the
	// set; one there already (or named twice) changes nothing. It returns
	// how many units came back. The orders' buyers stay buyers: whoever
	// cancelled or was refunded is answered Duplicate, so the units go to
	// others. EBusy if the sale is not loaded (nothing changes; the units
	// then wait in SQL's outbox until it is, and a load from SQL includes
	// them). A call takes at most MaxReturn orders.
	Return(ctx context.Context, saleID int64, orderIDs []int64) (returned int, err error)
	// Left returns the units left and whether the sale is loaded.
	Left(ctx context.Context, saleID int64) (left int64, loaded bool, err error)
	// Pending reports whether the user holds a reservation of the sale
	// that is not settled yet, claimed by a writer or not: their purchase
	// is on its way to SQL (or its publish failed and the reconciler will
	// release it). loaded is false, and pending with it, if the sale is
	// not loaded.
	Pending(ctx context.Context, saleID, userID int64) (pending, loaded bool, err error)
	// Forget drops one sale and everything the gate holds for it (a sale
	// that ended long ago), a pending Load's claim included; it is no
	// longer loaded. A no-op for a sale the gate does not hold.
	Forget(ctx context.Context, saleID int64) error
	// Unload forgets every sale and claim (the gate must be rebuilt before
	// admitting).
	Unload(ctx context.Context) error
}

// Locker hands out named locks with a lease, so that one instance of many
// does a job (rebuilding the gate). A lease may run out under a holder too
// slow to extend it, or be lost in a failover: a job under a lock must
// stay correct when two holders run it at once (a gate rebuild does, since
// StockGate.Load never replaces a loaded sale); the lock only spares the
// work.
type Locker interface {
	// TryLock takes the lock for ttl if nobody holds it. ok is false when
	// someone does.
	TryLock(ctx context.Context, name string, ttl time.Duration) (lease Lease, ok bool, err error)
}

// Lease is a lock a Locker granted.
type Lease struct {
	// Release gives the lock up early (a no-op once the lease ran out and
	// someone else took it).
	Release func(context.Context) error
	// Extend makes the lease last ttl from now, and reports false when it
	// was lost (ran out, or released) and is not extended. A holder that
	// extends a short lease while it works keeps the lock as long as it
	// lives, and one that dies holds it up only that short while.
	Extend func(ctx context.Context, ttl time.Duration) (bool, error)
}
