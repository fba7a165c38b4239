package main

import (
	"fmt"
	"testing"
)

// TestPurchaseIPBucketSharedWithPaths: with Redis, one instance, an address
// that spent its per-IP bucket (login, paths) is not admitted to purchase
// at once: as in embedded mode, this instance's purchases and the
// address's other requests here draw on one bucket. The purchases' bucket
// is in process (one Redis round trip per purchase), but it must still be
// charged by the address's paths, captchas and logins on this instance;
// otherwise a bot farm behind one address gets a fresh --ip-burst of
// purchases right after spending the shared one on paths, twice the
// admissions the per-IP limit allowed before.
func TestPurchaseIPBucketSharedWithPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("production deployment skipped in -short mode")
	}
	pg := freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES"))
	redis := integration(t, "SECKILL_TEST_REDIS")
	nats := integration(t, "SECKILL_TEST_NATS")
	const burst = 6
	d := newDeploymentEnv(t, 1, pg, redis, nats, func(int) []string {
		// A bucket that does not refill within the test.
		return []string{"SECKILL_IP_RATE=0.001", fmt.Sprintf("SECKILL_IP_BURST=%d", burst)}
	})
	sale, users := d.provision(burst, burst)
	// Paths until the address's bucket is empty.
	var paths []string
	for _, u := range users {
		var p struct{ Path string }
		code, err := d.node(0).call("POST", fmt.Sprintf("/api/sales/%d/path", sale), u.Token, "", &p)
		if err != nil {
			t.Fatal(err)
		}
		if code == 429 {
			break
		}
		if code != 200 {
			t.Fatalf("path: %d", code)
		}
		paths = append(paths, p.Path)
	}
	if len(paths) == 0 || len(paths) == len(users) {
		t.Fatalf("%d paths of %d with a bucket of %d: want the bucket emptied by paths", len(paths), len(users), burst)
	}
	admitted := 0
	for i, p := range paths {
		code, err := d.node(0).call("POST", fmt.Sprintf("/api/sales/%d/purchase/%s", sale, p), users[i].Token, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if code == 202 {
			admitted++
		} else if code != 429 {
			t.Fatalf("purchase: %d", code)
		}
	}
	if admitted > 0 {
		t.Errorf("address with an empty per-IP bucket: %d of %d purchases admitted, want 429s", admitted, len(paths))
	}
}
