package seckill

import (
	"context"
	"errors"
	"time"
)

// Order statuses (I5: pending_payment → paid | cancelled, paid → refunded).
type OrderStatus string

const (
	OrderPending   OrderStatus = "pending_payment"
	OrderPaid      OrderStatus = "paid"
	OrderCancelled OrderStatus = "cancelled"
	OrderRefunded  OrderStatus = "refunded"
)

// Order is one unit sold to one user. There is at most one per (sale, user).
type Order struct {
	ID          int64       `json:"id"`
	OrderNo     string      `json:"order_no"`
	SaleID      int64       `json:"sale_id"`
	UserID      int64       `json:"user_id"`
	PriceCents  int64       `json:"price_cents"`
	Status      OrderStatus `json:"status"`
	CreatedAt   time.Time   `json:"created_at"`
	PayDeadline time.Time   `json:"pay_deadline"`
	PaidAt      *time.Time  `json:"paid_at"`
	CancelledAt *time.Time  `json:"cancelled_at"`
}

// OrderRequest is an accepted purchase on its way to SQL: the message on the
// order queue. Its ticket becomes the order number.
type OrderRequest struct {
	SaleID     int64     `json:"sale_id"`
	UserID     int64     `json:"user_id"`
	Ticket     string    `json:"ticket"`
	PriceCents int64     `json:"price_cents"`
	At         time.Time `json:"at"`
}

// Result statuses of a purchase as GET /api/sales/{id}/result shows them.
const (
	ResultNone    = "none"
	ResultQueued  = "queued"
	ResultSuccess = "success"
	ResultFailed  = "failed"
)

// OrderResult is the terminal outcome of one OrderRequest.
type OrderResult struct {
	SaleID  int64  `json:"sale_id"`
	UserID  int64  `json:"user_id"`
	Ticket  string `json:"ticket"`
	Status  string `json:"status"` // ResultSuccess or ResultFailed
	OrderID int64  `json:"order_id,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// OrderStore keeps orders and the stock ledger.
type OrderStore interface {
	// WriteOrders stores a batch in one transaction: it inserts one
	// pending_payment order per request (a request whose (sale, user) already
	// has an order is not inserted again and reports that order), decrements
	// each sale's stock_left by the number inserted only where enough is left,
	// and appends one ledger row per inserted order. It returns one result per
	// request, in order. A request that finds its sale without stock, or no
	// such sale, fails with reason ESoldOut or ENotFound and changes nothing.
	// An error means nothing was written.
	WriteOrders(ctx context.Context, reqs []OrderRequest, payBy time.Time) ([]OrderResult, error)
	// Order returns the order or ENotFound.
	Order(ctx context.Context, id int64) (*Order, error)
	// OrderBySaleUser returns the user's order in the sale or ENotFound.
	OrderBySaleUser(ctx context.Context, saleID, userID int64) (*Order, error)
	// OrdersByUser returns the user's orders, newest first.
	OrdersByUser(ctx context.Context, userID int64) ([]*Order, error)
	// SaleBuyers returns the users holding an order of any status in the sale.
	SaleBuyers(ctx context.Context, saleID int64) ([]int64, error)
	// SaleSnapshot returns the sale's stock_left and the users holding an
	// order of any status in it, both read from one consistent snapshot:
	// an order batch committed meanwhile is in both or in neither. The
	// gate is rebuilt from it. ENotFound if there is no such sale.
	SaleSnapshot(ctx context.Context, saleID int64) (stockLeft int64, buyers []int64, err error)
}

// GateResult is the answer of the stock gate.
type GateResult int

const (
	Reserved  GateResult = iota + 1 // one unit taken for this user
	Duplicate                       // the user already holds a unit
	SoldOut                         // no units left
)

func (r GateResult) String() string {
	switch r {
	case Reserved:
		return "reserved"
	case Duplicate:
		return "duplicate"
	case SoldOut:
		return "sold_out"
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
}

// GateSnapshot reads the state a sale is loaded into the gate with: its
// units left and the users who hold one (see StockGate.Load).
type GateSnapshot func(ctx context.Context) (left int64, buyers []int64, err error)

// GateState is the snapshot of a state known without reading anything.
func GateState(left int64, buyers []int64) GateSnapshot {
	return func(context.Context) (int64, []int64, error) { return left, buyers, nil }
}

// Settled names one request SQL has settled: its user and its ticket.
type Settled struct {
	UserID int64
	Ticket string
}

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
	// error of snapshot is returned and nothing is installed.
	Load(ctx context.Context, saleID int64, snapshot GateSnapshot) (loaded bool, err error)
	// Reserve does, atomically: if the user already holds a unit of the sale
	// → Duplicate; else if no unit is left → SoldOut; else take one unit,
	// record the user, remember the reservation stamped with the gate's
	// clock (until Settle or Release) and answer Reserved. EBusy if the
	// sale is not loaded.
	Reserve(ctx context.Context, r Reservation) (GateResult, error)
	// Release undoes the user's pending reservation with this ticket, which
	// will never become an order: the unit returns and the user and their
	// reservation are forgotten, so they may try again. It is a no-op when
	// the user holds no pending reservation with that ticket (none, one
	// settled, or a newer one after a release).
	Release(ctx context.Context, saleID, userID int64, ticket string) error
	// Settle forgets the pending reservations SQL has settled (as orders or
	// refusals); their users stay recorded as buyers. A reservation is
	// settled only if it is pending with the ticket given: a request
	// redelivered after a rebuild must not settle a newer reservation of the
	// same buyer (whose publish may still fail and need a Release). Unknown
	// users, tickets and sales are ignored.
	Settle(ctx context.Context, saleID int64, settled []Settled) error
	// Stale returns the sale's reservations at least olderThan old and not
	// settled or released: candidates for the reconciler. Ages are measured
	// on the gate's clock, the one that stamped the reservations, never the
	// caller's: instances whose clocks disagree see the same ages. With
	// olderThan 0 every pending reservation is returned.
	Stale(ctx context.Context, saleID int64, olderThan time.Duration) ([]Reservation, error)
	// Restock returns n units (from cancelled orders) for other buyers; the
	// buyers stay recorded. EBusy if the sale is not loaded.
	Restock(ctx context.Context, saleID, n int64) error
	// Left returns the units left and whether the sale is loaded.
	Left(ctx context.Context, saleID int64) (left int64, loaded bool, err error)
	// Forget drops one sale and everything the gate holds for it (a sale
	// that ended long ago), a pending Load's claim included; it is no
	// longer loaded. A no-op for a sale the gate does not hold.
	Forget(ctx context.Context, saleID int64) error
	// Unload forgets every sale and claim (the gate must be rebuilt before
	// admitting).
	Unload(ctx context.Context) error
}

// Locker hands out named locks with a lease, so that one instance of many
// does a job (rebuilding the gate). A lease is not renewed and may run out
// under a slow holder, or be lost in a failover: a job under a lock must
// stay correct when two holders run it at once (a gate rebuild does, since
// StockGate.Load never replaces a loaded sale); the lock only spares the
// work.
type Locker interface {
	// TryLock takes the lock for ttl if nobody holds it. ok is false when
	// someone does. release gives it up early (a no-op once it expired and
	// someone else took it).
	TryLock(ctx context.Context, name string, ttl time.Duration) (release func(context.Context) error, ok bool, err error)
}

// Delivery is one message fetched from the order queue. It must be acked once
// its request is settled in SQL, or nacked to be redelivered.
type Delivery interface {
	Request() OrderRequest
	Ack(ctx context.Context) error
	Nak(ctx context.Context) error
}

// ErrMaybeStored is wrapped by an OrderQueue.Publish error when the request
// was sent but not acknowledged: it may be stored and become an order.
var ErrMaybeStored = errors.New("the request may have been stored")

// OrderQueue is the durable queue between the gate and the order writer.
type OrderQueue interface {
	// Publish stores r durably and returns only once the queue acknowledged
	// it. EBusy when the queue is unavailable: r is not stored, unless the
	// error wraps ErrMaybeStored (r was sent but not acknowledged in time). The queue does not deduplicate: the stock gate admits a
	// (sale, user) once, and a pair stored twice (a publish retried after a
	// timeout) is settled once by the writer, through SQL's unique key. A
	// queue that dropped the second copy would turn a stored request whose
	// publish failed into a lost one.
	Publish(ctx context.Context, r OrderRequest) error
	// Fetch returns up to max deliveries, waiting at most wait for the first.
	// An empty slice means none arrived in time.
	Fetch(ctx context.Context, max int, wait time.Duration) ([]Delivery, error)
	// Pending counts requests published and not yet acked, for one sale, or
	// for all sales when saleID is 0.
	Pending(ctx context.Context, saleID int64) (int64, error)
	// PendingRequests lists the requests of a sale not yet acked (for
	// rebuilding the gate).
	PendingRequests(ctx context.Context, saleID int64) ([]OrderRequest, error)
}

// QueueRepairer is implemented by queues whose server can come back from a
// crash in a state where some stored requests would never be delivered
// (acked-message removals or the consumer's position lost or ahead). Repair
// makes every stored request deliverable again, never dropping one; it is
// cheap on a healthy queue and safe to run on several instances at once.
// The engine runs it before rebuilding the gate and in every reconciler
// round.
type QueueRepairer interface {
	Repair(ctx context.Context) error
}

// BatchAcker is implemented by queues that can ack a whole batch in one
// round trip; the order writer uses it when present. It returns once every
// ack is settled, like calling Ack on each delivery.
type BatchAcker interface {
	AckAll(ctx context.Context, ds []Delivery) error
}

// ResultBus carries order results to every instance, so whichever holds the
// buyer's connection can answer them.
type ResultBus interface {
	// PublishResults sends results to all subscribers.
	PublishResults(ctx context.Context, rs []OrderResult) error
	// SubscribeResults calls fn for every result published from now on until
	// the returned cancel is called.
	SubscribeResults(fn func(OrderResult)) (cancel func(), err error)
}

// Limiter is a set of token buckets, one per key.
type Limiter interface {
	// Allow takes a token from key's bucket and reports whether there was one.
	Allow(ctx context.Context, key string) (bool, error)
}

// Captcha is an issued captcha challenge.
type Captcha struct {
	Answer    string
	SaleID    int64
	UserID    int64
	ExpiresAt time.Time
}

// CaptchaStore keeps issued captchas until they are used or expire.
type CaptchaStore interface {
	// PutCaptcha stores c under id.
	PutCaptcha(ctx context.Context, id string, c Captcha) error
	// TakeCaptcha removes and returns the captcha: single use. ENotFound when
	// there is none or it expired.
	TakeCaptcha(ctx context.Context, id string) (*Captcha, error)
}
