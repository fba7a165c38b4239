package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"seckill/internal/testenv"
	"seckill/sqldb"
)

// integration returns the URL of a test server (see internal/testenv).
func integration(t *testing.T, name string) string {
	t.Helper()
	return testenv.URL(t, name)
}

func randomName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// freshDatabase creates an empty database (PostgreSQL: a schema) for one
// test on the server of base, drops it afterwards, and returns its URL.
func freshDatabase(t *testing.T, base string) string {
	t.Helper()
	name := randomName("mt_")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE SCHEMA " + name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if db, err := sql.Open("pgx", base); err == nil {
				_, _ = db.Exec("DROP SCHEMA " + name + " CASCADE")
				db.Close()
			}
		})
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		return u.String()
	case "mysql":
		dsn := fmt.Sprintf("%s@tcp(%s)/", u.User.String(), u.Host)
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if db, err := sql.Open("mysql", dsn); err == nil {
				_, _ = db.Exec("DROP DATABASE " + name)
				db.Close()
			}
		})
		u.Path = "/" + name
		return u.String()
	}
	t.Fatalf("no fresh database for %s", base)
	return ""
}

// deployment is several server processes sharing SQL, Redis and NATS, as
// behind a load balancer.
type deployment struct {
	t           *testing.T
	db          string
	env         []string
	nodeEnv     func(i int) []string // settings of node i alone; nil: none
	queuePrefix string
	pace        time.Duration // each crowd worker waits this long between requests
	nodes       []*child
	nodesMu     sync.Mutex // a restart replaces nodes[i] while crowds pick nodes
	dirs        []string
	admin       string
}

func newDeployment(t *testing.T, n int, dbURL, redisURL, natsURL string) *deployment {
	t.Helper()
	return newDeploymentEnv(t, n, dbURL, redisURL, natsURL, nil)
}

// newDeploymentEnv is newDeployment with settings that differ by node
// (nodeEnv(i) is added to node i's environment).
func newDeploymentEnv(t *testing.T, n int, dbURL, redisURL, natsURL string, nodeEnv func(i int) []string) *deployment {
	t.Helper()
	queuePrefix := randomName("T")
	d := &deployment{t: t, db: dbURL, env: []string{
		"SECKILL_DB=" + dbURL, "SECKILL_REDIS=" + redisURL, "SECKILL_NATS=" + natsURL,
		"SECKILL_QUEUE_PREFIX=" + queuePrefix, "SECKILL_REDIS_PREFIX=" + randomName("t") + ":",
		"SECKILL_SECRET=" + randomName("secret-of-the-deployment-"),
		"SECKILL_BENCH_PROVISIONING=true", "SECKILL_RECONCILE_EVERY=1s", "SECKILL_RECONCILE_AGE=5s",
		"SECKILL_ACK_WAIT=5s",
	}, nodeEnv: nodeEnv, queuePrefix: queuePrefix}
	for i := 0; i < n; i++ {
		d.dirs = append(d.dirs, t.TempDir())
		d.nodes = append(d.nodes, startChild(t, d.dirs[i], d.envOf(i)...))
	}
	t.Cleanup(func() {
		for _, c := range d.nodes {
			if c != nil && !c.dead.Load() {
				c.kill()
			}
		}
		if err := testenv.DeleteOrderStream(natsURL, queuePrefix); err != nil {
			t.Logf("delete the deployment's stream: %v", err)
		}
	})
	var login struct{ Token string }
	if code, err := d.nodes[0].call("POST", "/api/sessions", "", `{"phone":"19900000000","password":"admin-password"}`, &login); err != nil || code != 200 {
		t.Fatalf("admin login: %d %v", code, err)
	}
	d.admin = login.Token
	return d
}

// restart starts node i again on its data directory.
func (d *deployment) restart(i int) {
	c := startChild(d.t, d.dirs[i], d.envOf(i)...)
	d.nodesMu.Lock()
	d.nodes[i] = c
	d.nodesMu.Unlock()
}

// envOf returns the settings of node i.
func (d *deployment) envOf(i int) []string {
	if d.nodeEnv == nil {
		return d.env
	}
	return append(append([]string(nil), d.env...), d.nodeEnv(i)...)
}

// node returns a live node for the k-th request, round robin, skipping
// dead ones.
func (d *deployment) node(k int) *child {
	// All dead: a drill may be restarting one (up to a minute).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		d.nodesMu.Lock()
		for j := 0; j < len(d.nodes); j++ {
			c := d.nodes[(k+j)%len(d.nodes)]
			if !c.dead.Load() {
				d.nodesMu.Unlock()
				return c
			}
		}
		d.nodesMu.Unlock()
		if time.Now().After(deadline) {
			break
		}
	}
	d.t.Fatal("no live node")
	return nil
}

type benchUser struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

// provision opens a sale without captcha and creates buyers with sessions
// through the admin's bulk route.
func (d *deployment) provision(users int, stock int64) (int64, []benchUser) {
	d.t.Helper()
	var sale struct{ Sale struct{ ID int64 } }
	body := fmt.Sprintf(`{"name":"drill","price_cents":100,"stock":%d,"starts_at":%q,"ends_at":%q,"require_captcha":false}`,
		stock, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if code, err := d.nodes[0].call("POST", "/api/admin/sales", d.admin, body, &sale); err != nil || code != 201 {
		d.t.Fatalf("create sale: %d %v", code, err)
	}
	var out struct{ Users []benchUser }
	// Phones are the prefix and a counter: "1" and 5 random digits leave
	// room for 100,000 users per deployment.
	body = fmt.Sprintf(`{"count":%d,"prefix":"1%05d"}`, users, mrand.IntN(100000))
	if code, err := d.nodes[0].call("POST", "/api/admin/bench/users", d.admin, body, &out); err != nil || code != 201 {
		d.t.Fatalf("provision users: %d %v", code, err)
	}
	if len(out.Users) != users {
		d.t.Fatalf("provisioned %d users, want %d", len(out.Users), users)
	}
	return sale.Sale.ID, out.Users
}

// crowd makes every user try `tries` times, spread over the nodes, from 64
// workers. onAccepted runs after each 202 with the count so far. It
// returns the answers by status and each accepted user's ticket.
func (d *deployment) crowd(sale int64, users []benchUser, tries int, accepted map[int64]string, mu *sync.Mutex, onAccepted func(n int)) map[int]int {
	d.t.Helper()
	paths := make([]string, len(users))
	for i, u := range users {
		var p struct{ Path string }
		if code, err := d.node(i).call("POST", fmt.Sprintf("/api/sales/%d/path", sale), u.Token, "", &p); err != nil || code != 200 {
			d.t.Fatalf("path: %d %v", code, err)
		}
		paths[i] = p.Path
	}
	answers := map[int]int{}
	var wg sync.WaitGroup
	const workers = 64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for try := 0; try < tries; try++ {
				for i := w; i < len(users); i += workers {
					if d.pace > 0 {
						time.Sleep(d.pace)
					}
					var r struct{ Ticket string }
					c := d.node(i + try)
					code, err := c.call("POST", fmt.Sprintf("/api/sales/%d/purchase/%s", sale, paths[i]), users[i].Token, "", &r)
					mu.Lock()
					if err != nil {
						// A fault drill expects some (a killed instance);
						// the first few say which, for a drill that does not.
						if answers[-1]++; answers[-1] <= 3 {
							d.t.Logf("purchase at %s: %d %v", c.url, code, err)
						}
					} else {
						answers[code]++
					}
					n := -1
					if code == 202 {
						if old, ok := accepted[users[i].ID]; ok {
							d.t.Errorf("I2: user %d accepted twice (%s, %s)", users[i].ID, old, r.Ticket)
						}
						accepted[users[i].ID] = r.Ticket
						n = len(accepted)
					}
					mu.Unlock()
					if n > 0 && onAccepted != nil {
						onAccepted(n)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	return answers
}

type adminStats struct {
	Stock        int64 `json:"stock"`
	GateLeft     int64 `json:"gate_left"`
	Queued       int64 `json:"queued"`
	Orders       int64 `json:"orders"`
	Pending      int64 `json:"pending_payment"`
	Paid         int64 `json:"paid"`
	SQLStockLeft int64 `json:"sql_stock_left"`
	LedgerSum    int64 `json:"ledger_sum"`
}

// settle waits until nothing is queued and no reservation is pending, then
// returns the stats as every node sees them.
func (d *deployment) settle(sale int64, within time.Duration) adminStats {
	d.t.Helper()
	st, ok := d.rest(sale, within)
	if !ok {
		d.t.Fatalf("not settled after %v: %+v", within, st)
	}
	return st
}

// rest is settle that reports, instead of failing, a sale that does not
// come to rest in time: the stats are then the last seen.
func (d *deployment) rest(sale int64, within time.Duration) (adminStats, bool) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var st adminStats
		code, err := d.node(0).call("GET", fmt.Sprintf("/api/admin/sales/%d/stats", sale), d.admin, "", &st)
		if err == nil && code == 200 && st.Queued == 0 && st.GateLeft == st.SQLStockLeft {
			return st, true
		}
		if time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkInvariants asserts I1–I4 from the admin stats and directly in SQL:
// every accepted purchase is the order carrying its ticket.
func (d *deployment) checkInvariants(sale int64, st adminStats, accepted map[int64]string, soldOut bool) {
	d.t.Helper()
	t := d.t
	live := st.Pending + st.Paid
	if live > st.Stock {
		t.Errorf("I1: %d live orders for %d units", live, st.Stock)
	}
	if live+st.SQLStockLeft != st.Stock || st.LedgerSum != st.SQLStockLeft {
		t.Errorf("I4: live %d + stock_left %d != stock %d (ledger %d)", live, st.SQLStockLeft, st.Stock, st.LedgerSum)
	}
	if st.GateLeft != st.SQLStockLeft-st.Queued {
		t.Errorf("I4: gate %d != sql %d - queued %d", st.GateLeft, st.SQLStockLeft, st.Queued)
	}
	if soldOut && st.SQLStockLeft != 0 {
		t.Errorf("I4: %d units unsold although buyers outnumber them", st.SQLStockLeft)
	}
	db, err := sqldb.Open(context.Background(), d.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	buyers, err := db.SaleBuyers(context.Background(), sale)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(buyers)) != st.Orders {
		t.Errorf("I2: %d orders for %d distinct buyers", st.Orders, len(buyers))
	}
	for user, ticket := range accepted {
		o, err := db.OrderBySaleUser(context.Background(), sale, user)
		if err != nil {
			t.Errorf("I3: user %d got 202 (%s) but has no order: %v", user, ticket, err)
		} else if o.OrderNo != ticket {
			t.Errorf("I3: user %d got ticket %s, the order has %s", user, ticket, o.OrderNo)
		}
	}
}

// TestMultiInstance: three servers share SQL, Redis and NATS; 5,000 users
// try 3 times each, spread over the three, for 1,000 units → I1–I4, and
// every server's dashboard counts the whole crowd. Once
// on PostgreSQL, once on MySQL, once with a Redis Cluster.
func TestMultiInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance runs skipped in -short mode")
	}
	cases := []struct{ name, db, redis string }{
		{"postgres", "SECKILL_TEST_POSTGRES", "SECKILL_TEST_REDIS"},
		{"mysql", "SECKILL_TEST_MYSQL", "SECKILL_TEST_REDIS"},
		{"redis-cluster", "SECKILL_TEST_POSTGRES", "SECKILL_TEST_REDIS_CLUSTER"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dbURL := freshDatabase(t, integration(t, c.db))
			redisURL := integration(t, c.redis)
			if c.redis == "SECKILL_TEST_REDIS_CLUSTER" && !strings.Contains(redisURL, "://") {
				redisURL = "redis://" + redisURL
			}
			d := newDeployment(t, 3, dbURL, redisURL, integration(t, "SECKILL_TEST_NATS"))
			const users, stock = 5000, 1000
			sale, buyers := d.provision(users, stock)
			accepted := map[int64]string{}
			var mu sync.Mutex
			answers := d.crowd(sale, buyers, 3, accepted, &mu, nil)
			t.Logf("answers %v, %d accepted", answers, len(accepted))
			for code, n := range answers {
				if code != 202 && code != 409 && code != 410 {
					t.Errorf("%d answers with status %d", n, code)
				}
			}
			if len(accepted) != stock {
				t.Errorf("accepted %d purchases, want %d", len(accepted), stock)
			}
			st := d.settle(sale, time.Minute)
			d.checkInvariants(sale, st, accepted, true)
			d.checkResults(sale, buyers, accepted)
			d.checkDashboards(sale, int64(answers[202]), int64(answers[409]+answers[410]))
		})
	}
}

// checkDashboards waits until every node's dashboard counts the whole
// crowd's admissions and refusals, whichever node answered them, and
// fails if one counts more (an instance's counts added twice).
func (d *deployment) checkDashboards(sale, admitted, refused int64) {
	d.t.Helper()
	want := fmt.Sprintf("admitted %d refused %d", admitted, refused)
	for i, c := range d.nodes {
		deadline := time.Now().Add(15 * time.Second)
		for {
			var m struct {
				Sales []struct {
					SaleID int64 `json:"sale_id"`
					Series struct {
						Admitted []int64            `json:"admitted"`
						Refused  map[string][]int64 `json:"refused"`
					} `json:"series"`
				} `json:"sales"`
			}
			if code, err := c.call("GET", "/api/admin/dashboard", d.admin, "", &m); err != nil || code != 200 {
				d.t.Fatalf("node %d dashboard: %d %v", i, code, err)
			}
			var a, r int64
			for _, s := range m.Sales {
				if s.SaleID != sale {
					continue
				}
				for _, n := range s.Series.Admitted {
					a += n
				}
				for _, xs := range s.Series.Refused {
					for _, n := range xs {
						r += n
					}
				}
			}
			got := fmt.Sprintf("admitted %d refused %d", a, r)
			if got == want {
				break
			}
			if a > admitted || r > refused || time.Now().After(deadline) {
				d.t.Errorf("node %d's dashboard: %s, want %s", i, got, want)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// checkResults asks every node for the result of buyers who bought through
// other nodes: each sees success with the order, the others "none".
func (d *deployment) checkResults(sale int64, users []benchUser, accepted map[int64]string) {
	d.t.Helper()
	for i, u := range users[:300] {
		var r struct {
			Status  string `json:"status"`
			OrderID int64  `json:"order_id"`
		}
		code, err := d.node(i).call("GET", fmt.Sprintf("/api/sales/%d/result", sale), u.Token, "", &r)
		if err != nil || code != 200 {
			d.t.Fatalf("result: %d %v", code, err)
		}
		_, bought := accepted[u.ID]
		if bought && (r.Status != "success" || r.OrderID == 0) || !bought && r.Status != "none" {
			d.t.Errorf("user %d (bought: %v) sees %+v", u.ID, bought, r)
		}
	}
}
