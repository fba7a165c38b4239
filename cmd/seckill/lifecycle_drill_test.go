package main

import (
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"
)

// The lifecycle's fault drills (issue 11): unpaid orders expire together on
// three instances that all sweep, a fault lands while the sweepers cancel
// them and relay their units to the gate, and afterwards every unit is
// back exactly once — in SQL and in the gate — and sells again to other
// buyers, while the buyers who let their orders lapse stay duplicates.

// lifecycleStats are the admin stats with the lifecycle's numbers.
type lifecycleStats struct {
	adminStats
	Cancelled        int64 `json:"cancelled"`
	Refunded         int64 `json:"refunded"`
	ReturnsUnapplied int64 `json:"returns_unapplied"`
	RefundsDue       int64 `json:"refunds_due"`
}

// lifecycleEnv is a short pay window and sweeps several times a second on
// every instance, so that hundreds of orders expire within a drill and the
// sweepers meet on them.
var lifecycleEnv = []string{"SECKILL_PAY_WINDOW=3s", "SECKILL_SWEEP_EVERY=200ms"}

func (d *deployment) lifecycleStats(sale int64) (lifecycleStats, error) {
	var st lifecycleStats
	code, err := d.node(0).call("GET", fmt.Sprintf("/api/admin/sales/%d/stats", sale), d.admin, "", &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("stats: status %d", code)
	}
	return st, err
}

// expired waits until no order of the sale waits for payment, nothing is
// queued, every cancelled unit is in the gate and the gate agrees with SQL.
func (d *deployment) expired(sale int64, within time.Duration) lifecycleStats {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := d.lifecycleStats(sale)
		if err == nil && st.Pending == 0 && st.Queued == 0 && st.ReturnsUnapplied == 0 && st.GateLeft == st.SQLStockLeft {
			return st
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("orders not expired and returned after %v: %+v %v", within, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkLifecycle asserts, at rest, I1–I4 (checkInvariants, with the gate
// = stock_left − queued − unapplied returns) and I5 from SQL: every
// cancelled order has exactly one 'cancel' row in the stock ledger, applied
// to the gate, and no other order has one.
func (d *deployment) checkLifecycle(sale int64, st lifecycleStats, accepted map[int64]string) {
	d.t.Helper()
	t := d.t
	d.checkInvariants(sale, st.adminStats, accepted, false)
	if st.GateLeft != st.SQLStockLeft-st.Queued-st.ReturnsUnapplied {
		t.Errorf("I4: gate %d != sql %d - queued %d - unapplied %d", st.GateLeft, st.SQLStockLeft, st.Queued, st.ReturnsUnapplied)
	}
	if st.Refunded != 0 {
		t.Errorf("I5: %d orders refunded, none was paid", st.Refunded)
	}
	db, err := sql.Open("pgx", d.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, orders, cancelledWithRow, cancelled, unapplied int64
	err = db.QueryRow(`SELECT
		(SELECT COUNT(*) FROM stock_ledger WHERE sale_id = $1 AND reason = 'cancel'),
		(SELECT COUNT(DISTINCT order_id) FROM stock_ledger WHERE sale_id = $1 AND reason = 'cancel'),
		(SELECT COUNT(*) FROM orders o WHERE o.sale_id = $1 AND o.status = 'cancelled' AND o.cancelled_at IS NOT NULL
			AND EXISTS (SELECT 1 FROM stock_ledger l WHERE l.order_id = o.id AND l.reason = 'cancel')),
		(SELECT COUNT(*) FROM orders WHERE sale_id = $1 AND status = 'cancelled'),
		(SELECT COUNT(*) FROM stock_ledger WHERE sale_id = $1 AND reason = 'cancel' AND NOT gate_applied)`,
		sale).Scan(&rows, &orders, &cancelledWithRow, &cancelled, &unapplied)
	if err != nil {
		t.Fatal(err)
	}
	if rows != cancelled || orders != cancelled || cancelledWithRow != cancelled || cancelled != st.Cancelled || unapplied != 0 {
		t.Errorf("I5: %d cancelled orders (stats: %d), %d with their ledger row; %d cancel rows for %d orders, %d not applied to the gate",
			cancelled, st.Cancelled, cancelledWithRow, rows, orders, unapplied)
	}
}

// lifecycleDrill sells stock units to as many buyers, lets every order
// expire unpaid while inject is called with each reading of the stats
// (every 20 ms) until it reports the fault done, then checks the
// invariants at rest, resells the returned units to a second crowd — the
// first one trying again too, every one of them a duplicate — lets those
// orders expire as well, and checks again. after runs once the first
// expiry is at rest (a restart of what the fault killed); nil: nothing.
func lifecycleDrill(t *testing.T, d *deployment, inject func(st lifecycleStats) bool, after func(sale int64)) {
	t.Helper()
	const stock = 300
	sale, buyers := d.provision(2*stock, stock)
	first, second := buyers[:stock], buyers[stock:]
	accepted := map[int64]string{}
	var mu sync.Mutex
	answers := d.crowd(sale, first, 2, accepted, &mu, nil)
	if len(accepted) != stock {
		t.Fatalf("first crowd: %v, %d accepted, want %d", answers, len(accepted), stock)
	}
	d.settle(sale, time.Minute)

	// The orders expire, spread over how long the crowd took; the fault
	// lands while the sweepers cancel them.
	t0 := time.Now()
	injected := false
	for !injected {
		st, err := d.lifecycleStats(sale)
		if err == nil {
			injected = inject(st)
		}
		if time.Since(t0) > 30*time.Second {
			t.Fatalf("the fault never found its moment: %+v %v", st, err)
		}
		if !injected {
			time.Sleep(20 * time.Millisecond)
		}
	}
	st := d.expired(sale, time.Minute)
	t.Logf("every order expired and returned %.1fs after the first crowd settled: %+v", time.Since(t0).Seconds(), st)
	if st.Cancelled != stock || st.SQLStockLeft != stock || st.GateLeft != stock {
		t.Errorf("after the expiry: %d cancelled, sql %d, gate %d; want %d each", st.Cancelled, st.SQLStockLeft, st.GateLeft, stock)
	}
	d.checkLifecycle(sale, st, accepted)
	if after != nil {
		after(sale)
	}

	// Resold, to others only: the first crowd tries again and is told 409.
	again := d.crowd(sale, buyers, 2, accepted, &mu, nil)
	resold := 0
	for _, u := range second {
		if _, ok := accepted[u.ID]; ok {
			resold++
		}
	}
	t.Logf("resale: %v, %d of %d returned units resold", again, resold, stock)
	if resold != stock {
		t.Errorf("resold %d units, want %d", resold, stock)
	}
	for code, n := range again {
		if code != 202 && code != 409 && code != 410 {
			t.Errorf("resale: %d answers with status %d", n, code)
		}
	}
	if again[409] < 2*stock { // each first buyer twice, each second buyer once after its 202
		t.Errorf("resale: %d duplicates, want at least %d", again[409], 2*stock)
	}
	st2 := d.settle(sale, time.Minute)
	if st2.Orders != 2*stock {
		t.Errorf("after the resale: %d orders, want %d", st2.Orders, 2*stock)
	}
	// The resold orders lapse too: at rest again, every unit is back once.
	st = d.expired(sale, time.Minute)
	if st.Cancelled != 2*stock || st.SQLStockLeft != stock || st.GateLeft != stock {
		t.Errorf("after the second expiry: %d cancelled, sql %d, gate %d", st.Cancelled, st.SQLStockLeft, st.GateLeft)
	}
	d.checkLifecycle(sale, st, accepted)
}

func TestLifecycleDrills(t *testing.T) {
	if testing.Short() {
		t.Skip("fault drills skipped in -short mode")
	}
	pg := func(t *testing.T) string { return freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES")) }
	redis := func(t *testing.T) string { return integration(t, "SECKILL_TEST_REDIS") }
	nats := func(t *testing.T) string { return integration(t, "SECKILL_TEST_NATS") }
	lifecycle := func(int) []string { return lifecycleEnv }

	// kill -9 of two of the three instances while they sweep, each at a
	// moment when cancels were committed and their units not yet in the
	// gate (returns_unapplied > 0): whichever instance made them, the
	// others' relay gives them to the gate, once.
	t.Run("kill-while-returning", func(t *testing.T) {
		d := newDeploymentEnv(t, 3, pg(t), redis(t), nats(t), lifecycle)
		killed := 0
		lifecycleDrill(t, d, func(st lifecycleStats) bool {
			// The first at unapplied returns (or half way, if the relay
			// is too quick to be seen), the second on the next reading.
			if st.Pending > 0 && (killed == 1 || st.ReturnsUnapplied > 0 || st.Cancelled > st.Pending) {
				killed++
				t.Logf("kill -9 instance %d at %+v", killed, st)
				d.nodes[killed].kill()
			}
			return killed == 2 || st.Pending == 0
		}, func(int64) {
			for i := 1; i <= killed; i++ {
				d.restart(i)
			}
			d.waitReady(time.Minute)
		})
	})

	// Redis restarts empty while the units go back: the gate is rebuilt
	// from SQL with the cancelled orders as returned already, so the
	// relay's rows still unapplied are no-ops and the rest arrive once.
	t.Run("redis-restarts-empty-while-returning", func(t *testing.T) {
		r := ownRedis(t)
		d := newDeploymentEnv(t, 3, pg(t), "redis://127.0.0.1:"+r.port, nats(t), lifecycle)
		lifecycleDrill(t, d, func(st lifecycleStats) bool {
			if st.Cancelled == 0 {
				return false
			}
			t.Logf("Redis restarts empty at %+v", st)
			r.crash()
			r.start()
			return true
		}, nil)
	})

	// Three instances sweep the same expired orders every 200 ms: each
	// order is cancelled once and its unit reaches the gate once.
	t.Run("three-sweepers", func(t *testing.T) {
		d := newDeploymentEnv(t, 3, pg(t), redis(t), nats(t), lifecycle)
		lifecycleDrill(t, d, func(st lifecycleStats) bool { return true }, nil)
	})
}
