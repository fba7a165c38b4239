package checkout

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"seckill"
)

// Captcha issues a single-use captcha for the user and sale. Captchas are
// issued from CaptchaLead before the sale starts until it ends, at most as
// many per user and sale as CaptchaLimit lets through. ENotFound if no such
// sale, ENotStarted before the lead time, EEnded after the end,
// ERateLimited over the cap.
func (e *Engine) Captcha(ctx context.Context, userID, saleID int64) (id string, png []byte, expires time.Time, err error) {
	s, err := e.Sale(ctx, saleID)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	now := e.SaleTime()
	if from := s.StartsAt.Add(-e.cfg.CaptchaLead); now.Before(from) {
		return "", nil, time.Time{}, seckill.Errorf(seckill.ENotStarted, "captchas for sale %d are issued from %s", saleID, from.UTC().Format(time.RFC3339))
	}
	if !now.Before(s.EndsAt) {
		return "", nil, time.Time{}, seckill.Errorf(seckill.EEnded, "sale %d ended at %s", saleID, s.EndsAt.UTC().Format(time.RFC3339))
	}
	if e.b.CaptchaLimit != nil {
		ok, err := e.b.CaptchaLimit.Allow(ctx, strconv.FormatInt(saleID, 10)+":"+strconv.FormatInt(userID, 10))
		if err != nil {
			return "", nil, time.Time{}, err
		}
		if !ok {
			err := seckill.Errorf(seckill.ERateLimited, "too many captchas for this sale; answer the one you have")
			err.RetryAfter = e.cfg.CaptchaEvery
			return "", nil, time.Time{}, err
		}
	}
	if e.b.CaptchaMaker == nil {
		return "", nil, time.Time{}, errNoCaptchaMaker
	}
	answer, png, err := e.b.CaptchaMaker.New()
	if err != nil {
		return "", nil, time.Time{}, err
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id = hex.EncodeToString(raw[:])
	// On this instance's own clock, as the captcha stores compare it (a
	// captcha's life is the same on every instance within their skew).
	expires = e.now().Add(e.cfg.CaptchaTTL).UTC()
	c := seckill.Captcha{Answer: answer, SaleID: saleID, UserID: userID, ExpiresAt: expires}
	if err := e.b.Captchas.PutCaptcha(ctx, id, c); err != nil {
		return "", nil, time.Time{}, err
	}
	return id, png, expires, nil
}

// IssuePath returns the user's hidden purchase path after checking the sale
// window and, when the sale requires one, the captcha (which is used up by
// any attempt). ENotFound, ENotStarted, EEnded, EBadCaptcha.
func (e *Engine) IssuePath(ctx context.Context, userID, saleID int64, captchaID, answer string) (string, time.Time, error) {
	s, err := e.Sale(ctx, saleID)
	if err != nil {
		return "", time.Time{}, err
	}
	now := e.SaleTime()
	if err := s.Window(now); err != nil {
		return "", time.Time{}, err
	}
	if s.RequireCaptcha {
		if e.b.CaptchaMaker == nil {
			return "", time.Time{}, errNoCaptchaMaker
		}
		if captchaID == "" {
			return "", time.Time{}, seckill.Errorf(seckill.EBadCaptcha, "this sale needs a solved captcha")
		}
		c, err := e.b.Captchas.TakeCaptcha(ctx, captchaID, userID)
		if seckill.ErrorCode(err) == seckill.ENotFound {
			return "", time.Time{}, seckill.Errorf(seckill.EBadCaptcha, "captcha expired or already used; get a new one")
		} else if err != nil {
			return "", time.Time{}, err
		}
		// Used up either way, as any attempt uses it.
		if c.SaleID != saleID {
			return "", time.Time{}, seckill.Errorf(seckill.EBadCaptcha, "this captcha was issued for another sale; get one for this sale")
		}
		if !e.b.CaptchaMaker.Check(c.Answer, answer) {
			return "", time.Time{}, seckill.Errorf(seckill.EBadCaptcha, "wrong captcha answer; get a new one")
		}
	}
	w := e.window(now)
	expires := time.Unix(0, (w+2)*int64(e.cfg.PathTTL)).UTC()
	return e.pathFor(userID, saleID, w), expires, nil
}

// errNoCaptchaMaker answers captcha requests of an engine built without
// Backends.CaptchaMaker: a wiring mistake, not the client's.
var errNoCaptchaMaker = errors.New("checkout: no captcha maker configured")

// pathFor is the hidden purchase path of a user in a sale for one time
// window: HMAC(secret, user, sale, window). Stateless, so every instance
// sharing the secret can check it.
func (e *Engine) pathFor(userID, saleID, window int64) string {
	var p [pathLen]byte
	e.pathInto(&p, userID, saleID, window)
	return string(p[:])
}

// newMAC makes a MAC for the pool of pathInto.
func (e *Engine) newMAC() any { return hmac.New(sha256.New, e.cfg.Secret) }

// pathLen is the length of a hidden path: 18 bytes of HMAC in unpadded
// base64.
const pathLen = 24

// pathInto writes pathFor's path into p without allocating: checkPath runs
// it up to four times on every purchase, the 409s of a crowd included.
func (e *Engine) pathInto(p *[pathLen]byte, userID, saleID, window int64) {
	var msg [24]byte
	binary.BigEndian.PutUint64(msg[0:], uint64(userID))
	binary.BigEndian.PutUint64(msg[8:], uint64(saleID))
	binary.BigEndian.PutUint64(msg[16:], uint64(window))
	m := e.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(msg[:])
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	e.macs.Put(m)
	base64.RawURLEncoding.Encode(p[:], sum[:18])
}

func (e *Engine) window(t time.Time) int64 { return t.UnixNano() / int64(e.cfg.PathTTL) }

// maxPathSkew bounds how far apart the clocks of the instance that issued
// a path and the one that checks it may be (see pathSkew).
const maxPathSkew = 30 * time.Second

// pathSkew is the clock difference between instances that checkPath
// tolerates, either way: maxPathSkew, or a tenth of PathTTL if that is
// less, so a path's life stretches by a tenth at most.
func (e *Engine) pathSkew() time.Duration { return min(maxPathSkew, e.cfg.PathTTL/10) }

// checkPath accepts the path of the current window and of the one before, so
// a path lives between one and two PathTTLs by the clock of the instance
// that issued it (IssuePath's expires_at). Instances' clocks differ a
// little, so it also accepts, within pathSkew of a window boundary, the
// window on its other side: the next window's path when that window starts
// within pathSkew (an instance whose clock is ahead issued it just after
// the boundary), and the path of the window before the previous one when
// the current window began less than pathSkew ago (one whose clock is
// behind issued it, and its expires_at has not come by that clock).
func (e *Engine) checkPath(userID, saleID int64, path string, now time.Time) bool {
	if len(path) != pathLen {
		return false
	}
	w := e.window(now)
	cands := [4]int64{w, w - 1}
	n := 2
	skew := e.pathSkew()
	if e.window(now.Add(skew)) > w {
		cands[n] = w + 1
		n++
	}
	if e.window(now.Add(-skew)) < w {
		cands[n] = w - 2
		n++
	}
	var p [pathLen]byte
	for _, cand := range cands[:n] {
		e.pathInto(&p, userID, saleID, cand)
		var diff byte // constant time, as hmac.Equal
		for i := range pathLen {
			diff |= path[i] ^ p[i]
		}
		if diff == 0 {
			return true
		}
	}
	return false
}

// soldOutFor is how long the local sold-out flag answers without asking the
// gate: long enough to spare the gate a flood, short enough that returned
// units are offered again at once. It is measured on the engine's own
// clock (uptime), never on SaleTime: that follows the shared clock, and
// a step of it back would keep the flag (and so refuse every buyer of
// units returned meanwhile) for as long as the step.
const soldOutFor = time.Second

// isSoldOut reports whether the gate said the sale sold out less than
// soldOutFor before up (an uptime reading).
func (e *Engine) isSoldOut(saleID int64, up time.Duration) bool {
	v, ok := e.soldOut.Load(saleID)
	return ok && up-v.(time.Duration) < soldOutFor
}

// Admission is a purchase that passed CheckPurchase; Admit finishes it.
type Admission struct {
	userID  int64
	sale    *seckill.Sale
	now     time.Time     // SaleTime at the check
	up      time.Duration // uptime at the check: what the local answers age on
	reading bool          // the sale sold out here and its buyers are being read: no admission cap
}

// CheckPurchase makes the checks of a purchase that need no shared
// backend: ready, sale window, hidden path, a buyer this instance knows
// (buyers.go), local sold-out flag. The HTTP layer runs it before the
// per-address rate limit, and Admit after it: after a sale sells out nearly every request ends
// here, and so does a buyer's press after they won; one that fails here
// never reaches the limiter or the gate. Errors: EBusy, ENotFound,
// ENotStarted, EEnded, EBadPath, EDuplicate, ESoldOut.
func (e *Engine) CheckPurchase(ctx context.Context, userID, saleID int64, path string) (Admission, error) {
	if !e.ready.Load() {
		return Admission{}, seckill.Errorf(seckill.EBusy, "sales are not open yet; retry shortly")
	}
	s, err := e.Sale(ctx, saleID)
	if err != nil {
		return Admission{}, err
	}
	now := e.SaleTime()
	if err := s.Window(now); err != nil {
		return Admission{}, err
	}
	if !e.checkPath(userID, saleID, path, now) {
		return Admission{}, seckill.Errorf(seckill.EBadPath, "purchase path is wrong or expired; get a new one")
	}
	// The gate's order: a buyer is told duplicate even once sold out.
	up := e.uptime()
	known, ask := e.buyerStatus(saleID, userID, up)
	if known {
		return Admission{}, errDuplicate
	}
	if !ask && e.isSoldOut(saleID, up) {
		return Admission{}, seckill.Errorf(seckill.ESoldOut, "sold out")
	}
	return Admission{userID: userID, sale: s, now: now, up: up, reading: e.readingBuyers(saleID)}, nil
}

// errDuplicate answers a buyer who holds a unit of the sale already.
var errDuplicate = seckill.Errorf(seckill.EDuplicate, "you already have a purchase in this sale")

// Purchase admits one purchase: sale window, hidden path, known buyers,
// local sold-out flag, in-flight cap, atomic gate with the buyer's
// purchase bucket (Config.PurchaseLimit), durable publish. It returns the ticket
// of an accepted purchase, whose order the writer creates later. Errors:
// ENotFound, ENotStarted, EEnded, EBadPath, ESoldOut, EDuplicate,
// ERateLimited (the buyer's purchase bucket is empty), EBusy (not ready,
// too many in flight, or the queue failed — the reservation is released
// then).
func (e *Engine) Purchase(ctx context.Context, userID, saleID int64, path string) (string, error) {
	a, err := e.CheckPurchase(ctx, userID, saleID, path)
	if err != nil {
		return "", err
	}
	return e.Admit(ctx, a)
}

// Admit finishes a purchase that passed CheckPurchase: in-flight cap,
// atomic gate (which looks at the buyer's purchase bucket in the same
// step: one call of a shared gate), durable publish. It returns the
// ticket; errors as Purchase.
func (e *Engine) Admit(ctx context.Context, a Admission) (string, error) {
	userID, saleID, now := a.userID, a.sale.ID, a.now
	// While the sale's buyers are read the flag is down and the gate
	// answers what it would (sold out, mostly): the cap, meant for a sale
	// still selling, would answer those presses 503 (found by review:
	// 8,357 of 9,000 presses of a 10-unit sale during a slow read).
	if !a.reading && !e.admitted(a.sale, now) {
		return "", seckill.Errorf(seckill.EBusy, "too many purchases for this sale right now; retry shortly")
	}
	select {
	case e.inflight <- struct{}{}:
		defer func() { <-e.inflight }()
	default:
		return "", seckill.Errorf(seckill.EBusy, "too many purchases in flight; retry shortly")
	}

	// From here on an admission is carried to its end, whether or not the
	// buyer is still there to hear it (a dropped connection cancels ctx):
	// a shared gate's script, once sent, reserves the unit all the same,
	// and a caller that stopped waiting for its answer could neither
	// publish the request nor give the unit back. The unit was then held
	// for nobody, the buyer told duplicate and everyone else sold out,
	// until a reconciler released it (--reconcile-age and a round, then
	// about 40 s; found by review: a crowd with 5 % of its presses dropped left
	// 4 units of 2,000 unsold when it ended). Each step stays bounded: the
	// gate by its client's timeouts, the publish by PublishTimeout from
	// the reservation; a buyer who hung up finds the outcome in /result.
	ctx = context.WithoutCancel(ctx)
	req := seckill.OrderRequest{SaleID: saleID, UserID: userID, Ticket: newTicket(), PriceCents: a.sale.PriceCents, At: now.UTC()}
	// The publish must be acknowledged within PublishTimeout of the
	// reservation, on this process's monotonic clock: a reservation older
	// than the reconcile age (well above PublishTimeout) that is neither
	// queued nor in SQL is released by any instance's reconciler. Counted
	// from the publish alone, a stall in between (a paused VM or process, a
	// starved CPU) could outlast that age and still end in a 202 for a
	// request the writer then refuses, its ticket released (I3).
	began := time.Now()
	r, err := e.b.Gate.Reserve(ctx, seckill.Reservation{SaleID: saleID, UserID: userID, Ticket: req.Ticket, At: req.At, Limit: e.cfg.PurchaseLimit})
	e.cfg.Observer.GateResult(r, err)
	if err != nil {
		if seckill.ErrorCode(err) == seckill.EBusy {
			// A shared gate that lost the sale (restarted empty) is rebuilt
			// by one instance; until then everyone answers busy.
			e.maybeRebuild()
		}
		return "", err
	}
	switch r {
	case seckill.Duplicate:
		e.learnBuyer(a.sale, userID, false, a.up)
		return "", errDuplicate
	case seckill.Limited:
		return "", seckill.Errorf(seckill.ERateLimited, "too many purchase attempts; slow down")
	case seckill.SoldOut:
		if e.awaitBuyers(a.sale, a.up) {
			e.soldOut.Store(saleID, a.up)
		}
		return "", seckill.Errorf(seckill.ESoldOut, "sold out")
	}

	if time.Since(began) >= e.cfg.PublishTimeout {
		// The gate answered so late (a Redis failover, a stall) that no
		// publish could be acknowledged in time: nothing was sent, so the
		// unit goes back now rather than waiting for the reconciler.
		e.releaseUnsent(ctx, saleID, userID, req.Ticket)
		e.log.Warn("stock gate answered after the publish timeout; reservation released", "sale", saleID, "user", userID, "took", time.Since(began))
		return "", seckill.Errorf(seckill.EBusy, "the stock gate answered too slowly; retry shortly")
	}

	// Mark queued before publishing: the writer's result may arrive before
	// Publish returns, and must not be overwritten.
	prev, had := e.results.queue(saleID, userID, req.Ticket)
	pctx, cancel := context.WithDeadline(ctx, began.Add(e.cfg.PublishTimeout))
	err = e.b.Queue.Publish(pctx, req)
	cancel()
	if err == nil && time.Since(began) >= e.cfg.PublishTimeout {
		// Stored, but too late to promise: the reservation may have been
		// released meanwhile, and then the writer refuses the request. As
		// for an unacknowledged publish, the writer or the reconciler
		// settles it and the result tells the buyer.
		err = fmt.Errorf("%w: publish acknowledged %v after the reservation", seckill.ErrMaybeStored, time.Since(began).Round(time.Millisecond))
	}
	if err == nil {
		e.learnBuyer(a.sale, userID, true, a.up)
		return req.Ticket, nil
	}
	e.results.unqueue(saleID, userID, req.Ticket, prev, had)
	if errors.Is(err, seckill.ErrMaybeStored) {
		// Sent but not acknowledged: the request may still become an order,
		// so its unit stays reserved. The writer settles it if it was
		// stored; if not, the reconciler releases it after its age.
		e.log.Warn("publish unacknowledged; reservation left to the writer or the reconciler", "sale", saleID, "user", userID, "err", err)
		return "", seckill.Errorf(seckill.EBusy, "order queue did not answer in time; your purchase may still go through, check your result")
	}
	e.releaseUnsent(ctx, saleID, userID, req.Ticket)
	e.log.Warn("publish failed; reservation released", "sale", saleID, "user", userID, "err", err)
	return "", seckill.Errorf(seckill.EBusy, "order queue unavailable; retry shortly")
}

// releaseUnsent gives back the unit of a reservation whose request is
// surely not in the queue.
func (e *Engine) releaseUnsent(ctx context.Context, saleID, userID int64, ticket string) {
	// The buyer may have gone, but the unit must still come back.
	if _, err := e.b.Gate.Release(context.WithoutCancel(ctx), saleID, userID, ticket); err != nil {
		e.log.Error("release of an unsent reservation", "sale", saleID, "user", userID, "err", err)
	}
	// A press that the gate answered Duplicate while this reservation
	// was pending taught it; the buyer may try again now.
	e.unlearnBuyer(saleID, userID)
}

// newTicket returns a 20-character order number: 10 characters of the
// current time in milliseconds, then 10 random ones (50 bits), in an
// alphabet that sorts like the numbers it encodes. Later tickets sort after
// earlier ones, so the order-number index of SQL grows at its end instead of
// touching a random page per order: with random tickets SQLite's commits
// wrote most of a batch's pages anew.
func newTicket() string {
	return ticketAt(time.Now())
}

// ticketAlphabet is Crockford's base32, ascending in ASCII.
const ticketAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func ticketAt(t time.Time) string {
	var b [20]byte
	ms := uint64(t.UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = ticketAlphabet[ms&31]
		ms >>= 5
	}
	var r [8]byte
	_, _ = rand.Read(r[:])
	x := binary.LittleEndian.Uint64(r[:])
	for i := 10; i < 20; i++ {
		b[i] = ticketAlphabet[x&31]
		x >>= 5
	}
	return string(b[:])
}

// admitted takes a token of the sale's admission bucket: at most
// AdmitFactor × stock purchase attempts a second (and as many at once) go on
// to the gate; the others are answered busy (503, Retry-After) at once, the
// fail-fast valve of a flash sale: with 20 tries per unit, a sale's outcome is
// settled by the first wave, and the rest would only load the gate. The
// bucket is in process, so the cap holds per instance: N instances admit up
// to N times as many. No cap when AdmitFactor is 0.
func (e *Engine) admitted(s *seckill.Sale, now time.Time) bool {
	if e.cfg.AdmitFactor <= 0 {
		return true
	}
	per := e.cfg.AdmitFactor * float64(s.Stock)
	l, ok := e.admits.Load(s.ID)
	if !ok {
		burst := int(min(per, float64(math.MaxInt32)))
		l, _ = e.admits.LoadOrStore(s.ID, rate.NewLimiter(rate.Limit(per), max(burst, 1)))
	}
	return l.(*rate.Limiter).AllowN(now, 1)
}
