package rdb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
)

// TestPromotionOverPooledConnections: on a Cluster, a replica promoted by
// CLUSTER FAILOVER, then its old master promoted back, while the client
// holds pooled connections to both from before (Redis closes no client
// connection when it promotes or demotes a server, so no onConnect sees
// either promotion). Each promotion moves the sale to a server whose copy
// was not loaded there (after a forced failover it may lack the last
// admissions): whichever connection carries the command, the gate must drop
// the sale (busy, not loaded) for the engine to rebuild. Before the
// scripts checked the replication ID, the failback was trusted (buyer 4
// reserved on the old master's copy). Sessions likewise: one written
// before the failback reads as missing after it (a session deleted on the
// master before may live on in the promoted server's copy), so
// account.Tiered asks SQL.
func TestPromotionOverPooledConnections(t *testing.T) {
	cl, c := startReplicatedCluster(t)
	ctx := context.Background()
	g := NewGate(c, "t:")
	sessions := NewSessions(c, "t:")
	sessionIn := func(hash string) bool {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			_, err := sessions.Session(ctx, []byte(hash))
			switch {
			case err == nil:
				return true
			case seckill.ErrorCode(err) == seckill.ENotFound:
				return false
			case time.Now().After(deadline):
				t.Fatalf("session %s: %v", hash, err)
			}
		}
	}
	createSession := func(hash string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := sessions.CreateSession(ctx, seckill.Session{TokenHash: []byte(hash), UserID: 1, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)})
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("create session %s: %v", hash, err)
			}
		}
	}
	reserve := func(user int64) (seckill.GateResult, error) { return reserveThroughFailover(t, g, user) }
	cc := c.base.(*redis.ClusterClient)
	master, replica := cl.owner(t, cc, "t:{sale:1}:stock")
	mustLoad(t, g, 1, 10, nil)
	if r, err := reserve(1); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 1: %v %v", r, err)
	}
	// Sessions of a group held by the sale's master, which the test
	// fails over.
	hashA, hashB := sessionHashOn(t, sessions, cc, master, 'A'), sessionHashOn(t, sessions, cc, master, 'B')
	createSession(hashA)
	if !sessionIn(hashA) {
		t.Fatal("session A missing right after it was written")
	}
	// A pooled connection to every replica, on the node clients the
	// cluster client routes commands through.
	if err := cc.ForEachSlave(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.Ping(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	failover := func(to string) {
		t.Helper()
		rc := cl.client(to)
		defer rc.Close()
		// A manual failover gives up (after 5 s) when the replica has no
		// link to its master yet, or when the masters refuse their votes:
		// a master votes for one failover of a slot per twice the node
		// timeout. Ask again until it is promoted.
		for deadline := time.Now().Add(30 * time.Second); ; {
			if info, err := rc.Info(ctx, "replication").Result(); err == nil && strings.Contains(info, "master_link_status:up") {
				if err := rc.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
					t.Fatal(err)
				}
				for wait := time.Now().Add(6 * time.Second); time.Now().Before(wait); time.Sleep(50 * time.Millisecond) {
					if info, err := rc.Info(ctx, "replication").Result(); err == nil && strings.Contains(info, "role:master") {
						cl.waitMaster(t, to)
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not promoted in 30 s", to)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	failover(replica)
	if r, err := reserve(2); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("reserve 2 on the promoted replica: %v %v, want busy (the sale dropped, to be rebuilt)", r, err)
	}
	mustLoad(t, g, 1, 9, []int64{1})
	if r, err := reserve(3); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 3 after the rebuild: %v %v", r, err)
	}
	if r, err := reserve(1); err != nil || r != seckill.Duplicate {
		t.Fatalf("reserve 1 after the rebuild: %v %v, want duplicate", r, err)
	}
	if sessionIn(hashA) {
		t.Error("session A, written before the failover, read on the promoted replica")
	}
	createSession(hashB)
	if !sessionIn(hashB) {
		t.Fatal("session B missing right after it was written")
	}

	// The old master (its connections from before the first failover still
	// open) is promoted back.
	failover(master)
	if r, err := reserve(4); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("reserve 4 on the old master promoted back: %v %v, want busy (the sale dropped, to be rebuilt)", r, err)
	}
	if sessionIn(hashB) {
		t.Error("session B, written before the failback, read on the old master promoted back")
	}
	mustLoad(t, g, 1, 8, []int64{1, 3})
	for user, want := range map[int64]seckill.GateResult{3: seckill.Duplicate, 4: seckill.Reserved} {
		if r, err := reserve(user); err != nil || r != want {
			t.Fatalf("reserve %d after the second rebuild: %v %v, want %v", user, r, err, want)
		}
	}
}

// sessionHashOn returns a token hash starting with prefix whose session
// group lives on the master at addr.
func sessionHashOn(t *testing.T, s *Sessions, cc *redis.ClusterClient, addr string, prefix byte) string {
	t.Helper()
	ctx := context.Background()
	for g := 0; g < sessionGroups; g++ {
		hash := string([]byte{byte(g), prefix})
		key := s.keys([]byte(hash))[0]
		n, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr == addr {
			return hash
		}
	}
	t.Fatalf("no session group on %s", addr)
	return ""
}
