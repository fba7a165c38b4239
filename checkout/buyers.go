package checkout

import (
	"context"
	"errors"
	"sync"
	"time"

	"seckill"
)

// gateDupFor is how long a Duplicate the gate answered for a buyer this
// instance did not admit is answered again without the gate. Such a buyer
// may hold a reservation still pending elsewhere (its publish unanswered)
// that the reconciler releases later, and may then buy again: a local
// answer for them must not outlive that by much. Half the default
// --reconcile-age (10 s), so a released buyer is refused for at most 5 s
// more on an instance that asked the gate just before the release.
const gateDupFor = 5 * time.Second

// knownBuyers is who this instance knows holds a unit of one sale, so a
// buyer pressing again is answered 409 duplicate without the gate (a round
// trip to Redis in production). Its buyers learned from the gate's
// Duplicate are bounded (max entries; past it the gate answers the rest);
// those admitted here or with an order are as many as the sale's units
// and its resales. It is dropped with the sale (ForgetEnded).
//
// An entry is right as long as the gate keeps the user as a buyer: a
// cancelled order's buyer stays one (StockGate.Return), so the lifecycle
// changes nothing here; only a Release forgets a buyer, and every Release
// this instance makes (a publish that failed definitively, the reconciler)
// forgets the entry too. A buyer this instance admitted is known for good
// once their request is in the queue, until its result is a failure
// (resultArrived: refused as expired, its publish landed after the
// reconciler released it; or refused by SQL, and not a buyer after a
// rebuild),
// and is not known while their publish is unanswered (the reconciler may
// release it on any instance). A buyer learned from the gate's Duplicate
// is known for gateDupFor (see there). A buyer whose request this instance
// heard queued (admitted by another instance: the queue's feed, or its
// pending requests) is known for gateDupFor too, and after that, until an
// outcome of the request comes, is a buyer to ask the gate about: the
// sold-out flag does not answer them (buyerStatus).
type knownBuyers struct {
	mu  sync.Mutex
	max int
	m   map[int64]int64 // user → an entry: orderedBuyer, 0 if admitted here, heardAt(up), or when the gate said Duplicate (uptime ns, at least 1)
}

// orderedBuyer marks in knownBuyers a user who has an order in the sale: a
// buyer for good, whom no release nor refused request forgets (a stray
// failed result of an older ticket of theirs, a request the reconciler
// released and that landed late, comes after their order's success:
// found by review, such a winner was forgotten and told 410).
const orderedBuyer = -1

// knownBuyersPerUnit and knownBuyersMin size a sale's set: every buyer is
// one of at most stock plus units returned, so a few times the stock holds
// them all.
const (
	knownBuyersPerUnit = 2
	knownBuyersMin     = 1024
)

// heardAt is the entry of a buyer heard queued at up: below orderedBuyer,
// so it sorts apart from the other kinds (entryRank); heardUp reads up
// back.
func heardAt(up time.Duration) int64 { return orderedBuyer - 1 - max(int64(up), 0) }
func heardUp(v int64) int64          { return orderedBuyer - 1 - v }

// entryRank orders the kinds of entries by how long they hold: an order,
// an admission here, a request heard queued, a gate's Duplicate. A lower
// one never replaces a higher.
func entryRank(v int64) int {
	switch {
	case v == orderedBuyer:
		return 3
	case v == 0:
		return 2
	case v < orderedBuyer:
		return 1
	}
	return 0
}

// knownBuyer reports whether the user is known to hold a unit of the sale
// at up (an uptime reading: a Duplicate's trust is aged on the engine's
// own clock, which no step of the shared clock moves).
func (e *Engine) knownBuyer(saleID, userID int64, up time.Duration) bool {
	known, _ := e.buyerStatus(saleID, userID, up)
	return known
}

// buyerStatus tells whether the user is known to hold a unit of the sale
// at up (answered 409 without the gate), or is one to ask the gate about:
// a buyer heard queued more than gateDupFor ago whose request has no
// outcome yet. Such a request may sit in the queue for as long as the
// writer is held up (found by review: trusted 5 s only, once the writer
// was 6 s behind 396 of 400 winners were told 410 by the sold-out flag of
// instances that had not admitted them), or may never have been stored
// (its publish failed, or went unanswered and the reconciler released
// it: no outcome ever comes, and the buyer may buy again). Only the gate
// can tell the two apart, so the flag leaves them to it; a Duplicate it
// answers renews the hearing.
func (e *Engine) buyerStatus(saleID, userID int64, up time.Duration) (known, ask bool) {
	v, ok := e.buyerEntry(saleID, userID)
	switch {
	case !ok:
		return false, false
	case v == orderedBuyer, v == 0:
		return true, false
	case v < orderedBuyer:
		fresh := int64(up)-heardUp(v) < int64(gateDupFor)
		return fresh, !fresh
	}
	return int64(up)-v < int64(gateDupFor), false
}

// heardQueued reports whether this instance heard the user's request in
// the sale queued (on the queue's feed: admitted by another instance)
// less than heardResultFor ago, or admitted it, with no outcome since:
// their result is "queued" rather than "none" while the writer catches
// up. A hearing older than that may be of a request the queue never
// stored (buyerStatus); SQL answers then, or the gate (gateQueued).
func (e *Engine) heardQueued(saleID, userID int64) bool {
	v, ok := e.buyerEntry(saleID, userID)
	return ok && (v == 0 || v < orderedBuyer && int64(e.uptime())-heardUp(v) < int64(heardResultFor))
}

// buyerEntry returns what the instance knows of the user as a buyer of
// the sale (knownBuyers' value), if anything.
func (e *Engine) buyerEntry(saleID, userID int64) (int64, bool) {
	set, ok := e.buyers.Load(saleID)
	if !ok {
		return 0, false
	}
	k := set.(*knownBuyers)
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[userID]
	return v, ok
}

// heardResultFor is how long a request heard queued is answered "queued"
// on /result while SQL has no order for it: past a redelivery of a
// request whose writer died (--ack-wait, 30 s) and a writer's backlog
// after a database outage (found by review: trusted 5 s, buyers holding a
// 202 read "none" for up to 38 s). A request that was never stored (its
// publish failed: its buyer was answered 503, not 202) reads "queued" on
// other instances for as long.
const heardResultFor = time.Minute

// learnBuyer records that the user holds a unit of the sale: admitted here
// (their request is queued), or answered Duplicate by the gate at up (an
// uptime reading). An admission here is never downgraded to a Duplicate's
// bounded trust.
func (e *Engine) learnBuyer(s *seckill.Sale, userID int64, admitted bool, up time.Duration) {
	at := max(int64(up), 1) // 0 is "admitted here"
	if admitted {
		at = 0
	}
	e.learn(s.ID, max(knownBuyersPerUnit*s.Stock, knownBuyersMin), userID, at)
}

// learn is learnBuyer for a sale of id whose set holds up to size buyers
// (a set made smaller, before its sale was known, grows to it), with at
// the entry's value: orderedBuyer, 0 (admitted here) or a Duplicate's
// uptime. An entry is never downgraded: an order's buyer stays one, an
// admission here does not become a Duplicate's bounded trust.
func (e *Engine) learn(saleID, size, userID, at int64) {
	v, ok := e.buyers.Load(saleID)
	if !ok {
		v, _ = e.buyers.LoadOrStore(saleID, &knownBuyers{max: int(size), m: make(map[int64]int64)})
	}
	k := v.(*knownBuyers)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.max = max(k.max, int(size))
	cur, had := k.m[userID]
	if !had && at > 0 && len(k.m) >= k.max {
		// Full: the gate answers whoever is not in it. Only a Duplicate's
		// entry is turned away: an admission here or an order is a buyer
		// the sale's own units and SQL's orders bound (found by review:
		// with the set full of orders, after cancels and resales, 600 of
		// 1,800 buyers with an order were told 410).
		return
	}
	switch r, c := entryRank(at), entryRank(cur); {
	case !had, r > c, r == c && (at > cur && r == 0 || at < cur && r == 1):
		k.m[userID] = at // a newer Duplicate or hearing renews its entry
	case r == 0 && c == 1 && at > heardUp(cur):
		k.m[userID] = heardAt(time.Duration(at)) // the gate confirms a buyer heard queued
	}
}

// unlearnBuyer forgets the user as a buyer of the sale: the gate released
// their reservation, and they may buy again.
func (e *Engine) unlearnBuyer(saleID, userID int64) {
	v, ok := e.buyers.Load(saleID)
	if !ok {
		return
	}
	k := v.(*knownBuyers)
	k.mu.Lock()
	if k.m[userID] != orderedBuyer {
		delete(k.m, userID)
	}
	k.mu.Unlock()
}

// resultArrived records a result from the bus, which every instance
// hears. A refused request leaves its user known no more: refused because
// its reservation was released before it reached the queue (EExpired: the
// reconciler took its publish for lost), the user is no buyer and may try
// again; refused by SQL, the user stays a buyer of the gate until a
// rebuild from SQL, where they are none. The gate answers them from now
// on. An order (its purchase's success, or a later move: paid, cancelled,
// refunded) makes its user a buyer for good, on every instance
// (learnOrdered).
func (e *Engine) resultArrived(r seckill.OrderResult) {
	if _, gone := e.forgotten.Load(r.SaleID); gone {
		return // a sale that left the gate: SQL answers its buyers
	}
	switch {
	case r.Status == seckill.ResultFailed:
		e.unlearnBuyer(r.SaleID, r.UserID)
	case r.Status == seckill.ResultSuccess || r.IsOrderStatus():
		e.learnOrdered(r.SaleID, r.UserID)
	}
	e.results.settle(r)
	if _, gone := e.forgotten.Load(r.SaleID); gone {
		e.results.drop(r.SaleID, r.UserID) // ForgetEnded ran meanwhile
	}
}

// learnOrdered records that the user has an order in the sale: a buyer
// for good (one order per user per sale, ever; the reconciler releases no
// reservation whose order is in SQL). Before, only the instance that
// admitted a buyer knew them; on the others, once the sale sold out, the
// local sold-out flag answered the winner's next press, or a press after
// their cancel, 410 sold_out instead of 409 duplicate (found by review:
// 2,368 of a crowd's winners' presses on three instances). A sale this
// instance has forgotten (ended) is left to the gate; one it has not
// cached yet gets a set of knownBuyersMin, grown to the sale's size once
// it admits a buyer of it.
func (e *Engine) learnOrdered(saleID, userID int64) {
	e.learnHeard(saleID, userID, orderedBuyer)
}

// requestQueued records a request seen on the queue's feed as it was
// published, by any instance (seckill.RequestFeed; subscribed with a
// shared gate only). Its buyer holds a unit from then on, on every
// instance: before, an instance that had not admitted them knew only once
// their order was written, and meanwhile its sold-out flag told the
// winner's next press 410 instead of 409. The buyer is known for
// gateDupFor, then left to the gate until an outcome comes (buyerStatus).
func (e *Engine) requestQueued(r seckill.OrderRequest) {
	e.learnHeard(r.SaleID, r.UserID, heardAt(e.uptime()))
}

// learnHeard is learn for a buyer heard of on the bus: a sale this
// instance has forgotten (ended) is left to the gate; one it has not
// cached yet gets a set of knownBuyersMin, grown to the sale's size once
// it admits a buyer of it.
func (e *Engine) learnHeard(saleID, userID, at int64) {
	if _, gone := e.forgotten.Load(saleID); gone {
		return
	}
	size := int64(knownBuyersMin)
	if _, ok := e.buyers.Load(saleID); !ok { // else its size is set
		e.saleMu.Lock()
		c, ok := e.saleCache[saleID]
		e.saleMu.Unlock()
		if ok {
			size = max(knownBuyersPerUnit*c.sale.Stock, knownBuyersMin)
		}
	}
	e.learn(saleID, size, userID, at)
	if _, gone := e.forgotten.Load(saleID); gone {
		e.forgetBuyers(saleID) // ForgetEnded ran meanwhile: not to keep the set for good
	}
}

// buyerSeed is how far an instance got reading a sale's buyers
// (awaitBuyers).
type buyerSeed struct {
	done    bool
	running chan struct{} // closed when the read under way ends; nil if none is
	began   time.Duration // the uptime at which the read under way began
	retryAt time.Duration // after a failed read: the uptime from which to read again
}

// seedWait is how long after its start the sold-out flag waits for a read
// of the sale's buyers; seedRetry is how long after a failed read the next
// one starts; seedTimeout bounds one read.
const (
	seedWait    = 100 * time.Millisecond
	seedRetry   = time.Second
	seedTimeout = 30 * time.Second
)

// awaitBuyers reports whether the sold-out flag may go up for the sale at
// up: once this instance has read the sale's buyers, or tried and failed.
// It starts the read (again seedRetry after a failed one; again after a
// gap in what this instance heard) and waits for it up to seedWait from
// its start. An instance knows only the buyers it admitted or heard of
// since it started; without the read, one started after the sale's buyers
// were admitted (a restart, a new instance) told them 410 instead of 409
// while its flag was up. Until the read is done the gate answers, without
// the sale's admission cap (readingBuyers): held down by the cap, presses
// during a slow read were answered 503 (found by review: 8,357 of 9,000
// presses of a 10-unit sale, with 5,000 requests queued behind a held-up
// writer); raised before the read was done, the flag told the winners not
// read yet 410 (found by review: 2,718 of 5,000). A failed read lets the
// flag answer (sparing the gate a flood matters more).
func (e *Engine) awaitBuyers(s *seckill.Sale, up time.Duration) bool {
	e.seedMu.Lock()
	st := e.seeds[s.ID]
	if st.done {
		e.seedMu.Unlock()
		return true
	}
	read := st.running
	if read == nil && up >= st.retryAt {
		read = make(chan struct{})
		st.running, st.began = read, up
		e.seeds[s.ID] = st
		e.reading.Store(s.ID, struct{}{})
		e.readsRunning.Add(1)
		go e.seedBuyers(s.ID, read)
	}
	e.seedMu.Unlock()
	if read == nil {
		return st.retryAt > 0 // failed, and not to be read again yet
	}
	if wait := seedWait - (up - st.began); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-read:
			return true // read, or failed: the flag answers either way
		case <-t.C:
		}
	}
	return false
}

// readingBuyers reports whether a read of the sale's buyers is under way
// (awaitBuyers). Cheap when none is: it is asked on every press.
func (e *Engine) readingBuyers(saleID int64) bool {
	if e.readsRunning.Load() == 0 {
		return false
	}
	_, ok := e.reading.Load(saleID)
	return ok
}

// buyersGap makes every sale's buyers be read again before its flag next
// goes up: this instance may have missed requests on the queue's feed and
// results on the bus (its connection to NATS dropped, or it fell behind).
// Found by review: winners of units resold while an instance's link was
// cut were told 410 there until it restarted.
func (e *Engine) buyersGap() {
	e.seedMu.Lock()
	defer e.seedMu.Unlock()
	e.seedGen++ // a read under way may have begun before the gap
	for id, st := range e.seeds {
		st.done, st.retryAt = false, 0
		e.seeds[id] = st
	}
	e.soldOut.Clear()
}

// seedBuyers reads the sale's buyers, for awaitBuyers, and closes read
// when done: first the requests still in the queue (heard queued: a
// buyer whose order is not written yet, admitted before this instance
// heard the queue's feed; found by review, a restarted instance told them
// 410 while the writer was behind), then the orders in SQL (each a buyer
// for good). In that order, a request that leaves the queue in between is
// in SQL by the second read: the writer commits before it acks.
func (e *Engine) seedBuyers(saleID int64, read chan struct{}) {
	defer close(read)
	defer func() {
		e.reading.Delete(saleID)
		e.readsRunning.Add(-1)
	}()
	e.seedMu.Lock()
	gen := e.seedGen
	e.seedMu.Unlock()
	ctx, cancel := context.WithTimeout(e.relay.life, seedTimeout)
	defer cancel()
	queued, err := e.b.Queue.PendingRequests(ctx, saleID)
	up := e.uptime()
	for _, r := range queued {
		e.learnHeard(saleID, r.UserID, heardAt(up))
	}
	// SQL's orders even when the queue failed (NATS unreachable): the
	// flag answers after a failed read, and it then knows these at least
	// (found by review: 1,963 of 2,000 winners, their orders all written,
	// told 410 by an instance whose link to NATS was cut).
	ids, serr := e.b.Orders.SaleBuyers(ctx, saleID)
	for _, u := range ids {
		e.learnOrdered(saleID, u)
	}
	err = errors.Join(err, serr)
	e.seedMu.Lock()
	defer e.seedMu.Unlock()
	if _, gone := e.forgotten.Load(saleID); gone {
		delete(e.seeds, saleID)
		return
	}
	st := e.seeds[saleID]
	st.running = nil
	if err != nil {
		st.retryAt = e.uptime() + seedRetry
		if e.relay.life.Err() == nil {
			e.log.Warn("could not read a sold-out sale's buyers (queue and SQL); its flag answers without them", "sale", saleID, "err", err)
		}
	} else {
		st.done = gen == e.seedGen
	}
	e.seeds[saleID] = st
}

// rereadBuyers has the next sold-out answer of the sale read its buyers
// again (awaitBuyers) before the flag answers, and lowers the flag
// meanwhile: after a rebuild of its gate, whose buyers the instance
// forgot.
func (e *Engine) rereadBuyers(saleID int64) {
	e.seedMu.Lock()
	defer e.seedMu.Unlock()
	e.seedGen++ // a read under way may have begun before the rebuild
	if st, ok := e.seeds[saleID]; ok {
		st.done, st.retryAt = false, 0
		e.seeds[saleID] = st
	}
	e.soldOut.Delete(saleID)
}

// forgetSeed drops what awaitBuyers keeps of a sale.
func (e *Engine) forgetSeed(saleID int64) {
	e.seedMu.Lock()
	delete(e.seeds, saleID)
	e.seedMu.Unlock()
}

// forgetForRebuild drops what the instance knows of the sale's buyers
// when it rebuilt the sale's gate, but those with an order and those heard
// queued: the rebuilt gate holds both (it is loaded from SQL and the
// queue), and /result answers the heard "queued" (found by review:
// forgotten, a rebuilding instance told 26 of 40 winners admitted
// elsewhere "none" while the writer was held).
func (e *Engine) forgetForRebuild(saleID int64) {
	v, ok := e.buyers.Load(saleID)
	if !ok {
		return
	}
	k := v.(*knownBuyers)
	k.mu.Lock()
	defer k.mu.Unlock()
	for u, at := range k.m {
		if at > orderedBuyer { // admitted here (0), or a Duplicate of the old gate
			delete(k.m, u)
		}
	}
}

// forgetBuyers drops what the instance knows of the sale's buyers.
func (e *Engine) forgetBuyers(saleID int64) { e.buyers.Delete(saleID) }
