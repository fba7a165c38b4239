package mq

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"seckill/internal/testenv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"seckill"
	"seckill/internal/contract"
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
func externalURL(t *testing.T) string {
	t.Helper()
	return testenv.URL(t, "SECKILL_TEST_NATS")
}

func uniquePrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	return "TEST_" + hex.EncodeToString(b)
}

func deleteStream(t *testing.T, q *Queue) {
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
	// The stream is full: nothing is discarded, the publish fails.
	if got := seckill.ErrorCode(q.Publish(t.Context(), seckill.OrderRequest{SaleID: 1, UserID: 3})); got != seckill.EBusy {
		t.Fatalf("full stream: code %q, want busy", got)
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
	ds, err := q.Fetch(t.Context(), 10, time.Second)
	if err != nil || len(ds) != 2 {
		t.Fatalf("fetch: %v, %d deliveries, want 2", err, len(ds))
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

	q := open(t, Config{DataDir: dir})
	defer q.Close()
	if n, err := q.Pending(t.Context(), 0); err != nil || n != kill9N {
		t.Fatalf("pending after kill -9: %d, %v; want %d", n, err, kill9N)
	}
	seen := map[int64]bool{}
	start := time.Now()
	for len(seen) < kill9N && time.Since(start) < 10*time.Second {
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
		t.Fatalf("after kill -9 fetched %d distinct requests, want %d", len(seen), kill9N)
	}
	// Redelivery of the unacked half came at once, not after AckWait.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("redelivery after restart took %v", d)
	}
}

const kill9N = 1000

func kill9Child(dir string) {
	q, err := Open(context.Background(), Config{DataDir: dir})
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
