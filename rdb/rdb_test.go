package rdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"seckill/internal/testenv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/internal/contract"
)

// targets are the Redis deployments every suite runs against, by the
// environment variable naming their URL.
// query is added to the URL.
var targets = []struct{ name, env, query string }{
	{"Single", "SECKILL_TEST_REDIS", "autopipeline=false"},
	{"Cluster", "SECKILL_TEST_REDIS_CLUSTER", "autopipeline=false"},
	{"SingleAutoPipeline", "SECKILL_TEST_REDIS", ""}, // the default
	{"ClusterAutoPipeline", "SECKILL_TEST_REDIS_CLUSTER", ""},
}

var (
	clientsMu sync.Mutex
	clients   = map[string]*Client{}
)

// testClient returns the shared client of the Redis named by env, skipping
// the test with a message when the variable is unset (failing it under
// CI=true).
func testClient(t testing.TB, env, query string) *Client {
	t.Helper()
	url := testenv.URL(t, env)
	if query != "" {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + query
	}
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if c := clients[url]; c != nil {
		return c
	}
	c, err := Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open(%s): %v", env, err)
	}
	clients[url] = c
	return c
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, c := range clients {
		c.Close()
	}
	os.Exit(code)
}

var prefixSeq atomic.Int64

// testPrefix returns a key prefix no other test (nor another run) uses and
// deletes its keys when the test ends.
func testPrefix(t testing.TB, c *Client) string {
	t.Helper()
	p := fmt.Sprintf("seckilltest:%d:%d:", time.Now().UnixNano(), prefixSeq.Add(1))
	t.Cleanup(func() {
		if err := c.deleteMatching(context.Background(), p); err != nil {
			t.Errorf("deleting test keys %s*: %v", p, err)
		}
	})
	return p
}

// forEachTarget runs fn as a subtest per Redis deployment.
func forEachTarget(t *testing.T, fn func(t *testing.T, c *Client)) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) { fn(t, testClient(t, tg.env, tg.query)) })
	}
}

func TestStockGate(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		contract.TestStockGate(t, func(t *testing.T) seckill.StockGate {
			return NewGate(c, testPrefix(t, c))
		})
	})
}

func TestLimiter(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		contract.TestLimiter(t, func(t *testing.T, perSecond float64, burst int) seckill.Limiter {
			return NewLimiter(c, testPrefix(t, c), perSecond, burst)
		})
	})
}

func TestCaptchaStore(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		contract.TestCaptchaStore(t, func(t *testing.T) seckill.CaptchaStore {
			return NewCaptchaStore(c, testPrefix(t, c))
		})
	})
}

func TestLocker(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		contract.TestLocker(t, func(t *testing.T) seckill.Locker {
			return NewLocker(c, testPrefix(t, c))
		})
	})
}

func TestLoginGuard(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		contract.TestLoginGuard(t, func(t *testing.T, p seckill.Backoff) seckill.LoginGuard {
			return NewLoginGuard(c, testPrefix(t, c), p)
		})
	})
}

func TestSessionStore(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		contract.TestSessionStore(t, func(t *testing.T) seckill.SessionStore {
			return NewSessions(c, testPrefix(t, c))
		})
	})
}

// TestLimiterDisabled needs no server: a non-positive rate never asks Redis.
func TestLimiterDisabled(t *testing.T) {
	c, err := newClient("redis://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := NewLimiter(c, "x:", 0, 1)
	for range 3 {
		if ok, err := l.Allow(context.Background(), "k"); !ok || err != nil {
			t.Fatalf("disabled limiter: %v, %v", ok, err)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		url      string
		addrs    []string // cluster seeds; nil for one node
		addr     string   // the one node
		db       int
		user     string
		password string
		tls      bool
	}{
		{url: "redis://127.0.0.1:6379", addr: "127.0.0.1:6379"},
		{url: "redis://localhost:6380/3", addr: "localhost:6380", db: 3},
		{url: "rediss://:s3cret@redis.example:6380/1", addr: "redis.example:6380", db: 1, password: "s3cret", tls: true},
		{url: "redis://app:pw@h1:7001,h2:7002,h3:7003", addrs: []string{"h1:7001", "h2:7002", "h3:7003"}, user: "app", password: "pw"},
		{url: "redis://h1:7001,h2:7002/0?dial_timeout=2s", addrs: []string{"h1:7001", "h2:7002"}},
		{url: "redis-cluster://h1:7001", addrs: []string{"h1:7001"}},
		{url: "rediss-cluster://:pw@h1:7001,h2:7002", addrs: []string{"h1:7001", "h2:7002"}, password: "pw", tls: true},
	} {
		single, cluster, err := parseURL(c.url)
		if err != nil {
			t.Errorf("parseURL(%q): %v", c.url, err)
			continue
		}
		if c.addrs != nil {
			if cluster == nil {
				t.Errorf("parseURL(%q) gave a single-node client, want a cluster", c.url)
				continue
			}
			if fmt.Sprint(cluster.Addrs) != fmt.Sprint(c.addrs) || cluster.Username != c.user || cluster.Password != c.password || (cluster.TLSConfig != nil) != c.tls {
				t.Errorf("parseURL(%q) = addrs %v user %q password %q tls %v", c.url, cluster.Addrs, cluster.Username, cluster.Password, cluster.TLSConfig != nil)
			}
			continue
		}
		if single == nil {
			t.Errorf("parseURL(%q) gave a cluster, want one node", c.url)
			continue
		}
		if single.Addr != c.addr || single.DB != c.db || single.Username != c.user || single.Password != c.password || (single.TLSConfig != nil) != c.tls {
			t.Errorf("parseURL(%q) = addr %q db %d user %q password %q tls %v", c.url, single.Addr, single.DB, single.Username, single.Password, single.TLSConfig != nil)
		}
	}
	for _, bad := range []string{
		"", "localhost:6379", "http://localhost", "redis://h1:1,,h2:2",
		"redis://h1:1,h2:2/3", "redis://:pw@h:1/notadb",
	} {
		if _, _, err := parseURL(bad); err == nil {
			t.Errorf("parseURL(%q) accepted", bad)
		}
	}
	for _, c := range []struct {
		in, out string
		on      bool
	}{
		{"redis://h:1", "redis://h:1", true}, // on by default
		{"redis://h:1?pool_size=9", "redis://h:1?pool_size=9", true},
		{"redis://h:1?autopipeline=true", "redis://h:1", true},
		{"redis://h:1,h:2?pool_size=9&autopipeline=1", "redis://h:1,h:2?pool_size=9", true},
		{"redis://h:1?autopipeline=false&pool_size=9", "redis://h:1?pool_size=9", false},
	} {
		out, on, err := cutAutoPipeline(c.in)
		if err != nil || out != c.out || on != c.on {
			t.Errorf("cutAutoPipeline(%q) = %q, %v, %v; want %q, %v", c.in, out, on, err, c.out, c.on)
		}
	}
	if _, _, err := cutAutoPipeline("redis://h:1?autopipeline=maybe"); err == nil {
		t.Error("autopipeline=maybe accepted")
	}
}

// TestUnreachableIsBusy: a Redis that cannot be reached answers EBusy, the
// code the HTTP layer turns into 503.
func TestUnreachableIsBusy(t *testing.T) {
	for _, ap := range []bool{false, true} {
		c, err := newClient("redis://127.0.0.1:1?dial_timeout=200ms&max_retries=-1&autopipeline=" + strconv.FormatBool(ap))
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewGate(c, "x:").Reserve(context.Background(), seckill.Reservation{SaleID: 1, UserID: 1})
		if code := seckill.ErrorCode(err); code != seckill.EBusy {
			t.Errorf("Reserve against no Redis (autopipeline %v): %v (code %q), want EBusy", ap, err, code)
		}
		c.Close()
	}
	if _, err := Open(context.Background(), "redis://127.0.0.1:1?dial_timeout=200ms&max_retries=-1"); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("Open against no Redis: %v, want EBusy", err)
	}
}

// TestManySales spreads sales over every slot range (on a cluster, every
// master), reserves in all of them, and checks that Unload finds them all.
func TestManySales(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		const sales = 300
		for id := int64(1); id <= sales; id++ {
			mustLoad(t, g, id, 2, []int64{id})
		}
		if cc, ok := c.base.(*redis.ClusterClient); ok {
			nodes := map[string]bool{}
			for id := int64(1); id <= sales; id++ {
				n, err := cc.MasterForKey(ctx, g.keys(id).stock)
				if err != nil {
					t.Fatal(err)
				}
				nodes[n.Options().Addr] = true
			}
			if len(nodes) < 3 {
				t.Fatalf("%d sales landed on %d masters, want all 3", sales, len(nodes))
			}
		}
		var wg sync.WaitGroup
		for w := int64(0); w < 8; w++ {
			wg.Go(func() {
				for id := 1 + w; id <= sales; id += 8 {
					// In order: the loaded buyer, two new ones, one too many.
					for _, step := range []struct {
						user int64
						want seckill.GateResult
					}{{id, seckill.Duplicate}, {1000 + id, seckill.Reserved}, {2000 + id, seckill.Reserved}, {3000 + id, seckill.SoldOut}} {
						got, err := g.Reserve(ctx, seckill.Reservation{SaleID: id, UserID: step.user, Ticket: "t", At: time.Now()})
						if err != nil || got != step.want {
							t.Errorf("sale %d user %d: %v, %v; want %v", id, step.user, got, err, step.want)
						}
					}
				}
			})
		}
		wg.Wait()
		for id := int64(1); id <= sales; id++ {
			if n, loaded, err := g.Left(ctx, id); err != nil || !loaded || n != 0 {
				t.Fatalf("Left(%d) = %d, %v, %v; want 0, loaded", id, n, loaded, err)
			}
		}
		if err := g.Unload(ctx); err != nil {
			t.Fatal(err)
		}
		for id := int64(1); id <= sales; id++ {
			if _, loaded, err := g.Left(ctx, id); err != nil || loaded {
				t.Fatalf("sale %d still loaded after Unload (%v)", id, err)
			}
			if n := c.rdb.Exists(ctx, g.keys(id).withEpoch()...).Val(); n != 0 {
				t.Fatalf("sale %d: %d keys left after Unload", id, n)
			}
		}
	})
}

// openClient opens a client of url, closed when the test ends.
func openClient(t testing.TB, url string) *Client {
	t.Helper()
	c, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mustLoad loads a sale the gate does not hold, failing unless it loads.
func mustLoad(t testing.TB, g *Gate, saleID, left int64, buyers []int64) {
	t.Helper()
	if ok, err := g.Load(context.Background(), saleID, seckill.GateState(left, buyers)); err != nil || !ok {
		t.Fatalf("Load(%d) = %v, %v; want true, nil", saleID, ok, err)
	}
}

// TestLoadManyBuyers loads more buyers than one SADD chunk carries and
// checks the swap: every buyer is there, no temporary key is left, and the
// buyers set does not inherit the temporary set's expiry.
func TestLoadManyBuyers(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		prefix := testPrefix(t, c)
		g := NewGate(c, prefix)
		const n = 3*loadChunk + 17
		buyers := make([]int64, n)
		for i := range buyers {
			buyers[i] = int64(i + 1)
		}
		k := g.keys(9)
		mustLoad(t, g, 9, 10, []int64{5})
		if _, err := g.Reserve(ctx, seckill.Reservation{SaleID: 9, UserID: n + 5, Ticket: "old", At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		// The stock key alone is lost (evicted): the sale is not loaded,
		// and a load replaces the buyers and reservations left behind.
		if err := c.rdb.Del(ctx, k.stock).Err(); err != nil {
			t.Fatal(err)
		}
		mustLoad(t, g, 9, 1, buyers)
		if got := c.rdb.SCard(ctx, k.buyers).Val(); got != n {
			t.Fatalf("%d buyers stored, want %d", got, n)
		}
		if ttl := c.rdb.PTTL(ctx, k.buyers).Val(); ttl != -1 {
			t.Fatalf("buyers set has a TTL of %v, want none", ttl)
		}
		if got := c.rdb.Exists(ctx, k.resv).Val(); got != 0 {
			t.Fatal("reservations survived Load")
		}
		for _, step := range []struct {
			user int64
			want seckill.GateResult
		}{{1, seckill.Duplicate}, {n, seckill.Duplicate}, {n + 5, seckill.Reserved}, {n + 6, seckill.SoldOut}} {
			got, err := g.Reserve(ctx, seckill.Reservation{SaleID: 9, UserID: step.user, Ticket: "t", At: time.Now()})
			if err != nil || got != step.want {
				t.Fatalf("user %d: %v, %v; want %v", step.user, got, err, step.want)
			}
		}
		// Only the four keys of the sale remain.
		var (
			mu   sync.Mutex // the masters answer concurrently
			keys []string
		)
		err := c.forEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			ks, err := node.Keys(ctx, globEscape(prefix)+"*").Result()
			mu.Lock()
			keys = append(keys, ks...)
			mu.Unlock()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 4 {
			t.Fatalf("keys after Load: %v, want stock, buyers, resv and epoch only (no claim, no temporary set)", keys)
		}
		// Load with no buyers empties the set.
		if err := c.rdb.Del(ctx, k.stock).Err(); err != nil {
			t.Fatal(err)
		}
		mustLoad(t, g, 9, 1, nil)
		if got, _ := g.Reserve(ctx, seckill.Reservation{SaleID: 9, UserID: 1, Ticket: "t", At: time.Now()}); got != seckill.Reserved {
			t.Fatalf("after reloading without buyers, a former buyer got %v", got)
		}
	})
}

// TestReservationValues: tickets with spaces come back unchanged from
// Stale, stamped with the server's TIME (not the caller's At) to the
// microsecond.
func TestReservationValues(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		mustLoad(t, g, 1, 5, nil)
		k := g.keys(1).resv
		before, err := g.serverTime(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		r := seckill.Reservation{SaleID: 1, UserID: 77, Ticket: "a ticket with spaces", At: time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)}
		if _, err := g.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		after, err := g.serverTime(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := g.Stale(ctx, 1, 0)
		if err != nil || len(rs) != 1 || rs[0].Ticket != r.Ticket || rs[0].UserID != 77 || rs[0].SaleID != 1 {
			t.Fatalf("Stale = %+v, %v; want %+v", rs, err, r)
		}
		if at := rs[0].At; at.Before(before) || at.After(after) || at.Nanosecond()%1000 != 0 {
			t.Fatalf("stamped %v, want the server's TIME between %v and %v", at, before, after)
		}
	})
}

// BenchmarkReserve measures Reserve calls per second from 64 goroutines
// against one hot sale with enough stock that every call reserves, and on
// a single Redis the server's CPU time per call (redis-µs/call: a hot
// sale lives on one master, whose one core bounds how fast it sells).
//
//	SECKILL_TEST_REDIS=… SECKILL_TEST_REDIS_CLUSTER=… go test -run '^$' -bench Reserve ./rdb/
func BenchmarkReserve(b *testing.B) {
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			c := testClient(b, tg.env, tg.query)
			ctx := context.Background()
			g := NewGate(c, testPrefix(b, c))
			mustLoad(b, g, 1, 1<<40, nil)
			var user atomic.Int64
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			cpu0, cpuOK := serverCPU(ctx, c)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					u := user.Add(1)
					r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: u, Ticket: strconv.FormatInt(u, 10), At: time.Now(), Limit: seckill.Bucket{PerSecond: 5, Burst: 10}})
					if err != nil || r != seckill.Reserved {
						b.Errorf("Reserve: %v, %v", r, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			if cpu1, ok := serverCPU(ctx, c); ok && cpuOK {
				b.ReportMetric((cpu1-cpu0)*1e6/float64(b.N), "redis-µs/call")
			}
		})
	}
}

// serverCPU is the CPU time a single Redis has used, in seconds (INFO cpu);
// false on a Cluster, whose nodes each have their own.
func serverCPU(ctx context.Context, c *Client) (float64, bool) {
	if c.cluster {
		return 0, false
	}
	info, err := c.base.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, false
			}
			sum += f
		}
	}
	return sum, true
}

// replyErr is an error reply of the server, as go-redis hands it over.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// TestErrorCodes: a non-network error reply stays internal; a Cluster's
// redirection that outlasted the client's redirects (a slot failing over or
// migrating) is busy.
func TestErrorCodes(t *testing.T) {
	if code := seckill.ErrorCode(redisErr("x", redis.ErrClosed)); code != seckill.EBusy {
		t.Errorf("closed client: %q, want busy", code)
	}
	for reply, want := range map[string]string{
		"MOVED 4774 127.0.0.1:7205":        seckill.EBusy,
		"ASK 4774 127.0.0.1:7202":          seckill.EBusy,
		"TRYAGAIN Multiple keys request":   seckill.EBusy,
		"READONLY You can't write against": seckill.EBusy,
		"ERR unknown command 'FOO'":        seckill.EInternal,
		"WRONGTYPE Operation against a k":  seckill.EInternal,
	} {
		if code := seckill.ErrorCode(redisErr("x", replyErr(reply))); code != want {
			t.Errorf("%q: %q, want %q", reply, code, want)
		}
	}
	if err := redisErr("x", context.Canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel lost: %v", err)
	}
}

// TestScriptCacheFlushed: a Redis that lost its script cache (restarted,
// failed over) still runs the gate: EVALSHA's NOSCRIPT falls back to EVAL.
func TestScriptCacheFlushed(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		g := NewGate(c, testPrefix(t, c))
		mustLoad(t, g, 1, 2, nil)
		if got, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 1, At: time.Now()}); err != nil || got != seckill.Reserved {
			t.Fatalf("Reserve: %v, %v", got, err)
		}
		err := c.forEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return n.ScriptFlush(ctx).Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 2, Ticket: "T2", At: time.Now()}); err != nil || got != seckill.Reserved {
			t.Fatalf("Reserve after SCRIPT FLUSH: %v, %v", got, err)
		}
		if _, err := g.Release(ctx, 1, 2, "T2"); err != nil {
			t.Fatal(err)
		}
		// Claim and Settle send EVALSHA in a pipeline: NOSCRIPT loads the
		// script and sends it again.
		if err := c.forEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return n.ScriptFlush(ctx).Err()
		}); err != nil {
			t.Fatal(err)
		}
		if got, err := g.Claim(ctx, 1, []seckill.Settled{{UserID: 1}, {UserID: 2, Ticket: "T2"}}); err != nil || len(got) != 2 || !got[0] || got[1] {
			t.Fatalf("Claim after SCRIPT FLUSH = %v, %v; want [true false]", got, err)
		}
	})
}

// BenchmarkStale measures one reconciler look at a sale whose 100,000
// reservations are all still pending (a writer far behind): Stale scans
// them all whatever the age, so this is what each --reconcile-every round
// costs such a sale, in the client (ns/op) and on a single Redis
// (redis-µs/call).
//
//	SECKILL_TEST_REDIS=… go test -run '^$' -bench Stale -benchtime 10x ./rdb/
func BenchmarkStale(b *testing.B) {
	const pending = 100_000
	c := testClient(b, "SECKILL_TEST_REDIS", "")
	ctx := context.Background()
	g := NewGate(c, testPrefix(b, c))
	mustLoad(b, g, 1, pending, nil)
	var user atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := user.Add(1); u <= pending; u = user.Add(1) {
				if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: u, Ticket: strconv.FormatInt(u, 10), At: time.Now()}); err != nil || r != seckill.Reserved {
					b.Errorf("Reserve: %v, %v", r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu0, cpuOK := serverCPU(ctx, c)
	b.ResetTimer()
	for range b.N {
		rs, err := g.Stale(ctx, 1, time.Hour)
		if err != nil || len(rs) != 0 {
			b.Fatalf("Stale: %d reservations, %v; want none older than an hour", len(rs), err)
		}
	}
	if cpu1, ok := serverCPU(ctx, c); ok && cpuOK {
		b.ReportMetric((cpu1-cpu0)*1e6/float64(b.N), "redis-µs/call")
	}
}
