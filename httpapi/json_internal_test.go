package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

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
