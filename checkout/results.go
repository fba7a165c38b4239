package checkout

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"seckill"
)

// Result tells the user where their purchase stands: queued, success (with
// the order), failed (with the reason) or none. A purchase queued for over
// ResultRecheck is looked up in SQL (its result message may have been
// lost); while SQL has no order, or fails, it stays queued. "none" means
// neither this process nor SQL knows a purchase: before the engine is
// Ready (recovering after a restart) the queue may still hold one, which
// the HTTP layer answers busy. ENotFound instead of "none" if there is
// no such sale (as the sale's other routes answer).
func (e *Engine) Result(ctx context.Context, userID, saleID int64) (seckill.Result, error) {
	if r, ok, recheck := e.results.lookup(saleID, userID, e.now().Add(-e.cfg.ResultRecheck)); ok {
		if recheck {
			if found, ok, err := e.recheck(ctx, saleID, userID); ok {
				return found, nil
			} else if err != nil && ctx.Err() == nil {
				e.log.Warn("result: look-up of a queued purchase in SQL", "sale", saleID, "user", userID, "err", err)
			}
		}
		if r.Status == seckill.ResultFailed && r.Reason == seckill.EExpired {
			// The failure of a request whose reservation was released
			// before it reached the queue. It may be the buyer's old
			// request, landed late, while a newer one of theirs became
			// an order (its success heard before, and forgotten, or
			// not yet): the order in SQL is the answer then.
			if o, err := e.b.Orders.OrderBySaleUser(ctx, saleID, userID); err == nil {
				return orderResult(o), nil
			}
		}
		return r, nil
	}
	if r, found, err := e.sqlResult(ctx, saleID, userID); err != nil || found {
		return r, err
	}
	if e.heardQueued(saleID, userID) {
		return seckill.Result{Status: seckill.ResultQueued}, nil
	}
	s, err := e.Sale(ctx, saleID)
	if err != nil {
		return seckill.Result{}, err // no such sale: not_found, as the sale's other routes
	}
	if queued, err := e.gateQueued(ctx, s, userID); err != nil || queued {
		return seckill.Result{Status: seckill.ResultQueued}, err
	}
	// The order may have been written since SQL was read: its result
	// heard meanwhile (an ordered buyer is not heardQueued), its
	// reservation settled (the gate's no). The writer commits before
	// either, so SQL has it now (found by review: 22 of 9,600 winners
	// read "none" 11–65 ms after their 202 on another instance).
	if r, found, err := e.sqlResult(ctx, saleID, userID); err != nil || found {
		return r, err
	}
	return seckill.Result{Status: seckill.ResultNone}, nil
}

// sqlResult is the success of the user's order in the sale, if SQL has
// one.
func (e *Engine) sqlResult(ctx context.Context, saleID, userID int64) (r seckill.Result, found bool, err error) {
	o, err := e.b.Orders.OrderBySaleUser(ctx, saleID, userID)
	switch seckill.ErrorCode(err) {
	case "":
		return orderResult(o), true, nil
	case seckill.ENotFound:
		return seckill.Result{}, false, nil
	}
	return seckill.Result{}, false, err
}

// gateQueued asks the gate whether the user, whose order SQL does not
// have and whose request this instance has not heard (or heard over
// heardResultFor ago), holds a reservation of s still on its way to SQL.
// Without it a purchase answered 202 read "none" on an instance that had
// not heard its request: one restarted while the writer was held back,
// one past its minute of trust in the hearing, one whose feed was
// catching up after a NATS restart (found by review: up to 40 of 40
// winners for up to 40 s). A sale the gate should hold but does not is
// being rebuilt: busy, not "none". An ended sale that left the gate has
// no reservations.
func (e *Engine) gateQueued(ctx context.Context, s *seckill.Sale, userID int64) (bool, error) {
	if _, gone := e.forgotten.Load(s.ID); gone || !gateServes(s, e.SaleTime()) {
		return false, nil
	}
	pending, loaded, err := e.b.Gate.Pending(ctx, s.ID, userID)
	switch {
	case err != nil:
		return false, err
	case !loaded:
		e.maybeRebuild()
		return false, seckill.Errorf(seckill.EBusy, "the stock of sale %d is being loaded", s.ID)
	}
	return pending, nil
}

// orderResult is the success of the purchase that became o: its ticket is
// the order number.
func orderResult(o *seckill.Order) seckill.Result {
	return seckill.Result{Status: seckill.ResultSuccess, OrderID: o.ID, Ticket: o.OrderNo}
}

// resultMap remembers the latest outcome per (sale, user) on this instance.
// Results of other instances' purchases arrive through the result bus; a
// miss falls back to SQL. Every instance hears every result, so successes,
// which SQL answers as well, are forgotten after keepSuccess: the map holds
// what is queued, what failed (SQL has no trace of a refusal) and the
// successes of the last minute, not every buyer of every sale. A sale's
// results go altogether when it leaves the gate (Engine.ForgetEnded).
type resultMap struct {
	shards [64]resultShard
	now    func() time.Time
	next   atomic.Int64 // the shard claimQueued starts at
}

// keepSuccess is how long a success stays in the map; sweepEvery is how
// often a shard looks for old ones, when a result arrives.
const (
	keepSuccess = time.Minute
	sweepEvery  = 10 * time.Second
)

type resultShard struct {
	mu    sync.Mutex
	m     map[resultKey]resultEntry
	swept time.Time
}

type resultKey struct{ sale, user int64 }

type resultEntry struct {
	r seckill.Result // its Ticket names the purchase
	// at is when a success was recorded; for a queued purchase, when it
	// was queued or last looked up in SQL (see claimQueued).
	at time.Time
}

func newResultMap() *resultMap {
	rm := &resultMap{now: time.Now}
	for i := range rm.shards {
		rm.shards[i].m = make(map[resultKey]resultEntry)
	}
	return rm
}

func (rm *resultMap) shard(k resultKey) *resultShard {
	return &rm.shards[uint64(k.user*31+k.sale)%uint64(len(rm.shards))]
}

// queue marks a purchase queued and returns the entry it replaced, for
// unqueue to put back if the publish fails.
func (rm *resultMap) queue(sale, user int64, ticket string) (prev resultEntry, had bool) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	prev, had = sh.m[k]
	// A failed earlier attempt may be retried; a success stays.
	if !had || prev.r.Status != seckill.ResultSuccess {
		sh.m[k] = resultEntry{r: seckill.Result{Status: seckill.ResultQueued, Ticket: ticket}, at: rm.now()}
	}
	return prev, had
}

// unqueue undoes queue for a ticket whose publish failed, restoring what
// was there before, unless a result arrived meanwhile.
func (rm *resultMap) unqueue(sale, user int64, ticket string, prev resultEntry, had bool) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[k]; ok && e.r.Ticket == ticket && e.r.Status == seckill.ResultQueued {
		if had {
			sh.m[k] = prev
		} else {
			delete(sh.m, k)
		}
	}
}

// settle records a terminal result; a success is never replaced by a later
// failure of a stray redelivery, and a purchase queued with one ticket is
// not ended by the failure of another (an older request, refused because
// its reservation was released before it reached the queue, while the
// buyer's retry is on its way).
func (rm *resultMap) settle(r seckill.OrderResult) {
	if r.IsOrderStatus() {
		return // an order's move, not a purchase's outcome
	}
	k := resultKey{r.SaleID, r.UserID}
	sh := rm.shard(k)
	now := rm.now()
	sh.mu.Lock()
	e, ok := sh.m[k]
	switch {
	case ok && e.r.Status == seckill.ResultSuccess:
	case ok && e.r.Status == seckill.ResultQueued && e.r.Ticket != r.Ticket && r.Status == seckill.ResultFailed:
	default:
		sh.m[k] = resultEntry{r: r.Result, at: now}
	}
	if now.Sub(sh.swept) >= sweepEvery {
		sh.swept = now
		for k, e := range sh.m {
			if e.r.Status == seckill.ResultSuccess && now.Sub(e.at) > keepSuccess {
				delete(sh.m, k)
			}
		}
	}
	sh.mu.Unlock()
}

// drop forgets the user's result in the sale.
func (rm *resultMap) drop(sale, user int64) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	delete(sh.m, k)
	sh.mu.Unlock()
}

// forgetSale drops every result of the sale (one that ended long ago):
// a buyer then learns from SQL whether they have an order.
func (rm *resultMap) forgetSale(sale int64) {
	for i := range rm.shards {
		sh := &rm.shards[i]
		sh.mu.Lock()
		for k := range sh.m {
			if k.sale == sale {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

func (rm *resultMap) get(sale, user int64) (seckill.Result, bool) {
	r, ok, _ := rm.lookup(sale, user, time.Time{})
	return r, ok
}

// lookup returns the user's result, and whether it is a purchase queued
// at or before stale (when it was queued or last looked up), which the
// caller is to look up in SQL: it is then marked looked up now, so that
// concurrent and later callers look it up again only after as long again.
func (rm *resultMap) lookup(sale, user int64, stale time.Time) (r seckill.Result, ok, recheck bool) {
	k := resultKey{sale, user}
	sh := rm.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[k]
	if ok && e.r.Status == seckill.ResultQueued && !stale.IsZero() && !e.at.After(stale) {
		e.at = rm.now()
		sh.m[k] = e
		recheck = true
	}
	return e.r, ok, recheck
}

// claimQueued returns up to max purchases queued at or before stale (when
// they were queued or last looked up), marking them looked up now, like
// lookup. Each call starts at the shard after the one the previous call
// ended on, so a backlog larger than max is worked through in turn.
func (rm *resultMap) claimQueued(stale time.Time, max int) []resultKey {
	var ks []resultKey
	now := rm.now()
	start := int(rm.next.Load())
	for i := range len(rm.shards) {
		n := (start + i) % len(rm.shards)
		sh := &rm.shards[n]
		sh.mu.Lock()
		for k, e := range sh.m {
			if len(ks) == max {
				break
			}
			if e.r.Status == seckill.ResultQueued && !e.at.After(stale) {
				e.at = now
				sh.m[k] = e
				ks = append(ks, k)
			}
		}
		sh.mu.Unlock()
		if len(ks) == max {
			rm.next.Store(int64(n + 1))
			break
		}
	}
	return ks
}

// recheckBatch bounds how many queued purchases one RecheckQueued looks up
// in SQL (one query each).
const recheckBatch = 256

// recheck looks up in SQL a purchase still queued after ResultRecheck:
// results travel at most once over the bus, and one lost in transit (a
// restart or disconnect of the bus, a slow subscriber, a writer dying
// between its ack and its publish) would leave it queued for good. When SQL
// has the order, the success is recorded and told to this instance's
// listeners (see Results), and recheck returns it; otherwise (the writer
// may just be behind, or SQL failed) it reports false and the purchase
// stays queued.
func (e *Engine) recheck(ctx context.Context, saleID, userID int64) (seckill.Result, bool, error) {
	found, ok, err := e.sqlResult(ctx, saleID, userID)
	if !ok {
		return seckill.Result{}, false, err
	}
	r := seckill.OrderResult{SaleID: saleID, UserID: userID, Result: found}
	e.results.settle(r)
	e.tellLocal(r)
	return found, true, nil
}

// RecheckQueued looks up in SQL up to recheckBatch purchases of this
// instance still queued ResultRecheck after they were queued (or last
// looked up), so that a buyer whose result message was lost learns of the
// order on their WebSocket without polling. It returns how many it found;
// an error of SQL ends the round (the rest wait for the next one). The
// reconciler's loop calls it.
func (e *Engine) RecheckQueued(ctx context.Context) (int, error) {
	found := 0
	for _, k := range e.results.claimQueued(e.now().Add(-e.cfg.ResultRecheck), recheckBatch) {
		_, ok, err := e.recheck(ctx, k.sale, k.user)
		if err != nil {
			return found, err
		}
		if ok {
			found++
		}
	}
	return found, nil
}

// Results returns the result bus as this instance's listeners (its
// WebSockets) should subscribe to it: they hear every result the backends'
// bus carries, and also the successes this engine found in SQL after their
// message was lost (see RecheckQueued), which go to this instance only (a
// buyer connected elsewhere learns it by polling, which asks SQL there).
// PublishResults publishes on the backends' bus.
func (e *Engine) Results() seckill.ResultBus { return engineBus{e} }

type engineBus struct{ e *Engine }

func (b engineBus) PublishResults(ctx context.Context, rs []seckill.OrderResult) error {
	return b.e.b.Bus.PublishResults(ctx, rs)
}

func (b engineBus) SubscribeResults(fn func(seckill.OrderResult)) (cancel func(), err error) {
	busCancel, err := b.e.b.Bus.SubscribeResults(fn)
	if err != nil {
		return nil, err
	}
	e := b.e
	e.localMu.Lock()
	e.localSeq++
	id := e.localSeq
	if e.local == nil {
		e.local = map[int64]func(seckill.OrderResult){}
	}
	e.local[id] = fn
	e.localMu.Unlock()
	return func() {
		e.localMu.Lock()
		delete(e.local, id)
		e.localMu.Unlock()
		busCancel()
	}, nil
}

// tellLocal gives r to the listeners subscribed through Results.
func (e *Engine) tellLocal(r seckill.OrderResult) {
	e.localMu.Lock()
	fns := make([]func(seckill.OrderResult), 0, len(e.local))
	for _, fn := range e.local {
		fns = append(fns, fn)
	}
	e.localMu.Unlock()
	for _, fn := range fns {
		fn(r)
	}
}
