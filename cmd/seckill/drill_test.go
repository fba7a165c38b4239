package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"seckill/internal/testenv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fault drills of design.md: each runs a flash sale on three instances,
// injects one fault a third of the way in, lets the crowd go on through it,
// lets everyone try once more after it, and checks I1–I4 when the dust has
// settled. The faulty server is always one the drill started itself.

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// freePortIn returns a free loopback port between lo and hi: the
// machine's other users keep their throwaway databases out of that range.
func freePortIn(t *testing.T, lo, hi int) string {
	t.Helper()
	start := rand.IntN(hi - lo + 1)
	for i := range hi - lo + 1 {
		port := strconv.Itoa(lo + (start+i)%(hi-lo+1))
		if l, err := net.Listen("tcp", "127.0.0.1:"+port); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return ""
}

func waitPort(t *testing.T, port string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 30 s", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemon is a server process the drill owns.
type daemon struct {
	t    *testing.T
	port string
	args func() *exec.Cmd
	cmd  *exec.Cmd
}

func (d *daemon) start() {
	d.t.Helper()
	d.cmd = d.args()
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	waitPort(d.t, d.port)
}

// crash kills the server without warning.
func (d *daemon) crash() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	_ = d.cmd.Wait()
}

func need(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		testenv.Missing(t, bin+" is not installed, the drill needs it")
	}
	return p
}

func ownRedis(t *testing.T) *daemon {
	bin := need(t, "redis-server")
	d := &daemon{t: t, port: freePortIn(t, 27000, 27999)}
	d.args = func() *exec.Cmd {
		return exec.Command(bin, "--port", d.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	}
	d.start()
	t.Cleanup(d.crash)
	return d
}

// ownNATS starts a nats-server with JetStream on a spare port: the one on
// PATH, or the binary SECKILL_DRILL_NATS_SERVER names (to drill another
// server version).
func ownNATS(t *testing.T) *daemon {
	bin := os.Getenv("SECKILL_DRILL_NATS_SERVER")
	if bin == "" {
		bin = need(t, "nats-server")
	}
	d := &daemon{t: t, port: freePortIn(t, 27000, 27999)}
	dir := t.TempDir()
	d.args = func() *exec.Cmd {
		return exec.Command(bin, "-a", "127.0.0.1", "-p", d.port, "-js", "-sd", dir)
	}
	d.start()
	t.Cleanup(d.crash)
	return d
}

// pgServer is a throwaway PostgreSQL cluster run as the postgres user.
type pgServer struct {
	t         *testing.T
	port, dir string
	bin       string
}

func ownPostgres(t *testing.T) *pgServer {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Strings(matches)
	pgUser, err := user.Lookup("postgres")
	if len(matches) == 0 || err != nil || os.Geteuid() != 0 {
		testenv.Missing(t, "the drill needs PostgreSQL's binaries, the postgres user and root")
	}
	p := &pgServer{t: t, port: freePortIn(t, 27000, 27999), bin: filepath.Dir(matches[len(matches)-1])}
	// Not t.TempDir: the postgres user must be able to reach it.
	if p.dir, err = os.MkdirTemp("", "seckill-pg-"); err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	if err := os.Chown(p.dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	p.run("initdb", "-D", p.dir+"/data", "-A", "trust", "-U", "postgres", "--no-sync")
	p.start()
	t.Cleanup(func() {
		p.stop()
		os.RemoveAll(p.dir)
	})
	return p
}

func (p *pgServer) run(tool string, args ...string) {
	p.t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("%s: %v\n%s", tool, err, out)
	}
}

func (p *pgServer) start() {
	p.run("pg_ctl", "-D", p.dir+"/data", "-l", p.dir+"/log", "-w", "-o",
		fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.port, p.dir), "start")
}

func (p *pgServer) stop() {
	cmd := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(p.bin, "pg_ctl"), "-D", p.dir+"/data", "-m", "fast", "-w", "stop")
	_ = cmd.Run()
}

// signal sends sig to the server and its backends: SIGSTOP freezes it
// mid-statement, SIGCONT lets it go on.
func (p *pgServer) signal(sig syscall.Signal) {
	head, err := os.ReadFile(p.dir + "/data/postmaster.pid")
	if err != nil {
		p.t.Errorf("signal %v: %v", sig, err)
		return
	}
	line, _, _ := strings.Cut(string(head), "\n")
	pid, err := strconv.Atoi(line)
	if err != nil {
		p.t.Errorf("signal %v: postmaster.pid: %v", sig, err)
		return
	}
	// The postmaster first: stopped, it starts no more backends.
	_ = syscall.Kill(pid, sig)
	children, _ := exec.Command("pgrep", "-P", line).Output()
	for _, f := range strings.Fields(string(children)) {
		if child, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(child, sig)
		}
	}
}

func (p *pgServer) url() string {
	return "postgres://postgres@127.0.0.1:" + p.port + "/postgres?sslmode=disable"
}

// drill runs the sale with the fault injected once a third of the stock is
// accepted; recover runs after the first crowd and must return once the
// system can serve again.
func drill(t *testing.T, d *deployment, fault func(), recover func(sale int64)) {
	t.Helper()
	const users, stock = 3000, 1000
	sale, buyers := d.provision(users, stock)
	accepted := map[int64]string{}
	var mu sync.Mutex
	var once sync.Once
	first := d.crowd(sale, buyers, 2, accepted, &mu, func(n int) {
		if n >= stock/3 {
			once.Do(fault)
		}
	})
	t.Logf("through the fault: %v, %d accepted", first, len(accepted))
	recover(sale)
	// At rest before the last crowd, so that it can buy every unit left: a
	// killed instance strands the reservations it had not yet published
	// (they waited to go in its next message), and the reconciler returns
	// them after SECKILL_RECONCILE_AGE.
	d.settle(sale, time.Minute)
	second := d.crowd(sale, buyers, 1, accepted, &mu, nil)
	t.Logf("after it: %v, %d accepted in all", second, len(accepted))
	for code, n := range second {
		if code != 202 && code != 409 && code != 410 {
			t.Errorf("after recovery: %d answers with status %d", n, code)
		}
	}
	st := d.settle(sale, 2*time.Minute)
	d.checkInvariants(sale, st, accepted, true)
}

// waitGate waits until the shared gate holds the sale again (the admin
// stats show gate_left -1 while it does not).
func (d *deployment) waitGate(sale int64, within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var st adminStats
		code, err := d.node(0).call("GET", fmt.Sprintf("/api/admin/sales/%d/stats", sale), d.admin, "", &st)
		if err == nil && code == 200 && st.GateLeft >= 0 {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("gate not rebuilt after %v: %+v %d %v", within, st, code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady waits until every live node's operations listener answers
// /readyz with 200.
func (d *deployment) waitReady(within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for _, c := range d.nodes {
		if c.dead.Load() {
			continue
		}
		for {
			code, err := c.ready()
			if err == nil && code == 200 {
				break
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("node not ready after %v: %d %v", within, code, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func TestFaultDrills(t *testing.T) {
	if testing.Short() {
		t.Skip("fault drills skipped in -short mode")
	}
	pg := func(t *testing.T) string { return freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES")) }
	redis := func(t *testing.T) string { return integration(t, "SECKILL_TEST_REDIS") }
	nats := func(t *testing.T) string { return integration(t, "SECKILL_TEST_NATS") }

	t.Run("kill-one-instance", func(t *testing.T) {
		d := newDeployment(t, 3, pg(t), redis(t), nats(t))
		drill(t, d, func() { d.nodes[2].kill() }, func(int64) {
			// It comes back and joins without disturbing the others.
			d.restart(2)
			d.waitReady(time.Minute)
		})
	})

	t.Run("redis-restarts-empty", func(t *testing.T) {
		r := ownRedis(t)
		d := newDeployment(t, 3, pg(t), "redis://127.0.0.1:"+r.port, nats(t))
		drill(t, d, func() { r.crash(); r.start() }, func(sale int64) {
			d.waitReady(time.Minute)
			d.waitGate(sale, time.Minute)
		})
	})

	t.Run("nats-restarts", func(t *testing.T) {
		n := ownNATS(t)
		d := newDeployment(t, 3, pg(t), redis(t), "nats://127.0.0.1:"+n.port)
		drill(t, d, func() { n.crash(); n.start() }, func(int64) { d.waitReady(time.Minute) })
	})

	// A PostgreSQL frozen mid-statement (SIGSTOP of the server and its
	// backends; a partition that drops packets looks the same) held every
	// request that needed it, and the writers, until it answered again.
	// With --db-timeout a read answers 503 with Retry-After within the
	// bound, purchases go on into the queue, and once it answers again the
	// writers drain it: every 202 is an order (I3).
	t.Run("postgres-frozen-10s", func(t *testing.T) {
		p := ownPostgres(t)
		t.Cleanup(func() { p.signal(syscall.SIGCONT) }) // before it stops
		const bound = time.Second
		r, n := ownRedis(t), ownNATS(t)
		d := newDeploymentEnv(t, 3, p.url(), "redis://127.0.0.1:"+r.port, "nats://127.0.0.1:"+n.port, func(int) []string {
			return []string{"SECKILL_DB_TIMEOUT=" + bound.String()}
		})
		thawed := make(chan struct{})
		drill(t, d, func() {
			p.signal(syscall.SIGSTOP)
			go func() {
				defer close(thawed)
				frozen := time.Now()
				code, hdr, body, err := apiSend(client, "GET", d.node(0).url+"/api/orders", d.admin, "", nil)
				took := time.Since(frozen)
				t.Logf("/api/orders with the database frozen: %d (Retry-After %q) after %v", code, hdr.Get("Retry-After"), took.Round(time.Millisecond))
				if err != nil || code != 503 || hdr.Get("Retry-After") == "" || took > 3*bound {
					t.Errorf("/api/orders with the database frozen: %d %v after %v, want 503 with Retry-After within about %v: %s", code, err, took, bound, body)
				}
				time.Sleep(time.Until(frozen.Add(10 * time.Second)))
				p.signal(syscall.SIGCONT)
			}()
		}, func(int64) {
			<-thawed
			d.waitReady(time.Minute)
		})
	})

	t.Run("postgres-down-10s", func(t *testing.T) {
		p := ownPostgres(t)
		d := newDeployment(t, 3, p.url(), redis(t), nats(t))
		back := make(chan struct{})
		drill(t, d, func() {
			p.stop()
			go func() {
				time.Sleep(10 * time.Second)
				p.start()
				close(back)
			}()
		}, func(int64) {
			<-back
			d.waitReady(time.Minute)
		})
	})
}
