package httpapi

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"seckill"
)

// The sale push of api.md: {"type":"sale","sale_id":…,"left":…,"state":…}
// to every open socket when a sale's units left or state change.
//
// Each instance watches on its own: while it holds sockets, it reads every
// live sale's units left from the gate (Engine.SaleView) once a tick and
// broadcasts the sales that changed since the last tick. The gate is shared
// by every instance, so each one sees every purchase made anywhere and no
// bus between instances is needed; a change reaches the sockets of all
// instances within one tick. Changes within a tick coalesce into one
// message per sale, so a sale is pushed at most once per SaleInterval
// however fast it sells.
//
// What a change costs with 10,000 idle sockets: one gate read per live
// sale per tick (none while no socket is open), one JSON encoding per
// changed sale, and one append to each socket's queue. A sale push is
// best-effort: a socket whose queue is half full skips it instead of being
// dropped (its client is slow; the next push, or the page's periodic
// reload of the list, carries the state, which each message holds whole),
// keeping the other half for the user's own results.

// PushSale is the type of the push of a sale's change.
const PushSale = "sale"

// Sale states of the sale push (api.md): a sale's status, except that an
// active sale is "running".
const (
	SaleStateUpcoming = "upcoming"
	SaleStateRunning  = "running"
	SaleStateSoldOut  = "sold_out"
	SaleStateEnded    = "ended"
)

// SaleMessage is the push of a sale's change:
// {"type":"sale","sale_id":…,"left":…,"state":…}.
type SaleMessage struct {
	Type   string `json:"type"` // PushSale
	SaleID int64  `json:"sale_id"`
	Left   int64  `json:"left"`
	State  string `json:"state"`
}

// saleState maps a sale status (seckill.SaleActive…) to its push state.
func saleState(status string) string {
	if status == seckill.SaleActive {
		return SaleStateRunning
	}
	return status
}

// saleSeen is what the last tick saw of a sale.
type saleSeen struct {
	left  int64
	state string
}

// salePush watches the sales and broadcasts their changes to the hub.
type salePush struct {
	hub   *hub
	sales func(ctx context.Context) ([]*seckill.Sale, error)
	view  func(ctx context.Context, s *seckill.Sale) (*seckill.Sale, string)
	ticks <-chan time.Time // nil: a ticker of interval
	every time.Duration

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	seen map[int64]saleSeen // owned by run
}

func newSalePush(h *hub, s *Server) *salePush {
	p := &salePush{
		hub: h, sales: s.catalog.get, view: s.cfg.Engine.SaleView,
		ticks: h.cfg.SaleTicks, every: h.cfg.SaleInterval,
		done: make(chan struct{}), seen: map[int64]saleSeen{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// start runs the watcher unless it runs already; it is called at the
// first handshake, so an instance that never holds a socket never reads
// the gate for it.
func (p *salePush) start() {
	p.once.Do(func() { go p.run() })
}

// stop ends the watcher and waits for it.
func (p *salePush) stop() {
	p.cancel()
	started := true
	p.once.Do(func() { started = false })
	if started {
		<-p.done
	}
}

func (p *salePush) run() {
	defer close(p.done)
	// Nobody to tell while no socket is open; the next socket loads the
	// list itself.
	tickLoop(p.ctx, p.ticks, p.every, func() bool { return p.hub.sockets.Load() > 0 }, func() { p.tick(p.ctx) })
}

// tickLoop calls tick on every value of ticks (of a ticker of every when
// ticks is nil) while active reports true, until ctx ends. A zero time
// from ticks (a test's; a ticker never sends one) calls nothing: its
// sender knows, once it is received, that the tick before it is over.
func tickLoop(ctx context.Context, ticks <-chan time.Time, every time.Duration, active func() bool, tick func()) {
	if ticks == nil {
		t := time.NewTicker(every)
		defer t.Stop()
		ticks = t.C
	}
	for {
		var at time.Time
		select {
		case <-ctx.Done():
			return
		case at = <-ticks:
		}
		if !at.IsZero() && active() {
			tick()
		}
	}
}

// tick compares every sale with what the last tick saw and broadcasts the
// ones that changed. A sale seen for the first time is only recorded: the
// page reads the list when it opens, and a burst of every sale at once
// would fill the sockets' queues for nothing. An ended sale stays ended
// and is not read again.
func (p *salePush) tick(ctx context.Context) {
	sales, err := p.sales(ctx)
	if err != nil {
		p.hub.log.Debug("sale push: list sales", "err", err)
		return
	}
	for _, s := range sales {
		last, known := p.seen[s.ID]
		if known && last.state == SaleStateEnded {
			continue
		}
		v, status := p.view(ctx, s)
		now := saleSeen{left: max(v.StockLeft, 0), state: saleState(status)}
		p.seen[s.ID] = now
		if !known || now == last {
			continue
		}
		b, err := json.Marshal(SaleMessage{Type: PushSale, SaleID: s.ID, Left: now.left, State: now.state})
		if err != nil {
			p.hub.log.Warn("sale push not encodable", "sale", s.ID, "err", err)
			continue
		}
		p.hub.broadcast(b)
	}
}
