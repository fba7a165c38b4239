package rdb

import (
	"bytes"
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"seckill"
	"seckill/internal/testenv"
)

// feed records what FollowRevocations reports.
type feed struct {
	mu      sync.Mutex
	evicted [][]byte
	resets  int
	reports []bool // each reset's followed
}

func (f *feed) evict(h []byte) {
	f.mu.Lock()
	f.evicted = append(f.evicted, h)
	f.mu.Unlock()
}

func (f *feed) reset(followed bool) {
	f.mu.Lock()
	f.resets++
	f.reports = append(f.reports, followed)
	f.mu.Unlock()
}

// followedReports is what every reset said of the feed, in order.
func (f *feed) followedReports() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.reports...)
}

func (f *feed) state() (evicted [][]byte, resets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.evicted...), f.resets
}

func (f *feed) saw(h []byte) bool {
	ev, _ := f.state()
	for _, e := range ev {
		if bytes.Equal(e, h) {
			return true
		}
	}
	return false
}

// follow runs FollowRevocations of s into a new feed until the test ends,
// and waits for its subscription.
func follow(t *testing.T, s *Sessions) *feed {
	t.Helper()
	f := &feed{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.FollowRevocations(ctx, f.evict, f.reset) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the revocation feed subscribed", func() bool { _, n := f.state(); return n > 0 })
	return f
}

// TestRevocationsAnnounced: a session deleted through one client reaches
// the feed of another instance (here: the same prefix), whatever the
// deployment; another prefix's feed does not hear it.
func TestRevocationsAnnounced(t *testing.T) {
	forEachTarget(t, func(t *testing.T, c *Client) {
		ctx := context.Background()
		prefix := testPrefix(t, c)
		here, there := NewSessions(c, prefix), NewSessions(c, prefix)
		f := follow(t, there)
		other := follow(t, NewSessions(c, testPrefix(t, c)))
		s := seckill.Session{TokenHash: []byte("0123456789abcdef0123456789abcdef"), UserID: 4, Role: seckill.RoleBuyer, ExpiresAt: time.Now().Add(time.Hour)}
		if err := here.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := here.DeleteSession(ctx, s.TokenHash); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the deletion announced", func() bool { return f.saw(s.TokenHash) })
		if _, err := there.Session(ctx, s.TokenHash); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Fatalf("deleted session: %v", err)
		}
		// A deletion under this prefix, heard by its feed, came after the
		// one above: had the other prefix's feed heard that, it would have
		// by now.
		if err := NewSessions(c, prefix).DeleteSession(ctx, []byte("second")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the second deletion announced", func() bool { return f.saw([]byte("second")) })
		if ev, _ := other.state(); len(ev) != 0 {
			t.Fatalf("another prefix's feed heard %q", ev)
		}
	})
}

// TestRevocationFeedCut: when the feed's connection is cut, announcements
// made meanwhile may be lost, so the feed calls reset (the cache forgets
// everything), subscribes again and hears the deletions after. Each reset
// says whether the feed is followed from then on: true at a confirmed
// subscription, false at the cut (a single Redis's session cache serves
// longer only what it read in between).
func TestRevocationFeedCut(t *testing.T) {
	base := testClient(t, "SECKILL_TEST_REDIS", "")
	u, err := url.Parse(testenv.URL(t, "SECKILL_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newSwitchProxy(t, u.Host)
	c, err := Open(context.Background(), proxy.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	prefix := testPrefix(t, base)
	f := follow(t, NewSessions(c, prefix))
	// follow returns at the first reset, the confirmation's (false); the
	// feed counts as followed once its canary is back.
	waitFor(t, "the feed followed (true) before the cut", func() bool {
		r := f.followedReports()
		return len(r) > 0 && r[len(r)-1]
	})
	_, before := f.state()
	proxy.point(u.Host) // cuts every connection through the proxy
	waitFor(t, "a reset after the cut", func() bool { _, n := f.state(); return n > before })
	// Subscribed again: deletions are heard (they may be published before
	// the subscription is back, so publish until one is).
	for i := 0; !f.saw([]byte("after")); i++ {
		if i == 500 {
			t.Fatal("no deletion heard after the cut")
		}
		if err := NewSessions(base, prefix).DeleteSession(context.Background(), []byte("after")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := f.followedReports()
	if cut := r[before:]; len(cut) < 2 || cut[0] || !cut[len(cut)-1] {
		t.Fatalf("resets after the cut said %v, want not followed (false) first and followed (true) once heard again", cut)
	}
}

// TestFeedFollowedOnlyWhereCommandsGo: a subscription confirmed by a
// server that the client's commands do not reach (one still in flight
// when the client met a new server, a stale address) hears none of the
// announcements, so it must never be reported followed: its canary,
// published through the command path, does not come back, and the feed
// ends within a few followPings to subscribe again. The same feed on the
// commands' server is followed within a canary's round trip. (The session
// cache serves longer only what it read while followed.)
func TestFeedFollowedOnlyWhereCommandsGo(t *testing.T) {
	c := testClient(t, "SECKILL_TEST_REDIS", "")
	s := NewSessions(c, testPrefix(t, c))
	other := openClient(t, "redis://127.0.0.1:"+newSnapshotRedis(t).Port)
	run := func(sub *Client) (reports []bool, took time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*followPing)
		defer cancel()
		ps := sub.base.Subscribe(ctx, s.channel())
		defer ps.Close()
		f := &feed{}
		start := time.Now()
		s.follow(ctx, ps, &feedConn{cancel: cancel, reset: f.reset}, f.evict)
		return f.followedReports(), time.Since(start)
	}

	reports, took := run(other)
	if len(reports) == 0 {
		t.Fatal("the subscription on the other server was never confirmed")
	}
	for _, r := range reports {
		if r {
			t.Fatalf("a feed on a server the commands do not reach was reported followed: %v", reports)
		}
	}
	if took >= 4*followPing {
		t.Errorf("the feed on the other server lasted %v, want it ended by its late canary (about 2 × %v)", took, followPing)
	}

	ctx, cancel := context.WithCancel(context.Background())
	f := &feed{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ps := c.base.Subscribe(ctx, s.channel())
		defer ps.Close()
		s.follow(ctx, ps, &feedConn{cancel: cancel, reset: f.reset}, f.evict)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the feed on the commands' server followed", func() bool {
		r := f.followedReports()
		return len(r) > 0 && r[len(r)-1]
	})
	if ev, _ := f.state(); len(ev) != 0 {
		t.Fatalf("canaries were evicted as sessions: %q", ev)
	}
}
