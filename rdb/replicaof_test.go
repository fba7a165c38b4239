package rdb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/internal/testenv"
)

// replicaOf makes the server of r follow the one on port and waits until
// its link is up (it has a copy of everything written there so far).
func replicaOf(t *testing.T, r *redis.Client, port string) {
	t.Helper()
	ctx := context.Background()
	if err := r.ReplicaOf(ctx, "127.0.0.1", port).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replication link up", func() bool {
		info, err := r.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
}

// promote makes the server of r a master (REPLICAOF NO ONE).
func promote(t *testing.T, r *redis.Client) {
	t.Helper()
	if err := r.ReplicaOf(context.Background(), "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaOfOverPooledConnections: a single Redis X, its replica Y, and
// a switchover done with REPLICAOF (by hand or by a script; Redis 6.2's
// FAILOVER likewise): Y is promoted before it had buyer 2's reservation,
// X follows Y (resyncing to Y's copy, without buyer 2) and is promoted
// back. Redis closes no client connection when REPLICAOF demotes or
// promotes a server, so the client, which only ever talked to X, keeps its
// pooled connections and no onConnect sees the switch: the gate must still
// drop the sale (busy, not loaded) rather than admit buyer 2 a second time.
// Sessions likewise: one deleted on X before the switchover (its owner
// logged out) must not be read again from Y's copy. The Cluster-only
// check (promotedLua) assumed a single Redis fails over only under
// Sentinel, which kills clients' connections; rdb has no Sentinel client,
// and REPLICAOF and FAILOVER kill none.
func TestReplicaOfOverPooledConnections(t *testing.T) {
	x, y := testenv.StartRedis(t), testenv.StartRedis(t)
	ctx := context.Background()
	c := openClient(t, x.URL())
	g := NewGate(c, "t:")
	s := NewSessions(c, "t:")
	xr, yr := x.Raw(), y.Raw()
	for _, r := range []*redis.Client{xr, yr} {
		// A full sync starts at once, not after the default 5 s.
		if err := r.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	reserve := func(user int64) (seckill.GateResult, error) {
		return g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: user, Ticket: "T"})
	}
	sessionIn := func(hash string) bool {
		t.Helper()
		_, err := s.Session(ctx, []byte(hash))
		if err != nil && seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("session %s: %v", hash, err)
		}
		return err == nil
	}

	// Y follows X from the start: a master's first replica renews its
	// replication ID (a new backlog), which drops its sales.
	replicaOf(t, yr, x.Port)
	mustLoad(t, g, 1, 10, nil)
	if r, err := reserve(1); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 1: %v %v", r, err)
	}
	if err := s.CreateSession(ctx, seckill.Session{TokenHash: []byte("A"), UserID: 1, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Y in sync with X", func() bool {
		n, err := yr.Get(ctx, "t:{sale:1}:stock").Int64()
		return err == nil && n == 9
	})

	// Y is promoted; buyer 2's reservation and the logout reach X alone
	// (Y lagging, in a real switchover).
	promote(t, yr)
	if r, err := reserve(2); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 2 on X: %v %v", r, err)
	}
	if err := s.DeleteSession(ctx, []byte("A")); err != nil {
		t.Fatal(err)
	}

	// X follows Y, then is promoted back.
	replicaOf(t, xr, y.Port)
	waitFor(t, "X in sync with Y", func() bool {
		n, err := xr.Get(ctx, "t:{sale:1}:stock").Int64()
		return err == nil && n == 9
	})
	promote(t, xr)

	// The units left read there are not the sale's either: not loaded
	// (the copy dropped), and the reservation below finds it so.
	if left, loaded, err := g.Left(ctx, 1); err != nil || loaded {
		t.Errorf("Left after X was promoted back: %d, loaded %v, %v; want not loaded (its copy of Y dropped)", left, loaded, err)
	}
	r, err := reserve(2)
	if err == nil && r == seckill.Reserved {
		t.Errorf("buyer 2, who holds a unit reserved on X before the switchover, reserved a second one on X's copy of Y: the promoted copy was trusted over pooled connections")
	} else if seckill.ErrorCode(err) != seckill.EBusy {
		t.Errorf("reserve 2 after X was promoted back: %v %v, want busy (the sale dropped, to be rebuilt)", r, err)
	}
	if sessionIn("A") {
		t.Error("session A, deleted on X before the switchover, read again from X's copy of Y")
	}
}

// TestLoadClaimAcrossFailback: a Load claims the sale on X and reads its
// snapshot (10 units, no buyer); meanwhile X fails over to Y and back, and
// in between another instance loads the sale on Y and admits buyer 1 there,
// which X, promoted back while it lagged, never received. X's copy still
// holds the first Load's claim (replicated to Y and back), and X kept its
// run_id, so a claim checked by run_id alone lets the Load install its
// snapshot, which predates buyer 1: buyer 1 is admitted twice (and the
// units of everyone admitted on Y sell again). The claim must be the
// server's as it is now, replication history included, like the epoch.
func TestLoadClaimAcrossFailback(t *testing.T) {
	x, y := testenv.StartRedis(t), testenv.StartRedis(t)
	ctx := context.Background()
	open := func(url string) *Gate {
		t.Helper()
		c := openClient(t, url)
		return NewGate(c, "t:")
	}
	gA, gB := open(x.URL()), open(y.URL())
	xr, yr := x.Raw(), y.Raw()
	for _, r := range []*redis.Client{xr, yr} {
		if err := r.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	claim := gA.keys(1).claim
	replicaOf(t, yr, x.Port)

	loaded, err := gA.Load(ctx, 1, func(context.Context) (seckill.GateContents, error) {
		// The snapshot as A read it: 10 units, no buyer. Then, before A
		// installs it, X fails over to Y...
		waitFor(t, "Y has A's claim", func() bool { return yr.Exists(ctx, claim).Val() == 1 })
		promote(t, yr)
		replicaOf(t, xr, y.Port)
		waitFor(t, "X has Y's copy of the claim", func() bool { return xr.Exists(ctx, claim).Val() == 1 })
		// ...and back, before X receives what follows on Y: B rebuilds the
		// sale there and admits buyer 1.
		promote(t, xr)
		mustLoad(t, gB, 1, 10, nil)
		if r, err := gB.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 1, Ticket: "T"}); err != nil || r != seckill.Reserved {
			t.Fatalf("reserve 1 on Y: %v %v", r, err)
		}
		return seckill.GateContents{Left: 10}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if loaded {
		r, err := gA.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 1, Ticket: "T2"})
		t.Errorf("the Load claimed before X failed over and back installed its snapshot on X; buyer 1, admitted on Y since, reserves again: %v %v", r, err)
	}
}

// TestDemotedServerIsBusy: a single Redis demoted by REPLICAOF keeps the
// client's connections, which now reach a replica: the gate must answer
// busy (503: retry, the sale is rebuilt where it is written now), not an
// internal error, while it refuses the writes.
func TestDemotedServerIsBusy(t *testing.T) {
	x, y := testenv.StartRedis(t), testenv.StartRedis(t)
	ctx := context.Background()
	c := openClient(t, x.URL())
	g := NewGate(c, "t:")
	xr, yr := x.Raw(), y.Raw()
	for _, r := range []*redis.Client{xr, yr} {
		if err := r.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	replicaOf(t, yr, x.Port)
	mustLoad(t, g, 1, 10, nil)
	if r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 1, Ticket: "T"}); err != nil || r != seckill.Reserved {
		t.Fatalf("reserve 1: %v %v", r, err)
	}
	waitFor(t, "Y in sync with X", func() bool {
		n, err := yr.Get(ctx, "t:{sale:1}:stock").Int64()
		return err == nil && n == 9
	})
	// A switchover: Y promoted, X follows it (and holds Y's copy of the
	// sale).
	promote(t, yr)
	replicaOf(t, xr, y.Port)
	waitFor(t, "X in sync with Y", func() bool {
		n, err := xr.Get(ctx, "t:{sale:1}:stock").Int64()
		return err == nil && n == 9
	})
	r, err := g.Reserve(ctx, seckill.Reservation{SaleID: 1, UserID: 2, Ticket: "T"})
	if seckill.ErrorCode(err) != seckill.EBusy {
		t.Errorf("reserve on a demoted server: %v %v, want busy", r, err)
	}
	if _, err := g.Release(ctx, 1, 1, "T"); seckill.ErrorCode(err) != seckill.EBusy {
		t.Errorf("release on a demoted server: %v, want busy", err)
	}
}
