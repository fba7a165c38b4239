package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Outcomes counts the answers of the crowd by class. Err counts requests
// that got no HTTP answer (connection refused, reset, timeout).
type Outcomes struct {
	Accepted    int64 `json:"202"`
	Duplicate   int64 `json:"409"`
	SoldOut     int64 `json:"410"`
	RateLimited int64 `json:"429"`
	Busy        int64 `json:"503"`
	OK          int64 `json:"200"` // the plain mode's answers
	Other       int64 `json:"other"`
	Err         int64 `json:"error"`
}

// class indexes an outcome counter.
type class int

const (
	cAccepted class = iota
	cDuplicate
	cSoldOut
	cRateLimited
	cBusy
	cOK
	cOther
	cErr
	nClasses
)

// classify maps an HTTP status (0: no answer) to its outcome class.
func classify(status int) class {
	switch status {
	case 0:
		return cErr
	case 202:
		return cAccepted
	case 409:
		return cDuplicate
	case 410:
		return cSoldOut
	case 429:
		return cRateLimited
	case 503:
		return cBusy
	case 200:
		return cOK
	}
	return cOther
}

// definitive reports whether an answer settles a buyer's attempt: accepted,
// already holding a unit, or sold out.
func (c class) definitive() bool { return c == cAccepted || c == cDuplicate || c == cSoldOut }

func outcomesOf(counts [nClasses]int64) Outcomes {
	return Outcomes{
		Accepted: counts[cAccepted], Duplicate: counts[cDuplicate], SoldOut: counts[cSoldOut],
		RateLimited: counts[cRateLimited], Busy: counts[cBusy], OK: counts[cOK],
		Other: counts[cOther], Err: counts[cErr],
	}
}

// Total is the number of requests counted.
func (o Outcomes) Total() int64 {
	return o.Accepted + o.Duplicate + o.SoldOut + o.RateLimited + o.Busy + o.OK + o.Other + o.Err
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// Latencies are recorded in microseconds, from 1 µs to 2 minutes, to 3
// significant digits.
const (
	histMin    = 1
	histMax    = int64(2 * time.Minute / time.Microsecond)
	histDigits = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// record adds one latency to h; values beyond the range count as the
// largest trackable one rather than vanishing.
func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), histMin), histMax)
	_ = h.RecordValue(us)
}

// latencyOf reports the percentiles of h.
func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// Stats is GET /api/admin/sales/{id}/stats.
type Stats struct {
	Stock        int64 `json:"stock"`
	SQLStockLeft int64 `json:"sql_stock_left"`
	Orders       int64 `json:"orders"`
	Pending      int64 `json:"pending_payment"`
	Paid         int64 `json:"paid"`
	Cancelled    int64 `json:"cancelled"`
	Refunded     int64 `json:"refunded"`
	LedgerSum    int64 `json:"ledger_sum"`
	GateLeft     int64 `json:"gate_left"`
	Queued       int64 `json:"queued"`
	// The lifecycle's numbers (zero on a server without one).
	RefundsDue       int64 `json:"refunds_due"`
	PaymentsRefunded int64 `json:"payments_refunded"`
	ReturnsUnapplied int64 `json:"returns_unapplied"`
}

// Check is one invariant checked at rest.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Skip   bool   `json:"skipped,omitempty"`
	Detail string `json:"detail"`
}

// Crowd is what the invariants need to know of the crowd besides the stats.
type Crowd struct {
	Accepted int64 // 202 answers
	Users    int   // distinct buyers in the crowd
	// Answered counts the users who got a definitive answer (202, 409 or
	// 410) at least once.
	Answered int
	SoldOut  int64 // 410 answers
	// AcceptedTwice counts users who were answered 202 more than once.
	AcceptedTwice int
	// Tickets is what the buyers' /result answered at rest, nil when
	// they were not asked: I3 is then checked on counts alone.
	Tickets *TicketCheck
}

// CheckInvariants checks I1–I4 of design.md on a sale at rest (nothing
// queued, no cancel in progress) against what the crowd saw.
func CheckInvariants(st Stats, c Crowd) []Check {
	live := st.Pending + st.Paid
	ck := func(name string, ok bool, format string, args ...any) Check {
		return Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)}
	}
	checks := []Check{
		ck("I1 no oversell", live <= st.Stock, "live orders %d ≤ stock %d", live, st.Stock),
		ck("I2 no duplicate", c.AcceptedTwice == 0, "users accepted twice %d == 0", c.AcceptedTwice),
		lostAcceptance(st, c),
		ck("I4 no leak", live+st.SQLStockLeft == st.Stock, "live %d + sql_stock_left %d == stock %d", live, st.SQLStockLeft, st.Stock),
		ck("I4 gate matches SQL", st.GateLeft == st.SQLStockLeft-st.Queued-st.ReturnsUnapplied,
			"gate_left %d == sql_stock_left %d − queued %d − returns_unapplied %d", st.GateLeft, st.SQLStockLeft, st.Queued, st.ReturnsUnapplied),
		ck("I4 ledger", st.LedgerSum == st.SQLStockLeft, "ledger_sum %d == sql_stock_left %d", st.LedgerSum, st.SQLStockLeft),
	}
	if t := c.Tickets; t != nil {
		detail := fmt.Sprintf("%d of %d buyers answered 202 hold an order under that 202's ticket", t.Orders, t.Accepted)
		if len(t.Missing) > 0 {
			detail += "; not: " + strings.Join(t.Missing, "; ")
		}
		checks = append(checks, ck("I3 every 202 an order with its ticket", t.Orders == t.Accepted, "%s", detail))
	}
	// I2 seen from outside: nobody was accepted twice; a second order of a
	// user would also show as orders > accepted (I3).
	sold := ck("I4 sold out", st.SQLStockLeft == 0, "sql_stock_left %d == 0", st.SQLStockLeft)
	switch {
	case c.SoldOut > 0:
		sold.Detail += fmt.Sprintf(" (the gate answered sold out %d times)", c.SoldOut)
	case int64(c.Users) > st.Stock && c.Answered == c.Users:
		sold.Detail += fmt.Sprintf(" (%d buyers for %d units, each answered)", c.Users, st.Stock)
	case int64(c.Users) > st.Stock:
		sold = Check{Name: sold.Name, OK: true, Skip: true,
			Detail: fmt.Sprintf("skipped: %d of %d buyers never got past 429/503/errors", c.Users-c.Answered, c.Users)}
	default:
		sold = Check{Name: sold.Name, OK: true, Skip: true, Detail: fmt.Sprintf("skipped: %d buyers for %d units", c.Users, st.Stock)}
	}
	return append(checks, sold)
}

// Result is what one run measured.
type Result struct {
	Mode   string  `json:"mode"` // "purchase", "plain" or "ws-idle"
	Target string  `json:"target"`
	Conns  int     `json:"conns"`
	Rate   float64 `json:"rate,omitempty"` // requests/s asked for; 0: as fast as possible

	SaleID           int64   `json:"sale_id,omitempty"`
	Users            int     `json:"users,omitempty"`
	Stock            int64   `json:"stock,omitempty"`
	Tries            int     `json:"tries,omitempty"`
	ProvisionSeconds float64 `json:"provision_seconds,omitempty"`
	PathsSeconds     float64 `json:"paths_seconds,omitempty"`

	Requests int64    `json:"requests"`
	Seconds  float64  `json:"seconds"`
	RPS      float64  `json:"requests_per_second"`
	Latency  Latency  `json:"latency"`
	Outcomes Outcomes `json:"outcomes"`

	// SettleSeconds is the time from the end of the crowd until every
	// accepted purchase was an order in SQL; SettleAfterLastAccept counts
	// from the last 202 instead (sampled during the crowd every 25 ms).
	SettleSeconds         float64 `json:"settle_seconds,omitempty"`
	SettleAfterLastAccept float64 `json:"settle_after_last_accept_seconds,omitempty"`
	Settled               bool    `json:"settled,omitempty"`
	Stats                 *Stats  `json:"stats,omitempty"`
	Invariants            []Check `json:"invariants,omitempty"`

	WS *WSIdle `json:"ws,omitempty"` // the ws-idle mode's figures

	Lifecycle *Lifecycle `json:"lifecycle,omitempty"` // --pay-ratio's figures

	OK bool `json:"ok"`
}

// Failed lists the invariants that do not hold (and a failure to settle).
func (r *Result) Failed() []string {
	var out []string
	if r.Mode == ModePurchase && !r.Settled {
		out = append(out, "settle: accepted purchases did not all become orders in time")
	}
	for _, c := range r.Invariants {
		if !c.OK {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	if r.WS != nil {
		out = append(out, r.WS.failed()...)
	}
	return out
}

// WriteJSON writes r as one JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for people.
func (r *Result) WriteText(w io.Writer) {
	var b strings.Builder
	rate := "as fast as possible"
	if r.Rate > 0 {
		rate = fmt.Sprintf("at %.0f/s", r.Rate)
	}
	if r.Mode == ModeWSIdle && r.WS != nil {
		fmt.Fprintf(&b, "target      %s (%s mode, %d handshakes at a time)\n", r.Target, r.Mode, r.Conns)
		r.WS.writeText(&b)
		for _, f := range r.Failed() {
			fmt.Fprintf(&b, "FAIL        %s\n", f)
		}
		io.WriteString(w, b.String())
		return
	}
	fmt.Fprintf(&b, "target      %s (%s mode, %d connections, %s)\n", r.Target, r.Mode, r.Conns, rate)
	if r.Mode == ModePurchase {
		fmt.Fprintf(&b, "sale        %d: %d units, %d buyers × %d tries\n", r.SaleID, r.Stock, r.Users, r.Tries)
		fmt.Fprintf(&b, "setup       %d buyers provisioned in %.2fs, paths fetched in %.2fs\n", r.Users, r.ProvisionSeconds, r.PathsSeconds)
	}
	fmt.Fprintf(&b, "requests    %d in %.2fs = %.0f requests/s\n", r.Requests, r.Seconds, r.RPS)
	l := r.Latency
	fmt.Fprintf(&b, "latency     p50 %.2fms  p90 %.2fms  p99 %.2fms  p99.9 %.2fms  max %.2fms  (mean %.2fms)\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	o := r.Outcomes
	if r.Mode == ModePurchase {
		fmt.Fprintf(&b, "outcomes    202 %d  409 %d  410 %d  429 %d  503 %d  other %d  error %d\n", o.Accepted, o.Duplicate, o.SoldOut, o.RateLimited, o.Busy, o.Other+o.OK, o.Err)
	} else {
		fmt.Fprintf(&b, "outcomes    200 %d  other %d  error %d\n", o.OK, o.Total()-o.OK-o.Err, o.Err)
	}
	if r.Mode == ModePurchase {
		if r.Settled {
			fmt.Fprintf(&b, "settled     every accepted purchase an order in SQL %.3fs after the crowd (%.3fs after the last 202)\n", r.SettleSeconds, r.SettleAfterLastAccept)
		} else {
			fmt.Fprintf(&b, "settled     NO: gave up after %.1fs\n", r.SettleSeconds)
		}
		if s := r.Stats; s != nil {
			fmt.Fprintf(&b, "stats       stock %d  sql_stock_left %d  orders %d  gate_left %d  queued %d  ledger_sum %d\n", s.Stock, s.SQLStockLeft, s.Orders, s.GateLeft, s.Queued, s.LedgerSum)
		}
		for _, c := range r.Invariants {
			mark := "ok  "
			switch {
			case c.Skip:
				mark = "skip"
			case !c.OK:
				mark = "FAIL"
			}
			fmt.Fprintf(&b, "  %s  %-22s %s\n", mark, c.Name, c.Detail)
		}
		if r.Lifecycle != nil {
			r.Lifecycle.writeText(&b)
		}
		if o.RateLimited > 0 {
			fmt.Fprintf(&b, "note        %d answers were 429: run the server with --ip-rate 0 (every buyer here shares one IP)\n", o.RateLimited)
		}
	}
	io.WriteString(w, b.String())
}

// lostAcceptance checks I3 on counts: every order is a buyer's whose
// /result is a success, and (without the buyers' results) every 202 an
// order. With the results, a purchase answered 503 that went through after
// all is an order too: the count of 202s alone would take it for the order
// of a lost 202.
func lostAcceptance(st Stats, c Crowd) Check {
	name := "I3 no lost acceptance"
	if t := c.Tickets; t != nil {
		return Check{Name: name, OK: st.Orders == t.Successes && t.Successes >= int64(t.Accepted),
			Detail: fmt.Sprintf("orders %d == buyers whose result is success %d (%d of them answered 202, %d asked after a 503, a lost answer or a 409)",
				st.Orders, t.Successes, t.Accepted, t.Asked-t.Accepted)}
	}
	return Check{Name: name, OK: st.Orders == c.Accepted, Detail: fmt.Sprintf("orders %d == accepted (202) %d", st.Orders, c.Accepted)}
}
