package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// apiSend sends one request to the API through hc: with a bearer token if
// token is set, the JSON content type if body is (the API refuses a body
// of any other type), and edit applied last. It returns the answer's
// status, header and body. Every whole-server test talks to the API
// through it.
func apiSend(hc *http.Client, method, url, token, body string, edit func(*http.Request)) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if edit != nil {
		edit(req)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, err
}

// apiCall sends body (if not nil) as JSON to url, fails t unless the answer
// has status, and decodes the answer into out (if not nil).
func apiCall(t testing.TB, method, url, token string, body any, status int, out any) {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	code, _, answer, err := apiSend(http.DefaultClient, method, url, token, string(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if code != status {
		t.Fatalf("%s %s: %d (%s), want %d", method, url, code, bytes.TrimSpace(answer), status)
	}
	if out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, url, answer, err)
		}
	}
}

// trickle writes data to c one byte every interval, as a slow client
// does, until it is written, a write fails, or stop is called.
func trickle(c net.Conn, data string, every time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; i < len(data); i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte{data[i]}); err != nil {
				return
			}
		}
	}()
	return func() { close(done) }
}
