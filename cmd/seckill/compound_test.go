package main

import (
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"seckill/internal/testenv"
)

// TestCompoundFaults stacks the faults that TestFaultDrills injects one at
// a time, within half a second of each other and in the middle of a crowd:
// three instances on PostgreSQL with their own Redis and NATS (the
// machine's nats-server, started for the drill with a file store), 800
// buyers pressing buy four times for 500 units; 0.15 s into the crowd one
// instance is killed, 0.2 s later Redis loses everything (FLUSHALL: a
// restart without persistence), 0.3 s later nats-server is killed and
// started again on the same store. The instances' clocks disagree (-20 s,
// 0, +20 s). After the crowd every buyer tries once more; at rest I1–I4
// must hold and every buyer answered 202 must see the order as the result.
//
// SECKILL_DRILL_RUNS repeats it (default 2; the fault timing lands in a
// different state of the sale each time).
func TestCompoundFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault drills skipped in -short mode")
	}
	runs := 2
	if n, err := strconv.Atoi(os.Getenv("SECKILL_DRILL_RUNS")); err == nil && n > 0 {
		runs = n
	}
	for run := 1; run <= runs; run++ {
		t.Run(fmt.Sprintf("run-%d", run), func(t *testing.T) { compoundDrill(t) })
	}
}

func compoundDrill(t *testing.T) {
	db := freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES"))
	r := ownRedis(t)
	n := ownNATS(t)
	offsets := []string{"-20s", "0s", "20s"}
	natsURL := "nats://127.0.0.1:" + n.port
	d := newDeploymentEnv(t, 3, db, "redis://127.0.0.1:"+r.port, natsURL,
		func(i int) []string { return []string{"SECKILL_TEST_CLOCK_OFFSET=" + offsets[i]} })
	queue := func() string { return testenv.DescribeOrderQueue(natsURL, d.queuePrefix) }
	redisCLI := need(t, "redis-cli")
	// About 1,600 presses a second, so the sale lasts long enough for the
	// faults to land in it; each run shifts them by up to 100 ms.
	d.pace = 40 * time.Millisecond
	jitter := func(d time.Duration) time.Duration {
		return d + time.Duration(mrand.Int64N(int64(100*time.Millisecond))) - 50*time.Millisecond
	}

	const users, stock = 800, 500
	sale, buyers := d.provision(users, stock)
	accepted := map[int64]string{}
	var mu sync.Mutex
	var once sync.Once
	faults := make(chan struct{})
	atFault := 0
	first := d.crowd(sale, buyers, 4, accepted, &mu, func(int) {
		once.Do(func() {
			go func() {
				defer close(faults)
				time.Sleep(jitter(150 * time.Millisecond))
				mu.Lock()
				atFault = len(accepted)
				mu.Unlock()
				d.nodes[2].kill()
				t.Log("fault: instance 2 killed")
				time.Sleep(jitter(200 * time.Millisecond))
				if out, err := exec.Command(redisCLI, "-p", r.port, "FLUSHALL").CombinedOutput(); err != nil {
					t.Errorf("flushall: %v %s", err, out)
				}
				t.Log("fault: Redis emptied")
				time.Sleep(jitter(300 * time.Millisecond))
				n.crash()
				n.start()
				t.Log("fault: nats-server killed and restarted")
			}()
		})
	})
	<-faults
	t.Logf("through the faults: %v, %d accepted (%d when the first fault struck)", first, len(accepted), atFault)
	d.waitReady(time.Minute)
	if st, ok := d.rest(sale, 90*time.Second); !ok {
		t.Errorf("not at rest 90 s after the faults: %+v; %s", st, queue())
	}
	second := d.crowd(sale, buyers, 1, accepted, &mu, nil)
	t.Logf("after them: %v, %d accepted in all", second, len(accepted))
	for code, n := range second {
		if code != 202 && code != 409 && code != 410 {
			t.Errorf("after recovery: %d answers with status %d", n, code)
		}
	}
	st, ok := d.rest(sale, 90*time.Second)
	if !ok {
		t.Errorf("not at rest 90 s after the last crowd: %+v; %s", st, queue())
	}
	d.checkInvariants(sale, st, accepted, true)
	d.checkAcceptedResults(sale, buyers, accepted, 30*time.Second)
}

// checkAcceptedResults asks for the result of every buyer answered 202, on
// the instances still up, until each says success with an order (a result
// lost on its way must not stay "queued").
func (d *deployment) checkAcceptedResults(sale int64, users []benchUser, accepted map[int64]string, within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for i, u := range users {
		if _, ok := accepted[u.ID]; !ok {
			continue
		}
		for {
			var r struct {
				Status  string `json:"status"`
				OrderID int64  `json:"order_id"`
			}
			code, err := d.node(i).call("GET", fmt.Sprintf("/api/sales/%d/result", sale), u.Token, "", &r)
			if err == nil && code == 200 && r.Status == "success" && r.OrderID > 0 {
				break
			}
			if time.Now().After(deadline) {
				d.t.Errorf("I3: user %d was answered 202, the result says %+v (%d %v)", u.ID, r, code, err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
