package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestPurchaseOneRedisRoundTrip: with serve's default limits on (per user
// 5/s, per address 200/s), a purchase that reserves costs one Redis
// command, the gate's script: the per-user bucket is in that script and
// the per-address one in this process. Counted on a Redis of its own
// (MONITOR) around a crowd of purchases whose sessions and paths were
// fetched before; the order writer's few commands per batch and the
// background's (reconciler, revocations) count against the purchases.
// Commands, not round trips: with auto-pipelining several purchases'
// commands share one.
func TestPurchaseOneRedisRoundTrip(t *testing.T) {
	const buyers = 400
	n, counts := purchaseCommands(t, 1, buyers, 0)
	t.Logf("%d purchases that reserved: %d Redis commands (%.2f each) besides the writer's: %v", buyers, n, float64(n)/buyers, counts)
	// Two a purchase (a shared per-address bucket) would be 800; fewer
	// than one, purchases sharing the gate's scripts.
	if !reservedOnce(counts, buyers) || n > buyers*5/4 {
		t.Errorf("%d Redis commands for %d purchases, want at most about one each: %v", n, buyers, counts)
	}
}

// TestPurchaseRoundTripsColdSession: a purchase sent to an instance that
// has not read the buyer's session in the last sessionCacheTTL (behind a
// load balancer that spreads a buyer's requests over N instances, most
// purchases) costs the session lookup as well as the gate's script: two
// Redis round trips, not one. TestPurchaseOneRedisRoundTrip's one holds
// for a buyer whose session the instance holds (README says which).
func TestPurchaseRoundTripsColdSession(t *testing.T) {
	const buyers = 200
	n, counts := purchaseCommands(t, 2, buyers, 0)
	t.Logf("%d purchases on an instance without their sessions: %d Redis commands (%.2f each) besides the writer's: %v", buyers, n, float64(n)/buyers, counts)
	// The session's lookup and the gate's script: two round trips each
	// (the gate's scripts may carry several purchases). No lookup would
	// mean it is gone (and README's words can go too); more than two
	// commands each, something else joined the purchase.
	if !reservedOnce(counts, buyers) || counts["session"] < buyers*3/4 || n > buyers*5/2 {
		t.Errorf("%d Redis commands for %d purchases with cold sessions, want a session lookup and a share of a gate script each: %v", n, buyers, counts)
	}
}

// TestPurchaseSessionsNotRefreshedOnSingleRedis: on a single Redis a
// crowd's presses a few seconds after the buyers fetched their paths (6 s
// here, past the Cluster's refresh age of 5 s) cost no session lookup, in
// the background or otherwise: the delete and its announcement are one
// script on the one server, so serve refreshes a cached session only after
// 30 s (sessionCache). Before, each buyer's first press refreshed its
// session: a script per buyer on Redis, and a sixth of the server's CPU.
func TestPurchaseSessionsNotRefreshedOnSingleRedis(t *testing.T) {
	const buyers = 200
	idle := sessionRefreshAfter + time.Second
	n, counts := purchaseCommands(t, 1, buyers, idle)
	t.Logf("%d purchases %v after their paths: %d Redis commands (%.2f each) besides the writer's: %v", buyers, idle, n, float64(n)/buyers, counts)
	if !reservedOnce(counts, buyers) || counts["session"] > 0 {
		t.Errorf("%d purchases %v after their sessions were read cost %d session lookups, want none: %v", buyers, idle, counts["session"], counts)
	}
}

// reservedOnce: the gate's scripts carried each purchase once, give or
// take the first runs on a Redis that lacks the script (EVALSHA refused,
// then EVAL), one for each of the crowd's 8 workers at most.
func reservedOnce(counts map[string]int, buyers int) bool {
	n := counts[reservationsCarried]
	return counts["gate reserve"] <= n && n >= buyers && n <= buyers+8
}

// reservationsCarried counts, among monitorRedis's counts, the purchases
// the gate's reserve scripts carried (each names the buyer's bucket); it
// is no command.
const reservationsCarried = "reservations carried"

// purchaseCommands runs a deployment of nodes instances on a Redis of its
// own with serve's default limits, fetches the paths of buyers on node 0,
// waits idle, and has them purchase on the last node (every one reserves), and
// returns the commands Redis got from its clients meanwhile, by
// commandClass, and their number leaving out the order writer's. The
// writer's come per batch, two a batch, and a slow machine (-race) writes
// smaller batches: counted, they made the purchases' cost depend on the
// machine's speed.
func purchaseCommands(t *testing.T, nodes, buyers int, idle time.Duration) (int, map[string]int) {
	t.Helper()
	if testing.Short() {
		t.Skip("production deployment skipped in -short mode")
	}
	pg := freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES"))
	nats := integration(t, "SECKILL_TEST_NATS")
	r := ownRedis(t)
	d := newDeploymentEnv(t, nodes, pg, "redis://127.0.0.1:"+r.port, nats, func(int) []string {
		// The defaults of serve, but a burst no crowd from this one
		// address exhausts: the limit is asked, never refuses.
		return []string{"SECKILL_USER_RATE=5", "SECKILL_USER_BURST=10", "SECKILL_IP_RATE=200", "SECKILL_IP_BURST=1000000"}
	})
	sale, users := d.provision(buyers, int64(buyers))
	paths := make([]string, buyers)
	for i, u := range users {
		var p struct{ Path string }
		if code, err := d.nodes[0].call("POST", fmt.Sprintf("/api/sales/%d/path", sale), u.Token, "", &p); err != nil || code != 200 {
			t.Fatalf("path: %d %v", code, err)
		}
		paths[i] = p.Path
	}
	time.Sleep(idle)
	buy := d.nodes[nodes-1]
	if nodes > 1 {
		// Another node's first session lookup checks every session
		// group's epoch on its new server (256 scripts, once): done
		// before counting.
		if code, err := buy.call("GET", "/api/me", d.admin, "", nil); err != nil || code != 200 {
			t.Fatalf("me: %d %v", code, err)
		}
	}
	stop := monitorRedis(t, "127.0.0.1:"+r.port)
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[int]int{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < buyers; i += 8 {
				code, err := buy.call("POST", fmt.Sprintf("/api/sales/%d/purchase/%s", sale, paths[i]), users[i].Token, "", nil)
				if err != nil {
					code = -1
				}
				mu.Lock()
				answers[code]++
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	counts := stop()
	if answers[202] != buyers {
		t.Fatalf("answers %v, want %d 202s", answers, buyers)
	}
	d.settle(sale, time.Minute)
	n := 0
	for class, c := range counts {
		if class != "writer" && class != reservationsCarried {
			n += c
		}
	}
	return n, counts
}

// monitorArg is one quoted argument of a MONITOR line.
var monitorArg = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)

// commandClass names what a command (its name and arguments, as MONITOR
// shows them) is for, by the keys it names: "gate reserve" (the gate's
// purchase script, which names the buyers' buckets), "session" (a session
// store key), "writer" (the order writer's claim and settle scripts, which
// name the sale's reservations but no bucket); else the command's name.
// For a gate reserve script it also counts the buckets named: the
// purchases it carries.
func commandClass(args []string) (string, int) {
	name := strings.ToLower(args[0])
	var keys []string
	switch {
	case name == "evalsha" || name == "eval":
		if len(args) > 2 {
			if n, err := strconv.Atoi(args[2]); err == nil && 3+n <= len(args) {
				keys = args[3 : 3+n]
			}
		}
	case len(args) > 1:
		keys = args[1:2]
	}
	resv, buckets := false, 0
	for _, k := range keys {
		switch {
		case strings.Contains(k, "}:rl:"):
			buckets++
		case strings.Contains(k, "{session:"):
			return "session", 0
		case strings.HasSuffix(k, "}:resv"):
			resv = true
		}
	}
	switch {
	case buckets > 0:
		return "gate reserve", buckets
	case resv && name == "evalsha":
		return "writer", 0
	}
	return name, 0
}

// monitorRedis counts the commands clients send to the Redis at addr
// (MONITOR; the commands a script runs are left out), by commandClass, until
// stop: which sends a marker and returns the counts once MONITOR shows it.
func monitorRedis(t *testing.T, addr string) (stop func() map[string]int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, "MONITOR\r\n"); err != nil {
		t.Fatal(err)
	}
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
		t.Fatalf("MONITOR: %q %v", l, err)
	}
	const marker = "end-of-the-monitored-crowd"
	counts := map[string]int{}
	done := make(chan error, 1)
	go func() {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			// +1700000000.123456 [0 127.0.0.1:5000] "evalsha" "…" …
			_, rest, ok := strings.Cut(l, " [")
			who, rest, ok2 := strings.Cut(rest, "] ")
			if !ok || !ok2 {
				continue
			}
			if strings.Contains(rest, marker) {
				done <- nil
				return
			}
			if strings.HasSuffix(who, " lua") {
				continue
			}
			var args []string
			for _, m := range monitorArg.FindAllStringSubmatch(rest, -1) {
				args = append(args, m[1])
			}
			if len(args) > 0 {
				class, carried := commandClass(args)
				counts[class]++
				if carried > 0 {
					counts[reservationsCarried] += carried
				}
			}
		}
	}()
	return func() map[string]int {
		t.Helper()
		rc := redis.NewClient(&redis.Options{Addr: addr})
		defer rc.Close()
		if err := rc.Echo(context.Background(), marker).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("MONITOR: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("MONITOR never showed the marker")
		}
		delete(counts, "hello") // the marker's client saying hello
		delete(counts, "client")
		return counts
	}
}
