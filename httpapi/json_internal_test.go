package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"seckill"
)

// TestWriteJSONUnencodable: a value JSON cannot carry (a time past year
// 9999) is a 500 with a JSON error body, not the status asked with an
// empty body.
func TestWriteJSONUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, map[string]any{"ends_at": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	if rec.Code != http.StatusInternalServerError || !json.Valid(rec.Body.Bytes()) || !bytes.Contains(rec.Body.Bytes(), []byte(`"internal"`)) {
		t.Fatalf("writeJSON of an unencodable value: %d %q; want 500 internal as JSON", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	writeJSON(rec, http.StatusCreated, map[string]int{"id": 1})
	if rec.Code != http.StatusCreated || rec.Body.String() != "{\"id\":1}\n" {
		t.Fatalf("writeJSON: %d %q", rec.Code, rec.Body)
	}
}

// TestErrorBodyCache: a cached body is the errorBody's JSON encoding,
// escapes included, and the cache stops growing at its bound (messages
// that name ids are many) while still answering every message right.
func TestErrorBodyCache(t *testing.T) {
	c := &bodyCache{m: map[[2]string][]byte{}}
	for i := range maxCachedBodies + 50 {
		msg := fmt.Sprintf(`no order %d <"&\>`, i)
		for range 2 { // encoded, then (while below the bound) cached
			var want errorBody
			want.Error.Code, want.Error.Message = "not_found", msg
			var buf bytes.Buffer
			if err := json.NewEncoder(&buf).Encode(want); err != nil {
				t.Fatal(err)
			}
			if got := c.body("not_found", msg); !bytes.Equal(got, buf.Bytes()) {
				t.Fatalf("body %s, want %s", got, buf.Bytes())
			}
		}
	}
	if len(c.m) != maxCachedBodies {
		t.Fatalf("cache holds %d bodies, want the bound %d", len(c.m), maxCachedBodies)
	}
}

// TestWriteQueued: the 202 body built by hand is, byte for byte and header
// for header, what writeJSON writes for the same ticket, for the engine's
// tickets and for any other (which take writeJSON itself).
func TestWriteQueued(t *testing.T) {
	for _, ticket := range []string{"01JDQ3ZC5H7K2M9NPQRS", "T1", "", `a"b\c`, "<script>", "票", "a b"} {
		fast, slow := httptest.NewRecorder(), httptest.NewRecorder()
		writeQueued(fast, ticket)
		writeJSON(slow, http.StatusAccepted, map[string]string{"status": seckill.ResultQueued, "ticket": ticket})
		if fast.Code != http.StatusAccepted || !bytes.Equal(fast.Body.Bytes(), slow.Body.Bytes()) ||
			fast.Header().Get("Content-Type") != slow.Header().Get("Content-Type") {
			t.Errorf("ticket %q: %d %q %q, want %d %q %q", ticket, fast.Code, fast.Body, fast.Header().Get("Content-Type"),
				slow.Code, slow.Body, slow.Header().Get("Content-Type"))
		}
		var got struct{ Status, Ticket string }
		if err := json.Unmarshal(fast.Body.Bytes(), &got); err != nil || got.Status != seckill.ResultQueued || got.Ticket != ticket {
			t.Errorf("ticket %q: body %q decodes to %+v, %v", ticket, fast.Body, got, err)
		}
	}
}

// TestWriteErrorClientGone: a backend call cut because the client went
// away (its request's context ended) is no internal error: not logged as
// one, not a 500 (found by review: logins abandoned after 20 ms were
// counted and logged as 500s), but a 499 with a warning that names the
// call cut (a hung backend must still show). A cancellation while the
// request is alive still is an internal error.
func TestWriteErrorClientGone(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	cut := fmt.Errorf("create session: begin: %w", context.Canceled)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	writeError(rec, httptest.NewRequest("POST", "/api/sessions", nil).WithContext(ctx), log, cut)
	if rec.Code != StatusClientClosed || !bytes.Contains(logged.Bytes(), []byte("level=WARN")) || !bytes.Contains(logged.Bytes(), []byte("context canceled")) ||
		bytes.Contains(logged.Bytes(), []byte("level=ERROR")) {
		t.Fatalf("client gone: %d %q, log %q; want 499 and a warning naming the cut call", rec.Code, rec.Body, logged.String())
	}

	rec = httptest.NewRecorder()
	writeError(rec, httptest.NewRequest("POST", "/api/sessions", nil), log, cut)
	if rec.Code != http.StatusInternalServerError || !bytes.Contains(logged.Bytes(), []byte("internal error")) {
		t.Fatalf("cancelled with the client there: %d, log %q; want 500 logged", rec.Code, logged.String())
	}
}
