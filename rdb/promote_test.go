package rdb

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/internal/testenv"
)

// TestMasterDiesReplicaTakesOver: the master of a sale's slot dies while
// its replica lags (stopped a moment: buyer 2's reservation never reaches
// it), and the replica takes over. Within a few seconds of the promotion
// the gate must answer again, from the new master, and must not trust the
// replica's copy of the sale (buyer 2 would be admitted twice): the sale is
// dropped, to be rebuilt (busy, not loaded). Before the client reloaded its
// slot map every second it went on dialling the dead master (connection
// refused) for up to a minute, go-redis's periodic reload: a dead master
// answers no MOVED. The client also holds connections to the replica from
// before its promotion (go-redis asks random seeds, replicas included, for
// CLUSTER SLOTS and keeps the connection).
func TestMasterDiesReplicaTakesOver(t *testing.T) {
	cl, c := startReplicatedCluster(t)
	ctx := context.Background()
	g := NewGate(c, "t:")
	reserve := func(user int64) (seckill.GateResult, error) { return reserveThroughFailover(t, g, user) }

	mustLoad(t, g, 1, 10, nil)
	if r, err := reserve(1); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 1: %v %v", r, err)
	}
	// go-redis asks a random seed (replicas included) for CLUSTER SLOTS
	// at every reload, and keeps the connection: after 60 reloads it holds
	// one to every node but with odds of 1 in 250.
	cc := c.base.(*redis.ClusterClient)
	master, replica := cl.owner(t, cc, "t:{sale:1}:stock")
	// CLUSTER SLOTS names a replica once the cluster heard of its
	// replication offset.
	// go-redis reads CLUSTER SLOTS (not SHARDS): wait until it names the
	// replica there.
	_, rport, _ := net.SplitHostPort(replica)
	waitFor(t, "the replica in CLUSTER SLOTS", func() bool {
		slots, _ := cc.Do(ctx, "CLUSTER", "SLOTS").Slice()
		for _, s := range slots {
			r, _ := s.([]any)
			for _, n := range r[min(len(r), 3):] {
				if n, _ := n.([]any); len(n) > 1 && fmt.Sprint(n[1]) == rport {
					return true
				}
			}
		}
		return false
	})
	for i := 0; i < 60; i++ {
		cc.ReloadState(ctx)
	}
	if err := cl.client(master).Do(ctx, "WAIT", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}

	// The replica falls behind; buyer 2 reserves on the master alone, and
	// the master dies.
	cl.signal(t, replica, syscall.SIGSTOP)
	if r, err := reserve(2); err != nil || r != seckill.Reserved {
		cl.signal(t, replica, syscall.SIGCONT)
		t.Fatalf("reserve 2: %v %v", r, err)
	}
	cl.signal(t, master, syscall.SIGKILL)
	cl.signal(t, replica, syscall.SIGCONT)
	cl.waitMaster(t, replica)

	start := time.Now()
	r, err := reserve(2)
	took := time.Since(start)
	t.Logf("reserve 2 on the promoted replica: %v %v after %v", r, err, took)
	if took > 5*time.Second {
		t.Errorf("the gate answered %v after the promotion, want within 5 s", took.Round(time.Millisecond))
	}
	if err == nil && r == seckill.Reserved {
		t.Fatalf("buyer 2, who holds a unit on the dead master, reserved again on its promoted replica, which lacks it: the replica's copy was trusted")
	}
	if seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("reserve 2 on the promoted replica: %v %v, want busy (sale dropped, to be rebuilt)", r, err)
	}
}

// reserveThroughFailover reserves a unit of sale 1 for user, trying again
// for up to 15 s while the sale's slot changes hands (a dead master fails
// commands until the client learns the new map); busy because the sale is
// not loaded is an answer.
func reserveThroughFailover(t *testing.T, g *Gate, user int64) (seckill.GateResult, error) {
	t.Helper()
	var r seckill.GateResult
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r, err = g.Reserve(context.Background(), seckill.Reservation{SaleID: 1, UserID: user, Ticket: "T" + strconv.FormatInt(user, 10)}); err == nil || strings.Contains(err.Error(), "not loaded") {
			break
		}
	}
	return r, err
}

// replicatedCluster is a Redis Cluster of three masters with a replica each
// (scripts/redis-cluster.sh start DIR PORT 1), cluster-node-timeout 1 s.
type replicatedCluster struct {
	dir string
	url string
}

// startReplicatedCluster starts it on six free ports from 7251 on (in
// steps of 10, bus ports +10000 free too; cmd/seckill's drill takes 7201
// on), opens a client to it, and stops both when the test ends. It skips
// the test in -short mode.
func startReplicatedCluster(t *testing.T) (*replicatedCluster, *Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Redis Cluster of its own; skipped in -short mode")
	}
	for _, bin := range []string{"redis-server", "redis-cli", "bash"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Missing(t, bin+" is not installed, the test needs it")
		}
	}
	script, err := filepath.Abs("../scripts/redis-cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	free := func(p int) bool {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			l.Close()
		}
		return err == nil
	}
	base := 0
	for b := 7251; b < 7300 && base == 0; b += 10 {
		ok := true
		for i := 0; i < 6 && ok; i++ {
			ok = free(b+i) && free(b+i+10000)
		}
		if ok {
			base = b
		}
	}
	if base == 0 {
		t.Fatal("no six free ports in 7251–7299")
	}
	cl := &replicatedCluster{dir: t.TempDir()}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", script, "stop", cl.dir).CombinedOutput(); err != nil {
			t.Errorf("stop the cluster: %v\n%s", err, out)
		}
	})
	cmd := exec.Command("bash", script, "start", cl.dir, strconv.Itoa(base), "1")
	cmd.Env = append(os.Environ(), "REDIS_CLUSTER_NODE_TIMEOUT=1000")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start the cluster: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	cl.url = lines[len(lines)-1]
	return cl, openClient(t, cl.url)
}

func (cl *replicatedCluster) client(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
}

// owner returns the addresses of the master holding key's slot and of its
// replica.
func (cl *replicatedCluster) owner(t *testing.T, cc *redis.ClusterClient, key string) (master, replica string) {
	t.Helper()
	ctx := context.Background()
	slot, err := cc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start <= slot && slot <= r.End {
				for _, n := range sh.Nodes {
					addr := net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
					switch {
					case n.Role == "master":
						master = addr
					case n.Health != "failed":
						// "loading" too: a replica reads so while the
						// cluster has heard of no replication offset.
						replica = addr
					}
				}
			}
		}
	}
	if master == "" || replica == "" {
		t.Fatalf("slot %d: master %q, replica %q: %+v", slot, master, replica, shards)
	}
	return master, replica
}

// signal sends sig to the node of addr (its pid file is in the cluster's
// directory).
func (cl *replicatedCluster) signal(t *testing.T, addr string, sig syscall.Signal) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	b, err := os.ReadFile(filepath.Join(cl.dir, "redis-"+port+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, addr, err)
	}
}

// waitMaster waits until the node of addr is a master and sees the
// cluster ok.
func (cl *replicatedCluster) waitMaster(t *testing.T, addr string) {
	t.Helper()
	c := cl.client(addr)
	defer c.Close()
	ctx := context.Background()
	waitFor(t, addr+" promoted", func() bool {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:master") {
			return false
		}
		ci, err := c.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(ci, "cluster_state:ok")
	})
}
