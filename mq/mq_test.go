package mq

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"seckill"
	"seckill/internal/contract"
	"seckill/internal/testenv"
)

func TestEmbedded(t *testing.T) {
	contract.TestOrderQueue(t, func(t *testing.T) contract.QueueUnderTest {
		return underTest(t, Config{DataDir: t.TempDir()})
	})
}

func TestExternal(t *testing.T) {
	url := externalURL(t)
	contract.TestOrderQueue(t, func(t *testing.T) contract.QueueUnderTest {
		return underTest(t, Config{URL: url, Prefix: uniquePrefix(t)})
	})
}

// TestExternalSharedStream opens the same external queue from several
// "processes" at once: setup is idempotent and they share the work.
func TestExternalSharedStream(t *testing.T) {
	cfg := Config{URL: externalURL(t), Prefix: uniquePrefix(t)}
	const n = 4
	qs := make([]*Queue, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var err error
			qs[i], err = Open(t.Context(), cfg)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("open: %v", err)
		}
	}
	for _, q := range qs {
		t.Cleanup(func() { q.Close() })
	}
	t.Cleanup(func() { deleteStream(t, qs[0]) }) // runs before the closes
	for u := int64(1); u <= 10; u++ {
		if err := qs[u%n].Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: u}); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	for i := 0; got < 10 && i < 100; i++ {
		ds, err := qs[i%n].Fetch(t.Context(), 3, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if err := d.Ack(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		got += len(ds)
	}
	if got != 10 {
		t.Fatalf("fetched %d, want 10", got)
	}
}

// underTest opens a queue with cfg and reopens it on the same storage.
func underTest(t *testing.T, cfg Config) contract.QueueUnderTest {
	t.Helper()
	q := open(t, cfg)
	cur := q
	t.Cleanup(func() {
		if cfg.URL != "" {
			deleteStream(t, cur)
		}
		if err := cur.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return contract.QueueUnderTest{
		Queue: q,
		Bus:   q,
		Reopen: func(t *testing.T) (seckill.OrderQueue, seckill.ResultBus) {
			t.Helper()
			if err := cur.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			cur = open(t, cfg)
			return cur, cur
		},
	}
}

func open(t *testing.T, cfg Config) *Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	q, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return q
}

// externalURL returns SECKILL_TEST_NATS, skipping the test when it is unset
// (failing it in CI).
func externalURL(t testing.TB) string {
	t.Helper()
	return testenv.URL(t, "SECKILL_TEST_NATS")
}

func uniquePrefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	return "TEST_" + hex.EncodeToString(b)
}

func deleteStream(t testing.TB, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.js.DeleteStream(ctx, q.StreamName()); err != nil {
		t.Logf("delete stream %s: %v", q.StreamName(), err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		code string
	}{
		{"no data dir", Config{}, seckill.EInvalid},
		{"bad prefix", Config{DataDir: t.TempDir(), Prefix: "a.b"}, seckill.EInvalid},
		{"no server", Config{URL: "nats://127.0.0.1:1"}, seckill.EBusy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			q, err := Open(ctx, tc.cfg)
			if err == nil {
				q.Close()
				t.Fatal("open succeeded")
			}
			if got := seckill.ErrorCode(err); got != tc.code {
				t.Fatalf("code %q, want %q (%v)", got, tc.code, err)
			}
		})
	}
}

func TestPublishErrors(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir(), MaxMsgs: 2})
	defer q.Close()
	if err := q.Ping(t.Context()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if got := seckill.ErrorCode(q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1})); got != seckill.EInvalid {
		t.Fatalf("no user: code %q", got)
	}
	for u := int64(1); u <= 2; u++ {
		if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: u}); err != nil {
			t.Fatal(err)
		}
	}
	// The stream is full: nothing is discarded, the publish fails, and
	// surely so (the stream answered with an error): its reservation may
	// be released at once.
	full := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: 3})
	if got := seckill.ErrorCode(full); got != seckill.EBusy || errors.Is(full, seckill.ErrMaybeStored) {
		t.Fatalf("full stream: %v (code %q), want busy, not maybe stored", full, got)
	}
	if n, _ := q.Pending(t.Context(), 1); n != 2 {
		t.Fatalf("pending %d, want 2", n)
	}
	q.Close()
	if got := seckill.ErrorCode(q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: 4})); got != seckill.EBusy {
		t.Fatalf("closed: code %q, want busy", got)
	}
	if got := seckill.ErrorCode(q.Ping(t.Context())); got != seckill.EBusy {
		t.Fatalf("ping closed: code %q, want busy", got)
	}
	if _, err := q.Fetch(t.Context(), 10, 10*time.Millisecond); seckill.ErrorCode(err) != seckill.EBusy {
		t.Fatalf("fetch closed: %v, want busy", err)
	}
}

// TestPingFailsWhilePublishesFail: a queue whose server answers but
// refuses every write (here a full stream; in the wild a store that could
// not open a file) is not ready after a few failed publishes in a row,
// and ready again after a success, or once none has failed for a while.
func TestPingFailsWhilePublishesFail(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir(), MaxMsgs: 1})
	defer q.Close()
	if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: 1}); err != nil {
		t.Fatal(err)
	}
	for u := int64(2); u < 2+pubFailuresNotReady; u++ {
		if err := q.Ping(t.Context()); err != nil {
			t.Fatalf("ping after %d failed publishes: %v", u-2, err)
		}
		if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: u}); err == nil {
			t.Fatal("a publish into a full stream went through")
		}
	}
	err := q.Ping(t.Context())
	if seckill.ErrorCode(err) != seckill.EBusy || !strings.Contains(err.Error(), "publishes to the order queue failed") {
		t.Fatalf("ping after %d failed publishes: %v, want busy", pubFailuresNotReady, err)
	}
	// Embedded, the failures stand however old: a latched store does not
	// heal with time. An external server's pass after pubFailingFor.
	if err := q.pubs.failing(time.Now().Add(time.Hour)); err == nil {
		t.Fatal("an embedded queue's failed publishes passed with time")
	}
	external := pubHealth{}
	for range pubFailuresNotReady {
		external.record(errors.New("timeout"), time.Now())
	}
	if external.failing(time.Now()) == nil {
		t.Fatal("an external queue's failures did not count")
	}
	if err := external.failing(time.Now().Add(pubFailingFor + time.Second)); err != nil {
		t.Fatalf("no failure for longer than %v: %v", pubFailingFor, err)
	}
	// Room again: the next publish succeeds, and the queue is ready.
	ds, err := q.Fetch(t.Context(), 1, time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	if err := q.AckAll(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: 9}); err != nil {
		t.Fatal(err)
	}
	if err := q.Ping(t.Context()); err != nil {
		t.Fatalf("ping after a publish went through: %v", err)
	}
}

func TestMalformedMessageTerminated(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	if _, err := q.js.Publish(t.Context(), q.Subject(1), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.js.Publish(t.Context(), q.Subject(1), []byte(`{"sale_id":1,"user_id":2,"ticket":"json"}`)); err != nil {
		t.Fatal(err)
	}
	rs, err := q.PendingRequests(t.Context(), 1)
	if err != nil || len(rs) != 2 {
		t.Fatalf("pending requests: %v %+v", err, rs)
	}
	// A fetch that meets only the garbage answers empty-handed; the
	// writer fetches again, and so does this test.
	var ds []seckill.Delivery
	for deadline := time.Now().Add(5 * time.Second); len(ds) < 2 && time.Now().Before(deadline); {
		got, err := q.Fetch(t.Context(), 10, time.Second)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		ds = append(ds, got...)
	}
	if len(ds) != 2 {
		t.Fatalf("fetched %d deliveries, want 2", len(ds))
	}
	if r := ds[1].Request(); r.UserID != 2 || r.Ticket != "json" {
		t.Fatalf("json request: %+v", r)
	}
	for _, d := range ds {
		if err := d.Ack(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := q.Pending(t.Context(), 0); n != 0 {
		t.Fatalf("pending %d after acking all and terminating the garbage", n)
	}
}

func TestCodec(t *testing.T) {
	for _, r := range []seckill.OrderRequest{
		{SaleID: 1, UserID: 1},
		{SaleID: 1<<63 - 1, UserID: 1<<63 - 1, PriceCents: -1 << 63, Ticket: "ünïcode ticket", At: time.Unix(-1<<40, 999_999_999)},
		{SaleID: 5, UserID: 6, PriceCents: 1 << 62, At: time.Now()},
	} {
		got, err := decodeRequest(appendRequest(nil, r))
		if err != nil {
			t.Fatalf("decode %+v: %v", r, err)
		}
		if got.SaleID != r.SaleID || got.UserID != r.UserID || got.PriceCents != r.PriceCents ||
			got.Ticket != r.Ticket || !got.At.Equal(r.At) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
	}
	for _, b := range [][]byte{nil, {}, {2, 1, 1}, {wireV1}, {wireV1, 1}, {wireV1, 0, 1, 0, 0, 0}, []byte("{"), []byte("{}")} {
		if _, err := decodeRequest(b); err == nil {
			t.Fatalf("decode %q: no error", b)
		}
	}
	batch := []seckill.OrderRequest{{SaleID: 3, UserID: 1, Ticket: "a"}, {SaleID: 3, UserID: 2, Ticket: strings.Repeat("x", 300)}}
	got, err := decodeMessage(appendBatch(nil, batch))
	if err != nil || len(got) != 2 || got[0].UserID != 1 || got[1].Ticket != batch[1].Ticket {
		t.Fatalf("batch round trip: %+v, %v", got, err)
	}
	if got, err := decodeMessage(appendRequest(nil, batch[0])); err != nil || len(got) != 1 || got[0].Ticket != "a" {
		t.Fatalf("lone request as a message: %+v, %v", got, err)
	}
	good := appendBatch(nil, batch)
	for _, b := range [][]byte{{wireBatch}, {wireBatch, 5, wireV1}, {wireBatch, 0}, {wireBatch, 2, '{', '}'},
		good[:len(good)-1], append(append([]byte{}, good...), 1)} {
		if rs, err := decodeMessage(b); err == nil {
			t.Fatalf("decode message %q: no error, %+v", b, rs)
		}
	}
}

// TestKill9 publishes from a child process, fetches part without acking,
// kills it with SIGKILL and checks that a new process gets every request.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("MQ_KILL9_DIR"); dir != "" {
		kill9Child(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "MQ_KILL9_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Before the child fetched anything: a message it held unacked is
	// not due again by AckWait before started + kill9AckWait.
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	ready := false
	for lines.Scan() {
		if lines.Text() == "READY" {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not get ready")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	q := open(t, Config{DataDir: dir, AckWait: kill9AckWait})
	defer q.Close()
	if n, err := q.Pending(t.Context(), 0); err != nil || n != kill9N {
		t.Fatalf("pending after kill -9: %d, %v; want %d", n, err, kill9N)
	}
	// Redelivery of the unacked half comes at once, not after AckWait:
	// every request is fetched within half of it from the child's start
	// (the server may resend a little before a whole AckWait is out).
	seen := map[int64]bool{}
	for len(seen) < kill9N && time.Since(started) < kill9AckWait/2 {
		ds, err := q.Fetch(t.Context(), 500, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			seen[d.Request().UserID] = true
			if err := d.Ack(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != kill9N {
		t.Fatalf("after kill -9 fetched %d distinct requests within half of AckWait (%v) from the child's start, want %d: the unacked ones waited for AckWait", len(seen), kill9AckWait, kill9N)
	}
}

// kill9AckWait is the queue's AckWait in TestKill9: long enough that the
// child's work and the refetch fit in half of it on a loaded machine, so
// that a message seen by then was not redelivered by AckWait.
const kill9N, kill9AckWait = 1000, 2 * time.Minute

func kill9Child(dir string) {
	q, err := Open(context.Background(), Config{DataDir: dir, AckWait: kill9AckWait})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(1)
	}
	var failed atomic.Bool
	done := make(chan struct{})
	for w := range 10 {
		go func() {
			defer func() { done <- struct{}{} }()
			for u := w; u < kill9N; u += 10 {
				if err := q.Publish(context.Background(), seckill.OrderRequest{SaleID: 1, UserID: int64(u + 1)}); err != nil {
					fmt.Fprintln(os.Stderr, "child publish:", err)
					failed.Store(true)
				}
			}
		}()
	}
	for range 10 {
		<-done
	}
	if failed.Load() {
		os.Exit(1)
	}
	// Hold half of them fetched and unacked.
	got := 0
	for got < kill9N/2 {
		ds, err := q.Fetch(context.Background(), kill9N/2-got, time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child fetch:", err)
			os.Exit(1)
		}
		got += len(ds)
	}
	fmt.Println("READY")
	time.Sleep(time.Hour)
}

// TestAckAll checks that once AckAll returns the server has removed every
// message, not only the last.
func TestAckAll(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	const n = 2000
	for u := int64(1); u <= n; u++ {
		if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: u}); err != nil {
			t.Fatal(err)
		}
	}
	for left := int64(n); left > 0; {
		ds, err := q.Fetch(t.Context(), 500, time.Second)
		if err != nil || len(ds) == 0 {
			t.Fatalf("fetch: %v, %d", err, len(ds))
		}
		if err := q.AckAll(t.Context(), ds); err != nil {
			t.Fatal(err)
		}
		left -= int64(len(ds))
		if got, err := q.Pending(t.Context(), 1); err != nil || got != left {
			t.Fatalf("pending after AckAll: %d, %v; want %d", got, err, left)
		}
	}
	if err := q.AckAll(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

// TestPublishGroupsConcurrentRequests: concurrent publishes of a sale share
// messages, none larger than MaxBatch, and every request is counted and
// listed once.
func TestPublishGroupsConcurrentRequests(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir(), MaxBatch: 16})
	defer q.Close()
	const n = 2000
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for u := next.Add(1); u <= n; u = next.Add(1) {
				if err := q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1 + u%2, UserID: u, Ticket: fmt.Sprint("T", u)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	info, err := q.stream.Info(t.Context(), jetstream.WithSubjectFilter(q.subjPfx+">"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs >= n/2 {
		t.Errorf("%d messages for %d concurrent requests: publishes were not grouped", info.State.Msgs, n)
	}
	for subj := range info.State.Subjects {
		if _, k, ok := q.parseSubject(subj); !ok || k > 16 {
			t.Errorf("subject %q: more than MaxBatch requests or unparsable", subj)
		}
	}
	for sale, want := range map[int64]int64{0: n, 1: n / 2, 2: n / 2} {
		if got, err := q.Pending(t.Context(), sale); err != nil || got != want {
			t.Errorf("pending %d: %d, %v; want %d", sale, got, err, want)
		}
	}
	rs, err := q.PendingRequests(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, r := range rs {
		if r.SaleID != 2 || r.UserID%2 != 1 || seen[r.UserID] || r.Ticket != fmt.Sprint("T", r.UserID) {
			t.Fatalf("pending request %+v (seen before: %v)", r, seen[r.UserID])
		}
		seen[r.UserID] = true
	}
	if len(seen) != n/2 {
		t.Fatalf("%d pending requests of sale 2, want %d", len(seen), n/2)
	}
}

// publishBatch stores one message holding rs, as Publish does for
// requests published together.
func publishBatch(t *testing.T, q *Queue, rs ...seckill.OrderRequest) {
	t.Helper()
	if _, err := q.js.Publish(t.Context(), q.batchSubject(rs[0].SaleID, len(rs)), appendBatch(nil, rs)); err != nil {
		t.Fatal(err)
	}
}

func batchOf(sale int64, users ...int64) []seckill.OrderRequest {
	rs := make([]seckill.OrderRequest, len(users))
	for i, u := range users {
		rs[i] = seckill.OrderRequest{SaleID: sale, UserID: u, Ticket: fmt.Sprint("T", u)}
	}
	return rs
}

func wantPending(t *testing.T, q *Queue, sale, want int64) {
	t.Helper()
	if got, err := q.Pending(t.Context(), sale); err != nil || got != want {
		t.Fatalf("pending %d: %d, %v; want %d", sale, got, err, want)
	}
}

func fetch(t *testing.T, q *Queue, max int) []seckill.Delivery {
	t.Helper()
	ds, err := q.Fetch(t.Context(), max, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func users(ds []seckill.Delivery) []int64 {
	var us []int64
	for _, d := range ds {
		us = append(us, d.Request().UserID)
	}
	return us
}

// TestMessageLeavesWithItsLastAck: a message's requests beyond a Fetch's
// max come with the next Fetch, and the message stays pending until every
// request in it is acked.
func TestMessageLeavesWithItsLastAck(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	publishBatch(t, q, batchOf(1, 1, 2, 3)...)
	publishBatch(t, q, batchOf(1, 4)...)
	wantPending(t, q, 1, 4)

	first := fetch(t, q, 2)
	if got := users(first); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("first fetch: users %v, want [1 2]", got)
	}
	if err := q.AckAll(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	wantPending(t, q, 1, 4) // user 3 of the first message is not acked

	second := fetch(t, q, 10)
	if got := users(second); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("second fetch: users %v, want [3 4] (the rest of the first message, then the next)", got)
	}
	if err := second[0].Ack(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantPending(t, q, 1, 1)
	if err := second[0].Ack(t.Context()); err != nil { // twice is a no-op
		t.Fatal(err)
	}
	wantPending(t, q, 1, 1)
	if err := q.AckAll(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	wantPending(t, q, 0, 0)
}

// TestNakRedeliversWholeMessage: a nak of one request delivers every
// request of its message again, also those acked meanwhile (the writer
// settles them again as no-ops).
func TestNakRedeliversWholeMessage(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	publishBatch(t, q, batchOf(1, 1, 2, 3)...)
	ds := fetch(t, q, 10)
	if err := ds[0].Ack(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ds[1].Nak(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ds[2].Ack(t.Context()); err != nil { // after the nak: no effect
		t.Fatal(err)
	}
	again := fetch(t, q, 10)
	if got := users(again); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("after nak: users %v, want [1 2 3]", got)
	}
	if err := q.AckAll(t.Context(), again); err != nil {
		t.Fatal(err)
	}
	wantPending(t, q, 0, 0)
}

// TestCloseReturnsKeptRequests: requests fetched beyond max and not yet
// handed out are delivered again after a reopen, at once.
func TestCloseReturnsKeptRequests(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Config{DataDir: dir})
	publishBatch(t, q, batchOf(1, 1, 2, 3)...)
	if got := users(fetch(t, q, 1)); !slices.Equal(got, []int64{1}) {
		t.Fatalf("fetch: %v", got)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, Config{DataDir: dir})
	defer q.Close()
	wantPending(t, q, 1, 3)
	if got := users(fetch(t, q, 10)); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("after reopen: %v, want [1 2 3]", got)
	}
}

// TestPublishGivenUpBeforeSending: a caller whose context ends while its
// request waits for the sale's message on its way is left out of the next
// message, which still carries the others.
func TestPublishGivenUpBeforeSending(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	// As if a message of sale 1 were on its way, in the only slot.
	q.pmu.Lock()
	q.maxInFlight = 1
	q.psales[1] = &saleQueue{inflight: 1}
	q.pmu.Unlock()

	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- q.Publish(ctx, seckill.OrderRequest{SaleID: 1, UserID: 1}) }()
	stays := make(chan error, 1)
	go func() { stays <- q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: 2}) }()
	waitFor(t, func() bool {
		q.pmu.Lock()
		defer q.pmu.Unlock()
		w := q.psales[1].waiting
		return len(w) == 1 && len(w[0].reqs) == 2
	})
	cancel()
	if err := <-gaveUp; seckill.ErrorCode(err) != seckill.EBusy || errors.Is(err, seckill.ErrMaybeStored) {
		t.Fatalf("given up: %v, want busy and not maybe stored", err)
	}
	// The message on its way is done: the waiting batch goes.
	if b := q.finished(1); b != nil {
		q.sendFrom(b)
	}
	if err := <-stays; err != nil {
		t.Fatal(err)
	}
	rs, err := q.PendingRequests(t.Context(), 1)
	if err != nil || len(rs) != 1 || rs[0].UserID != 2 {
		t.Fatalf("pending requests %+v, %v; want user 2 only", rs, err)
	}
	q.pmu.Lock()
	left := len(q.psales)
	q.pmu.Unlock()
	if left != 0 {
		t.Fatalf("%d sales still marked publishing", left)
	}
}

// TestPublishGroupOutlivesFirstCaller: the first caller of a waiting group
// leaves at its (short) deadline before the group is sent; the group must
// still go under the deadline of the caller that stays, not the departed
// one's, which has passed.
func TestPublishGroupOutlivesFirstCaller(t *testing.T) {
	q := open(t, Config{DataDir: t.TempDir()})
	defer q.Close()
	// As if a message of sale 1 were on its way, in the only slot.
	q.pmu.Lock()
	q.maxInFlight = 1
	q.psales[1] = &saleQueue{inflight: 1}
	q.pmu.Unlock()

	// The first caller's deadline is 100 ms away, but it gives up only once
	// the second has joined its group: with a real timeout the first could
	// leave before the second joins on a loaded machine, and then there
	// would be no group to outlive it.
	cctx, giveUp := context.WithCancel(t.Context())
	defer giveUp()
	short := pastDeadline{cctx, time.Now().Add(100 * time.Millisecond)}
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- q.Publish(short, seckill.OrderRequest{SaleID: 1, UserID: 1}) }()
	waitFor(t, func() bool {
		q.pmu.Lock()
		defer q.pmu.Unlock()
		w := q.psales[1].waiting
		return len(w) == 1 && len(w[0].reqs) == 1
	})
	long, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stays := make(chan error, 1)
	go func() { stays <- q.Publish(long, seckill.OrderRequest{SaleID: 1, UserID: 2}) }()
	waitFor(t, func() bool {
		q.pmu.Lock()
		defer q.pmu.Unlock()
		w := q.psales[1].waiting
		return len(w) == 1 && len(w[0].reqs) == 2
	})
	time.Sleep(time.Until(short.at))
	giveUp()
	if err := <-gaveUp; seckill.ErrorCode(err) != seckill.EBusy || errors.Is(err, seckill.ErrMaybeStored) {
		t.Fatalf("short caller: %v, want busy and not maybe stored", err)
	}
	// The message on its way is done: the waiting group goes, after its
	// first caller's deadline.
	if b := q.finished(1); b != nil {
		q.sendFrom(b)
	}
	if err := <-stays; err != nil {
		t.Fatalf("the caller that stayed: %v", err)
	}
	rs, err := q.PendingRequests(t.Context(), 1)
	if err != nil || len(rs) != 1 || rs[0].UserID != 2 {
		t.Fatalf("pending requests %+v, %v; want user 2 only", rs, err)
	}
}

// pastDeadline is a context that reports deadline at but is done only when
// its parent is.
type pastDeadline struct {
	context.Context
	at time.Time
}

func (c pastDeadline) Deadline() (time.Time, bool) { return c.at, true }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
