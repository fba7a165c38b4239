package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisClusterFaults is a randomized drill of Redis Cluster faults:
// three instances on PostgreSQL and NATS share a Redis Cluster of three
// masters with a replica each (cluster-node-timeout 1 s) that the drill
// starts itself on loopback ports from 7201 (scripts/redis-cluster.sh
// start DIR PORT 1), and at a random moment of the crowd one fault strikes
// the master holding the sale's slot:
//
//	kill            kill -9; its replica takes over; the dead one restarts
//	                empty and rejoins as a replica
//	kill-lagging    the same while the replica is stopped (SIGSTOP) for a
//	                moment first: it is promoted without the last writes
//	failover        CLUSTER FAILOVER on the replica (graceful, no loss)
//	failover-force  CLUSTER FAILOVER FORCE on the replica
//	takeover        CLUSTER FAILOVER TAKEOVER on the replica: the old
//	                master takes writes until it hears of it
//	kill-failback   kill, restart, then a graceful failover back to it
//	migrate         the sale's slot moves to another master, key by key
//	                (MIGRATING/IMPORTING, MIGRATE: ASK and TRYAGAIN)
//
// Purchases must answer again (202, 409 or 410, not 503) within 30 s of
// the fault; every buyer then tries once more; at rest I1–I4 hold and every
// 202 is an order with its ticket and a success result.
//
// SECKILL_CF_RUNS repeats it (default 1), SECKILL_CF_SEED fixes the seed,
// SECKILL_CF_FAULT picks one fault by name, SECKILL_CF_USERS sets the
// crowd (default 1,500, at most 3,000).
func TestRedisClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault drills skipped in -short mode")
	}
	runs, seed := drillRuns("SECKILL_CF")
	pg := integration(t, "SECKILL_TEST_POSTGRES")
	nats := integration(t, "SECKILL_TEST_NATS")
	for run := 1; run <= runs; run++ {
		s := seed + uint64(run)
		t.Run(fmt.Sprintf("run-%d-seed-%d", run, s), func(t *testing.T) {
			clusterFaultDrill(t, pg, nats, mrand.New(mrand.NewPCG(s, s^0x9e3779b97f4a7c15)))
		})
	}
}

var clusterFaults = []string{"kill", "kill-lagging", "failover", "failover-force", "takeover", "kill-failback", "migrate"}

func clusterFaultDrill(t *testing.T, pgURL, natsURL string, rng *mrand.Rand) {
	fault := clusterFaults[rng.IntN(len(clusterFaults))]
	if f := os.Getenv("SECKILL_CF_FAULT"); f != "" {
		fault = f
	}
	users := 1500
	if n, err := strconv.Atoi(os.Getenv("SECKILL_CF_USERS")); err == nil && n > 0 {
		users = min(n, 3000)
	}
	stock := int64(users * 2 / 3)
	// The fault strikes once this many were accepted, this much later.
	at := int(stock/20) + rng.IntN(int(stock*6/10))
	delay := time.Duration(rng.IntN(300)) * time.Millisecond
	lag := time.Duration(100+rng.IntN(400)) * time.Millisecond
	rejoin := time.Duration(rng.IntN(1500)) * time.Millisecond
	pace := time.Duration(60+rng.IntN(60)) * time.Millisecond
	t.Logf("fault %s after %d accepted + %v (lag %v, rejoin after %v), %d buyers for %d units, pace %v",
		fault, at, delay, lag, rejoin, users, stock, pace)

	rc := ownRedisCluster(t)
	d := newDeployment(t, 3, freshDatabase(t, pgURL), rc.url, natsURL)
	d.pace = pace
	// Three more buyers, one per instance, who stay out of the crowd and
	// ask whether purchases are answered again after the fault.
	sale, all := d.provision(users+3, stock)
	buyers, probes := all[:users], all[users:]
	slot := rc.keySlot(fmt.Sprintf("{sale:%d}", sale))

	accepted := map[int64]string{}
	var mu sync.Mutex
	var once sync.Once
	done := make(chan struct{})
	var faultAt time.Time
	atFault := 0
	first := d.crowd(sale, buyers, 3, accepted, &mu, func(n int) {
		if n < at {
			return
		}
		once.Do(func() {
			go func() {
				defer close(done)
				time.Sleep(delay)
				mu.Lock()
				atFault = len(accepted)
				mu.Unlock()
				faultAt = time.Now()
				rc.inject(fault, slot, lag, rejoin)
				t.Logf("fault %s done in %v", fault, time.Since(faultAt).Round(time.Millisecond))
			}()
		})
	})
	once.Do(func() { close(done) }) // the crowd never reached `at`
	<-done
	t.Logf("through the fault: %v, %d accepted (%d when it struck)", first, len(accepted), atFault)
	for code, n := range first {
		// A slot on its way to another node is "busy, retry" (503), not
		// an internal error.
		if code != 202 && code != 409 && code != 410 && code != 503 {
			t.Errorf("through the fault: %d answers with status %d", n, code)
		}
	}
	if faultAt.IsZero() {
		t.Errorf("the fault never struck (%d accepted, wanted %d)", len(accepted), at)
		faultAt = time.Now()
	}

	// Purchases answer again within 30 s of the fault, on every instance.
	for i, p := range probes {
		code, ticket, took := d.probe(sale, i, p, faultAt.Add(30*time.Second))
		t.Logf("instance %d answers purchases again (%d) %v after the fault", i, code, took.Round(time.Millisecond))
		if code != 202 && code != 409 && code != 410 {
			t.Errorf("instance %d still answers %d 30 s after the fault", i, code)
		}
		if code == 202 {
			mu.Lock()
			accepted[p.ID] = ticket
			mu.Unlock()
		}
	}

	if st, ok := d.rest(sale, 60*time.Second); !ok {
		t.Errorf("not at rest 60 s after the fault: %+v; cluster: %s", st, rc.describe(slot))
	}
	second := d.crowd(sale, buyers, 1, accepted, &mu, nil)
	t.Logf("after it: %v, %d accepted in all", second, len(accepted))
	for code, n := range second {
		if code != 202 && code != 409 && code != 410 {
			t.Errorf("after recovery: %d answers with status %d", n, code)
		}
	}
	st, ok := d.rest(sale, 60*time.Second)
	if !ok {
		t.Errorf("not at rest 60 s after the last crowd: %+v; cluster: %s", st, rc.describe(slot))
	}
	d.checkInvariants(sale, st, accepted, true)
	d.checkAcceptedResults(sale, all, accepted, 30*time.Second)
}

// probe has user u press buy on instance i until the answer is 202, 409 or
// 410, or until the deadline; it returns the last answer (with the ticket
// of a 202) and how long after the start it came.
func (d *deployment) probe(sale int64, i int, u benchUser, deadline time.Time) (int, string, time.Duration) {
	d.t.Helper()
	start := time.Now()
	var p struct{ Path string }
	var r struct{ Ticket string }
	var code int
	for {
		c := d.node(i)
		var err error
		if p.Path == "" {
			code, err = c.call("POST", fmt.Sprintf("/api/sales/%d/path", sale), u.Token, "", &p)
			if err != nil || code != 200 {
				p.Path = ""
			}
		}
		if p.Path != "" {
			code, err = c.call("POST", fmt.Sprintf("/api/sales/%d/purchase/%s", sale, p.Path), u.Token, "", &r)
			if err == nil && (code == 202 || code == 409 || code == 410) {
				return code, r.Ticket, time.Since(start)
			}
		}
		if time.Now().After(deadline) {
			return code, "", time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drillRuns reads PREFIX_RUNS (default 1) and PREFIX_SEED (default: the
// clock) for a random drill.
func drillRuns(prefix string) (runs int, seed uint64) {
	runs = 1
	if n, err := strconv.Atoi(os.Getenv(prefix + "_RUNS")); err == nil && n > 0 {
		runs = n
	}
	seed = uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv(prefix+"_SEED"), 10, 64); err == nil {
		seed = s
	}
	return runs, seed
}

// redisCluster is a Redis Cluster of three masters with a replica each,
// run by scripts/redis-cluster.sh for one test, with the faults a drill
// injects into it.
type redisCluster struct {
	t      *testing.T
	dir    string
	script string
	ports  []string
	url    string
}

// ownRedisCluster starts the cluster on the first six free loopback ports
// from 7201 on (in steps of 10; their bus ports, +10000, free too) and
// stops it when the test ends, failed or not.
func ownRedisCluster(t *testing.T) *redisCluster {
	t.Helper()
	need(t, "redis-server")
	need(t, "redis-cli")
	script, err := filepath.Abs("../../scripts/redis-cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	rc := &redisCluster{t: t, dir: t.TempDir(), script: script}
	base := 0
	for b := 7201; b < 7300 && base == 0; b += 10 {
		free := true
		for i := 0; i < 6 && free; i++ {
			free = portFree(b+i) && portFree(b+i+10000)
		}
		if free {
			base = b
		}
	}
	if base == 0 {
		t.Fatal("no six free ports (and bus ports) in 7201–7299")
	}
	for i := 0; i < 6; i++ {
		rc.ports = append(rc.ports, strconv.Itoa(base+i))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", script, "stop", rc.dir).CombinedOutput(); err != nil {
			t.Errorf("stop the cluster: %v\n%s", err, out)
		}
	})
	cmd := exec.Command("bash", script, "start", rc.dir, strconv.Itoa(base), "1")
	cmd.Env = append(os.Environ(), "REDIS_CLUSTER_NODE_TIMEOUT=1000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start the cluster: %v\n%s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	rc.url = lines[len(lines)-1]
	return rc
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// do runs one command on the node of port and returns its answer.
func (rc *redisCluster) do(port string, args ...any) (any, error) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second})
	defer c.Close()
	return c.Do(context.Background(), args...).Result()
}

func (rc *redisCluster) keySlot(key string) int {
	rc.t.Helper()
	for _, p := range rc.ports {
		if v, err := rc.do(p, "CLUSTER", "KEYSLOT", key); err == nil {
			return int(v.(int64))
		}
	}
	rc.t.Fatal("no node answers CLUSTER KEYSLOT")
	return 0
}

// clusterNode is a line of CLUSTER NODES.
type clusterNode struct {
	id, port, master string
	flags            string
	slots            []string
}

func (n clusterNode) is(flag string) bool {
	for _, f := range strings.Split(n.flags, ",") {
		if f == flag {
			return true
		}
	}
	return false
}

func (n clusterNode) owns(slot int) bool {
	for _, r := range n.slots {
		if strings.HasPrefix(r, "[") {
			continue
		}
		lo, hi, _ := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if hi != "" {
			b, _ = strconv.Atoi(hi)
		}
		if a <= slot && slot <= b {
			return true
		}
	}
	return false
}

// nodes returns the cluster as the node of port sees it.
func (rc *redisCluster) nodes(port string) ([]clusterNode, error) {
	v, err := rc.do(port, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	var out []clusterNode
	sc := bufio.NewScanner(strings.NewReader(v.(string)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		_, port, _ := net.SplitHostPort(addr)
		out = append(out, clusterNode{id: f[0], port: port, flags: f[2], master: f[3], slots: f[8:]})
	}
	return out, nil
}

// owner returns the master holding slot and one live replica of it, as
// the first node that answers sees them.
func (rc *redisCluster) owner(slot int) (master, replica clusterNode, err error) {
	for _, p := range rc.ports {
		ns, err := rc.nodes(p)
		if err != nil {
			continue
		}
		for _, n := range ns {
			if n.is("master") && !n.is("fail") && n.owns(slot) {
				master = n
			}
		}
		for _, n := range ns {
			if n.is("slave") && !n.is("fail") && n.master == master.id {
				replica = n
			}
		}
		if master.id != "" {
			return master, replica, nil
		}
	}
	return master, replica, fmt.Errorf("no node knows the master of slot %d", slot)
}

// describe is the cluster as one line per node, for a failure message.
func (rc *redisCluster) describe(slot int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "slot %d;", slot)
	for _, p := range rc.ports {
		ns, err := rc.nodes(p)
		if err != nil {
			fmt.Fprintf(&b, " %s: %v;", p, err)
			continue
		}
		for _, n := range ns {
			if n.is("myself") {
				fmt.Fprintf(&b, " %s %s %v;", p, n.flags, n.slots)
			}
		}
	}
	return b.String()
}

func (rc *redisCluster) pid(port string) int {
	b, err := os.ReadFile(filepath.Join(rc.dir, "redis-"+port+".pid"))
	if err != nil {
		rc.t.Errorf("pid of node %s: %v", port, err)
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (rc *redisCluster) signal(port string, sig syscall.Signal) {
	if pid := rc.pid(port); pid > 0 {
		if err := syscall.Kill(pid, sig); err != nil {
			rc.t.Errorf("signal %v to node %s: %v", sig, port, err)
		}
	}
}

// kill9 kills the node of port and waits until its port is closed.
func (rc *redisCluster) kill9(port string) {
	rc.signal(port, syscall.SIGKILL)
	p, _ := strconv.Atoi(port)
	for deadline := time.Now().Add(5 * time.Second); !portFree(p) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// restart starts the node of port again, empty, on its node file.
func (rc *redisCluster) restart(port string) {
	if out, err := exec.Command("bash", rc.script, "restart", rc.dir, port).CombinedOutput(); err != nil {
		rc.t.Errorf("restart node %s: %v\n%s", port, err, out)
	}
}

// waitOwner waits until the node of port holds slot as a master and every
// live node sees the cluster ok.
func (rc *redisCluster) waitOwner(port string, slot int, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		m, _, err := rc.owner(slot)
		if err == nil && m.port == port && rc.allOK() {
			return
		}
		if time.Now().After(deadline) {
			rc.t.Errorf("node %s does not hold slot %d after %v: %s", port, slot, within, rc.describe(slot))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (rc *redisCluster) allOK() bool {
	for _, p := range rc.ports {
		v, err := rc.do(p, "CLUSTER", "INFO")
		if err != nil {
			continue // a dead node
		}
		if !strings.Contains(v.(string), "cluster_state:ok") {
			return false
		}
	}
	return true
}

// waitSynced waits until the node of port is a replica in sync with its
// master.
func (rc *redisCluster) waitSynced(port string, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		v, err := rc.do(port, "INFO", "replication")
		if err == nil && strings.Contains(v.(string), "role:slave") && strings.Contains(v.(string), "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			rc.t.Errorf("node %s not a replica in sync after %v: %v %v", port, within, v, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inject strikes the master of slot with the fault named (see
// TestRedisClusterFaults) and returns once the cluster serves the slot
// again. Failures are reported with Errorf: it runs beside the crowd.
func (rc *redisCluster) inject(fault string, slot int, lag, rejoin time.Duration) {
	t := rc.t
	m, r, err := rc.owner(slot)
	if err != nil || r.id == "" {
		t.Errorf("fault %s: master %+v replica %+v: %v", fault, m, r, err)
		return
	}
	t.Logf("fault %s: slot %d on master %s, replica %s", fault, slot, m.port, r.port)
	const within = 20 * time.Second
	switch fault {
	case "kill", "kill-lagging", "kill-failback":
		if fault == "kill-lagging" {
			rc.signal(r.port, syscall.SIGSTOP)
			time.Sleep(lag)
		}
		rc.kill9(m.port)
		if fault == "kill-lagging" {
			rc.signal(r.port, syscall.SIGCONT)
		}
		rc.waitOwner(r.port, slot, within)
		t.Logf("fault %s: %s took over", fault, r.port)
		time.Sleep(rejoin)
		rc.restart(m.port)
		rc.waitSynced(m.port, within)
		t.Logf("fault %s: %s rejoined as a replica", fault, m.port)
		if fault == "kill-failback" {
			if _, err := rc.do(m.port, "CLUSTER", "FAILOVER"); err != nil {
				t.Errorf("failover back to %s: %v", m.port, err)
			}
			rc.waitOwner(m.port, slot, within)
			t.Logf("fault %s: %s took the slot back", fault, m.port)
		}
	case "failover", "failover-force", "takeover":
		args := []any{"CLUSTER", "FAILOVER"}
		switch fault {
		case "failover-force":
			args = append(args, "FORCE")
		case "takeover":
			args = append(args, "TAKEOVER")
		}
		if _, err := rc.do(r.port, args...); err != nil {
			t.Errorf("%v on %s: %v", args, r.port, err)
			return
		}
		rc.waitOwner(r.port, slot, within)
		rc.waitSynced(m.port, within)
	case "migrate":
		rc.migrate(slot, m, lag)
	default:
		t.Errorf("no fault %q (want one of %v)", fault, clusterFaults)
	}
}

// migrate moves slot from master m to another master, one key at a time
// with pause between keys (the key of each buyer's purchase bucket too), so that the crowd's scripts meet the slot half
// moved.
func (rc *redisCluster) migrate(slot int, m clusterNode, pause time.Duration) {
	t := rc.t
	ns, err := rc.nodes(m.port)
	if err != nil {
		t.Errorf("migrate: %v", err)
		return
	}
	var to clusterNode
	for _, n := range ns {
		if n.is("master") && !n.is("fail") && n.id != m.id {
			to = n
			break
		}
	}
	steps := [][]any{
		{to.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", m.id},
		{m.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.id},
	}
	for _, s := range steps {
		if _, err := rc.do(s[0].(string), s[1:]...); err != nil {
			t.Errorf("migrate %v: %v", s, err)
			return
		}
	}
	t.Logf("migrate: slot %d from %s to %s", slot, m.port, to.port)
	moved := 0
	for {
		v, err := rc.do(m.port, "CLUSTER", "GETKEYSINSLOT", slot, 1)
		if err != nil {
			t.Errorf("migrate: GETKEYSINSLOT: %v", err)
			return
		}
		keys := v.([]any)
		if len(keys) == 0 {
			break
		}
		if _, err := rc.do(m.port, "MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", keys[0]); err != nil {
			t.Errorf("migrate %v: %v", keys[0], err)
			return
		}
		moved++
		time.Sleep(pause)
	}
	// The new owner first, then the old, then the rest (as redis-cli does).
	order := []string{to.port, m.port}
	for _, n := range ns {
		if n.is("master") && !n.is("fail") && n.port != to.port && n.port != m.port {
			order = append(order, n.port)
		}
	}
	for _, p := range order {
		if _, err := rc.do(p, "CLUSTER", "SETSLOT", slot, "NODE", to.id); err != nil {
			t.Errorf("migrate: SETSLOT NODE on %s: %v", p, err)
		}
	}
	t.Logf("migrate: %d keys moved", moved)
	rc.waitOwner(to.port, slot, 20*time.Second)
}
