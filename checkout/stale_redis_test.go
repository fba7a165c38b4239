package checkout

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"seckill"
	"seckill/internal/testenv"
	"seckill/rdb"
)

// TestRedisBackWithOlderData: the shared gate's Redis restarts from a
// snapshot taken before the last purchases. The engine must not trust the
// gate it brings back (a buyer admitted after the snapshot would be
// admitted again, and a unit sold twice): purchases answer busy until the
// gate is rebuilt from SQL and the queue, then every buyer counts once.
func TestRedisBackWithOlderData(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server is not installed; the test restarts a Redis of its own")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	dir := t.TempDir()
	var srv *exec.Cmd
	start := func() {
		srv = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--dir", dir,
			"--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--logfile", dir+"/redis.log")
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
	}
	kill := func() { _ = srv.Process.Kill(); _ = srv.Wait() }
	start()
	t.Cleanup(kill)

	v := newEnv(t)
	ctx := context.Background()
	var c *rdb.Client
	waitFor(t, "redis to start", func() bool { c, err = rdb.Open(ctx, "redis://127.0.0.1:"+port); return err == nil })
	t.Cleanup(func() { c.Close() })
	gate := rdb.NewGate(c, "t:")
	b := v.backends()
	b.Gate, b.Locker = gate, rdb.NewLocker(c, "t:")
	s := v.openSale(10)
	u := v.users(4)
	e := v.recovered(Config{PublishTimeout: 250 * time.Millisecond}, &b)
	buy := func(user int64) error {
		_, err := e.Purchase(ctx, user, s.ID, path(t, e, user, s.ID))
		return err
	}

	if err := buy(u[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Redis().Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for _, user := range u[1:3] {
		if err := buy(user); err != nil {
			t.Fatal(err)
		}
	}
	kill()
	start() // from the snapshot: 9 left, only u[0] a buyer

	// u[1] bought after the snapshot: never a second 202 (this instance
	// knows them as a buyer, and answers without the gate).
	if err := buy(u[1]); seckill.ErrorCode(err) != seckill.EDuplicate {
		t.Fatalf("u[1] again after Redis came back with older data: %v, want duplicate", err)
	}
	// The reconciler's round finds the sale missing (purchases that reach
	// the gate would too) and rebuilds it.
	waitFor(t, "the gate rebuilt", func() bool {
		e.maybeRebuild()
		_, loaded, err := gate.Left(ctx, s.ID)
		return err == nil && loaded
	})
	// The rebuild dropped what this instance knew: the gate answers.
	if err := buy(u[1]); seckill.ErrorCode(err) != seckill.EDuplicate {
		t.Fatalf("u[1] again at the rebuilt gate: %v, want duplicate", err)
	}
	if left, loaded, err := gate.Left(ctx, s.ID); err != nil || !loaded || left != 7 {
		t.Fatalf("rebuilt gate: %d, %v, %v; want 7 left (3 queued)", left, loaded, err)
	}
	if err := buy(u[3]); err != nil {
		t.Fatal(err)
	}
	drain(t, e)
	st := v.stats(s.ID)
	if st.Orders != 4 || st.SQLStockLeft != 6 || len(v.buyers(s.ID)) != 4 {
		t.Fatalf("SQL after the drain: %d orders, %d left; want 4 distinct buyers, 6 left", st.Orders, st.SQLStockLeft)
	}
	if left, _, _ := gate.Left(ctx, s.ID); left != 6 {
		t.Fatalf("gate left %d at rest, want SQL's 6", left)
	}
}
