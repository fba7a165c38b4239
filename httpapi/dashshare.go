package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"
)

// The dashboard's admissions and refusals are counted by the instance that
// answered the buying request; with Config.DashBus set, the instances tell
// each other their counts, so that every instance's dashboard shows the
// whole cluster's:
//
//   - every DashShare (a second by default) an instance publishes what it
//     counted since its last message, per sale and second, non-zero counts
//     only, and nothing when it counted nothing;
//   - every instance adds what it hears from the others into its series.
//     Its own messages come back to it on the bus and are recognised by
//     the sender's id (random, drawn at New): an instance's own counts are
//     in its series from the moment it answers, never a second time.
//
// A count is kept under the second it happened at on the shared clock as
// the instance that counted it reads it (its own clock plus its measured
// skew, dashboard.go). Instances' readings may differ a little (by their
// skews' errors, or a clock that stepped since its last reading): a count
// up to DashSkew seconds ahead of this instance's reading is kept (it
// shows once this reading reaches its second), one further ahead is
// dropped (that instance's reading is wrong), and a late one is kept as
// long as its second is in the window. The stream's tails (DashTail) are long enough to carry
// a second that arrives a publish interval late from an instance up to
// DashSkew behind; a second arriving later still shows on the next full
// read (GET /api/admin/dashboard).
//
// The bus carries the messages at most once: a message lost (the bus down,
// a subscriber's buffer overflowing, an instance killed before it
// published) loses the counts it carried, those of one instance for a
// second or two, and nothing else; the next message carries only what
// was counted after it. Counts are only kept for sales in the catalogue,
// so memory stays bounded whatever a message names.

// DashBus carries the instances' dashboard counts to each other: the
// message bus the instances share (mq.Queue on NATS, inmem.Queue in one
// process). Messages are opaque to it.
type DashBus interface {
	// PublishDash sends data to every subscriber of every instance, the
	// sender's own included.
	PublishDash(ctx context.Context, data []byte) error
	// SubscribeDash calls fn with every message published from now on,
	// from one goroutine, until the returned cancel is called. fn must not
	// keep data.
	SubscribeDash(fn func(data []byte)) (cancel func(), err error)
}

// DefaultDashShare is how often an instance publishes its new counts.
const DefaultDashShare = time.Second

// DashSkew is how many seconds ahead of this instance's reading of the
// shared clock another instance's count may be and still be kept.
const DashSkew = 5

// dashSharePerMsg bounds a message's counts, well under NATS's default
// 1 MiB payload limit.
const dashSharePerMsg = 2000

// dashShareMsg is one instance's message on the DashBus.
type dashShareMsg struct {
	From   string           `json:"from"` // the sender's id
	Counts []dashShareCount `json:"counts"`
}

// dashShareCount is what one instance counted in one second of one sale
// since its last message.
type dashShareCount struct {
	Sale     int64            `json:"sale"`
	Sec      int64            `json:"sec"` // Unix second, on the shared clock as the sender reads it
	Admitted int64            `json:"admitted,omitempty"`
	Refused  map[string]int64 `json:"refused,omitempty"` // by error code
}

// newInstanceID names this instance on the DashBus.
func newInstanceID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// unsent takes the counts of this instance not yet published.
func (d *dashboard) unsent() []dashShareCount {
	d.mu.RLock()
	ids := make([]int64, 0, len(d.series))
	all := make([]*saleSeries, 0, len(d.series))
	for id, ss := range d.series {
		ids = append(ids, id)
		all = append(all, ss)
	}
	d.mu.RUnlock()
	var out []dashShareCount
	for i, ss := range all {
		ss.mu.Lock()
		if ss.dirty != 0 {
			for sec := max(ss.dirty, ss.last-DashWindow+1); sec <= ss.last; sec++ {
				b := &ss.buckets[sec%DashWindow]
				if b.sec != sec || b.unsent == (dashCounts{}) {
					continue
				}
				c := dashShareCount{Sale: ids[i], Sec: sec, Admitted: b.unsent.admitted}
				for k, v := range b.unsent.refused {
					if v != 0 {
						if c.Refused == nil {
							c.Refused = map[string]int64{}
						}
						c.Refused[refusalCodes[k]] = v
					}
				}
				out = append(out, c)
				b.unsent = dashCounts{}
			}
			ss.dirty = 0
		}
		ss.mu.Unlock()
	}
	return out
}

// share publishes this instance's new counts, if any.
func (d *dashboard) share(ctx context.Context) {
	counts := d.unsent()
	for len(counts) > 0 {
		n := min(len(counts), dashSharePerMsg)
		data, err := json.Marshal(dashShareMsg{From: d.id, Counts: counts[:n]})
		if err == nil {
			err = d.s.cfg.DashBus.PublishDash(ctx, data)
		}
		if err != nil {
			// Lost: the other instances miss these counts (see above).
			d.s.log.Debug("dashboard: counts not shared", "counts", n, "err", err)
		}
		counts = counts[n:]
	}
}

// runShare publishes every DashShare until close.
func (d *dashboard) runShare() {
	defer close(d.shareDone)
	tickLoop(d.shareCtx, nil, d.s.cfg.DashShare, func() bool { return true }, func() {
		ctx, cancel := context.WithTimeout(d.shareCtx, 5*time.Second)
		defer cancel()
		d.share(ctx)
	})
	// The last counts, on the way out.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d.share(ctx)
}

// heard adds another instance's counts to the series.
func (d *dashboard) heard(data []byte) {
	var m dashShareMsg
	if err := json.Unmarshal(data, &m); err != nil {
		d.s.log.Warn("dashboard: malformed counts message", "err", err)
		return
	}
	if m.From == d.id {
		return // ours: counted when we answered
	}
	now := d.s.sharedNow().Unix()
	var catalogue map[int64]bool // read at the first sale without a series
	for _, c := range m.Counts {
		if c.Sec > now+DashSkew || c.Sec <= now-DashWindow {
			continue
		}
		ss := d.get(c.Sale, false)
		if ss == nil {
			if catalogue == nil {
				catalogue = d.catalogue()
			}
			if !catalogue[c.Sale] {
				continue
			}
			ss = d.get(c.Sale, true)
		}
		ss.mu.Lock()
		if b := ss.bucket(c.Sec); b != nil {
			b.admitted += max(c.Admitted, 0)
			for code, v := range c.Refused {
				b.refused[refusalIndex(code)] += max(v, 0)
			}
		}
		ss.mu.Unlock()
	}
}

// catalogue returns the ids of the sales in the catalogue (none while it
// cannot be read).
func (d *dashboard) catalogue() map[int64]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[int64]bool{}
	sales, err := d.s.catalog.get(ctx)
	if err != nil {
		d.s.log.Debug("dashboard: catalogue", "err", err)
	}
	for _, s := range sales {
		out[s.ID] = true
	}
	return out
}

// subscribeBus subscribes with sub unless *cancel is set already, and
// keeps its cancel (called with subMu held).
func (d *dashboard) subscribeBus(cancel *func(), what string, sub func() (func(), error)) {
	if *cancel != nil {
		return
	}
	c, err := sub()
	if err != nil {
		d.s.log.Warn("dashboard: cannot hear "+what+" yet", "err", err)
		return
	}
	*cancel = c
}
