package mq

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"seckill"
)

// crashStream replaces the queue's stream by one that keeps acked messages
// (limits retention) and a writer consumer that starts at sequence start
// (0: the first), so a test can set up what a server restarted after a
// crash can leave: messages the consumer counts as delivered and acked
// although the stream still holds them, or a consumer ahead of the
// stream's last sequence.
func crashStream(t *testing.T, q *Queue, start uint64) {
	t.Helper()
	ctx := t.Context()
	if err := q.js.DeleteStream(ctx, q.StreamName()); err != nil {
		t.Fatal(err)
	}
	// The server removes a deleted stream's files after it answers, and a
	// stream created under the same name meanwhile can fail with "error
	// creating store for stream" (seen in CI); a restarted server would
	// find the directory gone, so the test waits for that.
	var st jetstream.Stream
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err = q.js.CreateStream(ctx, jetstream.StreamConfig{
			Name: q.StreamName(), Subjects: []string{q.subjPfx + ">"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
		})
		if err == nil || time.Now().After(deadline) {
			break
		}
		t.Logf("create the stream again: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	q.stream = st
	cfg := q.consumerConfig()
	if start > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	if _, err := st.CreateConsumer(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

func publishUsers(t *testing.T, q *Queue, sale int64, users ...int64) {
	t.Helper()
	for _, u := range users {
		if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: sale, UserID: u, Ticket: "t"}); err != nil {
			t.Fatal(err)
		}
	}
}

// fetchUsers fetches and acks until nothing more comes within a short wait.
func fetchUsers(t *testing.T, q *Queue) map[int64]int {
	t.Helper()
	got := map[int64]int{}
	for {
		ds, err := q.Fetch(t.Context(), 100, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			return got
		}
		for _, d := range ds {
			got[d.Request().UserID]++
			if err := d.Ack(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func lastSeq(t *testing.T, q *Queue) uint64 {
	t.Helper()
	si, err := q.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return si.State.LastSeq
}

// TestRepairSkippedMessages: messages below the consumer's ack floor are
// counted as pending by a read that changes nothing, are not delivered,
// and after Repair are delivered — none dropped (the queue used to purge
// them as acked, losing requests stored under reused sequence numbers).
func TestRepairSkippedMessages(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	crashStream(t, q, 0)
	publishUsers(t, q, 1, 1, 2, 3)
	if got := fetchUsers(t, q); len(got) != 3 {
		t.Fatalf("first delivery: %v", got)
	}
	// Acked, and the stream still holds them: as after a crash that undid
	// the work queue's removals, or stored new messages under sequence
	// numbers the consumer had passed.
	for range 2 { // a read, twice: nothing changes
		if n, err := q.Pending(t.Context(), 1); err != nil || n != 3 {
			t.Fatalf("pending: %d %v, want 3", n, err)
		}
	}
	if got := fetchUsers(t, q); len(got) != 0 {
		t.Fatalf("acked messages delivered again without a repair: %v", got)
	}
	if err := q.Repair(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := fetchUsers(t, q)
	for _, u := range []int64{1, 2, 3} {
		if got[u] != 1 {
			t.Errorf("user %d delivered %d times after repair, want 1 (%v)", u, got[u], got)
		}
	}
}

// TestRepairSequenceWentBack: a consumer ahead of the stream's last
// sequence skips every message stored until the stream passes it; Repair
// creates it anew and they are delivered.
func TestRepairSequenceWentBack(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	crashStream(t, q, 100)
	publishUsers(t, q, 1, 1, 2)
	if got := fetchUsers(t, q); len(got) != 0 {
		t.Fatalf("consumer ahead of the stream delivered %v; the test's premise is wrong", got)
	}
	if err := q.Repair(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := fetchUsers(t, q)
	if got[1] != 1 || got[2] != 1 || len(got) != 2 {
		t.Fatalf("after repair delivered %v, want users 1 and 2 once", got)
	}
}

// TestRepairHealthyQueue: on a queue nothing happened to, Repair stores
// nothing and delivers nothing twice.
func TestRepairHealthyQueue(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	publishUsers(t, q, 1, 1, 2, 3)
	ds, err := q.Fetch(t.Context(), 1, time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("fetch: %d %v", len(ds), err)
	}
	before := lastSeq(t, q)
	if err := q.Repair(t.Context()); err != nil || lastSeq(t, q) != before {
		t.Fatalf("repair of a healthy queue stored messages: %v", err)
	}
	if err := ds[0].Ack(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := fetchUsers(t, q)
	if len(got) != 2 || got[ds[0].Request().UserID] != 0 {
		t.Fatalf("after a repair of a healthy queue delivered %v", got)
	}
}

// TestRepairConsumerGone: a writer consumer that is gone (an instance died
// between recreateConsumer's delete and its create) is created again by
// the next Repair, and every request the stream holds is delivered; before,
// nothing created it and the writers fetched nothing for good.
func TestRepairConsumerGone(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	publishUsers(t, q, 1, 1, 2)
	if err := q.stream.DeleteConsumer(t.Context(), consumerName); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Fetch(t.Context(), 10, 200*time.Millisecond); err == nil {
		t.Log("a fetch without the consumer answered no error") // either way it delivers nothing
	}
	if err := q.Repair(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := fetchUsers(t, q)
	if got[1] != 1 || got[2] != 1 || len(got) != 2 {
		t.Fatalf("after repair delivered %v, want users 1 and 2 once", got)
	}
}
