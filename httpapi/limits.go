package httpapi

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"seckill/internal/addrkey"
)

// Budget is a token bucket: Burst requests at once, then Rate per second.
type Budget struct {
	Rate  float64 // tokens per second; negative: no limit
	Burst int
}

// DefaultBadTokens lets one address present 50 tokens that authenticate
// nobody at once, then 5 a second: a page with a stale cookie gets one 401
// and logs in again, so a carrier's NAT full of buyers stays far below it,
// while a flood of invented tokens (each a session store miss, in SQL
// behind Redis) is cut off. Like every per-address limit, one abuser
// behind a NAT spends it for the others there: while it lasts, their
// tokens that need a lookup are refused too (the check comes before the
// lookup, which is the point); tokens the session cache knows are served
// (authed).
var DefaultBadTokens = Budget{Rate: 5, Burst: 50}

// DefaultSignedLookups lets one address over its DefaultBadTokens have 200
// signed tokens looked up that the instance has not read (account
// .SignedToken), then 20 a second: each of a NAT's buyers needs one on
// their first request to an instance (then the session cache knows them),
// while a sender cycling dead signed tokens, each of which cost it a
// login, gets no more store lookups than this (found by review: 65,537 of
// them, one more than the set of dead tokens holds, were each looked up
// on every pass).
var DefaultSignedLookups = Budget{Rate: 20, Burst: 200}

// DefaultRegistrations lets one address create 10 accounts at once, then
// one a minute: a family or an office behind one address signs up; a
// script harvesting phone_taken answers (or hashing the CPU away) gets
// 60 an hour.
var DefaultRegistrations = Budget{Rate: 1.0 / 60, Burst: 10}

// DefaultReads lets one user make 40 authenticated reads at once (its
// account, its orders, one order, a sale's result), then 10 a second: the
// page reads a handful when it loads and polls a result twice a second
// while it waits without a socket, far below; a script hammering them (a
// session lookup and SQL reads each) is cut off. Purchases and the other
// buying routes have limits of their own and do not draw on it.
var DefaultReads = Budget{Rate: 10, Burst: 40}

// maxIPBuckets bounds the addresses an ipBuckets remembers.
const maxIPBuckets = 100_000

// ipBuckets keeps a token bucket per client address (or per user, for the
// reads' budget: the key is any string), in process: the limit
// holds per instance (N instances behind a load balancer allow N times as
// much). When it grows past its bound it forgets the addresses whose
// bucket is full again (they behave as new ones), and if that frees less
// than a quarter of the bound, those with the most tokens left until it
// does: a flood of new addresses (each a fresh bucket less one token)
// pushes out its own kind, and the addresses that spent their budget, the
// flood's included, stay refused.
type ipBuckets struct {
	b   Budget
	max int // buckets kept at most: maxIPBuckets
	now func() time.Time

	mu   sync.Mutex
	m    map[string]*rate.Limiter
	held map[string]int // tokens held by requests whose charge is not decided yet (hold)
}

func newIPBuckets(b Budget) *ipBuckets {
	return &ipBuckets{b: b, max: maxIPBuckets, now: time.Now, m: map[string]*rate.Limiter{}, held: map[string]int{}}
}

// exhausted reports whether ip has no token left, without taking one: in
// its own bucket or, for an IPv6 /64, in a wider block's (addrkey).
func (l *ipBuckets) exhausted(ip string) bool {
	if l.b.Rate < 0 {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.m[ip]; ok && lim.TokensAt(now) < 1 {
		return true
	}
	for _, k := range addrkey.Wider(ip) {
		if lim, ok := l.m[k]; ok && lim.TokensAt(now) < 1 {
			return true
		}
	}
	return false
}

// take takes a token of ip's bucket and reports whether there was one.
// An IPv6 /64 takes one of its /56's and its /48's buckets as well (their
// budgets addrkey.Widths' times the /64's), all or none: one client
// holding a /56 does not get 256 budgets.
func (l *ipBuckets) take(ip string) bool {
	if l.b.Rate < 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // read under the lock: a limiter given times out of order refills twice
	keys, lims := l.buckets(ip, now)
	if !l.left(keys, lims, now) {
		return false
	}
	for _, lim := range lims {
		lim.AllowN(now, 1)
	}
	return true
}

// hold is take for a request whose charge is decided later: it reports
// whether ip has a token left beyond those other requests hold, and holds
// one; done ends the hold, taking the token if charge. So requests in
// flight at once are no more than the tokens left, whatever they turn
// out to cost.
func (l *ipBuckets) hold(ip string) (done func(charge bool), ok bool) {
	if l.b.Rate < 0 {
		return func(bool) {}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	keys, lims := l.buckets(ip, now)
	if !l.left(keys, lims, now) {
		return nil, false
	}
	for _, k := range keys {
		l.held[k]++
	}
	return func(charge bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		now := l.now()
		for i, k := range keys {
			if l.held[k]--; l.held[k] <= 0 {
				delete(l.held, k)
			}
			if charge {
				l.bucket(k, scaleOf(i), now).ReserveN(now, 1) // into debt if others took it meanwhile
			}
		}
	}, true
}

// buckets returns the keys of ip's buckets (its own, then its wider
// blocks') and the buckets. Called with l.mu held.
func (l *ipBuckets) buckets(ip string, now time.Time) ([]string, []*rate.Limiter) {
	wider := addrkey.Wider(ip)
	keys := make([]string, 0, 1+len(wider))
	lims := make([]*rate.Limiter, 0, 1+len(wider))
	keys, lims = append(keys, ip), append(lims, l.bucket(ip, 1, now))
	for i, k := range wider {
		keys, lims = append(keys, k), append(lims, l.bucket(k, addrkey.Widths[i].Scale, now))
	}
	return keys, lims
}

// scaleOf is the budget scale of the i-th key buckets returns.
func scaleOf(i int) int {
	if i == 0 {
		return 1
	}
	return addrkey.Widths[i-1].Scale
}

// left reports whether every one of the buckets has a token that no
// request holds. Called with l.mu held.
func (l *ipBuckets) left(keys []string, lims []*rate.Limiter, now time.Time) bool {
	for i, lim := range lims {
		if lim.TokensAt(now)-float64(l.held[keys[i]]) < 1 {
			return false
		}
	}
	return true
}

// bucket returns key's bucket, a new one of scale times the budget if it
// has none. Called with l.mu held.
func (l *ipBuckets) bucket(key string, scale int, now time.Time) *rate.Limiter {
	lim, ok := l.m[key]
	if !ok {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(rate.Limit(l.b.Rate*float64(scale)), l.b.Burst*scale)
		l.m[key] = lim
	}
	return lim
}

// evict makes room for a quarter of the bound: it drops the buckets that
// are full again and, if those are fewer, the ones with the most tokens
// left (as a share of their burst) until a quarter is free. Called with l.mu held; it walks (and may sort)
// the whole map, so it must free a quarter every time: freeing only the
// buckets found full, one or two when they refill one after another, left
// the map full and the next new address walking it all again.
func (l *ipBuckets) evict(now time.Time) {
	keep := l.max - max(1, l.max/4)
	type entry struct {
		key    string
		tokens float64
	}
	all := make([]entry, 0, len(l.m))
	for k, v := range l.m {
		t := v.TokensAt(now)
		if t >= float64(v.Burst()) {
			delete(l.m, k)
			continue
		}
		// As a share of its burst: a wide block's bucket (addrkey) holds
		// more tokens than an address's, and must not go first for that.
		all = append(all, entry{k, t / float64(v.Burst())})
	}
	if len(l.m) <= keep {
		return
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.tokens, a.tokens) })
	for _, e := range all[:len(l.m)-keep] {
		delete(l.m, e.key)
	}
}
