package main

import (
	"testing"
	"time"
)

// TestLogoutAcrossServers: two `seckill serve` on one PostgreSQL, Redis and
// NATS. A session that node 1 has cached, logged out on node 0, is refused
// by node 1 through the revocation broadcast: well before node 1 would
// look it up again by itself (sessionRefreshAfter), let alone its cache
// TTL.
func TestLogoutAcrossServers(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance runs skipped in -short mode")
	}
	t.Parallel()
	dbURL := freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES"))
	d := newDeployment(t, 2, dbURL, integration(t, "SECKILL_TEST_REDIS"), integration(t, "SECKILL_TEST_NATS"))
	var login struct{ Token string }
	if code, err := d.nodes[0].call("POST", "/api/sessions", "", `{"phone":"19900000000","password":"admin-password"}`, &login); err != nil || code != 200 {
		t.Fatalf("login: %d %v", code, err)
	}
	for range 2 { // node 1 caches it at the first
		if code, err := d.nodes[1].call("GET", "/api/me", login.Token, "", nil); err != nil || code != 200 {
			t.Fatalf("me on node 1: %d %v", code, err)
		}
	}
	if code, err := d.nodes[0].call("DELETE", "/api/sessions", login.Token, "", nil); err != nil || code != 204 {
		t.Fatalf("logout on node 0: %d %v", code, err)
	}
	deadline := time.Now().Add(sessionRefreshAfter - time.Second)
	for {
		code, err := d.nodes[1].call("GET", "/api/me", login.Token, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if code == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 still answers %d for a session logged out on node 0", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := d.nodes[1].call("GET", "/api/me", d.admin, "", nil); code != 200 {
		t.Fatalf("the admin's other session on node 1: %d", code)
	}
}
