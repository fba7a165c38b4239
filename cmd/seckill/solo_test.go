package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestSoloSessionCacheLogout: without Redis, `seckill serve` keeps sessions
// in memory for minutes without asking the store again (it is the only
// instance, so every change passes through its cache). A logout must still
// take effect at once, and a second token of the same user stays valid.
func TestSoloSessionCacheLogout(t *testing.T) {
	m := runEmbedded(t)
	defer m.Close()
	do := func(method, path, token, body string) int {
		t.Helper()
		code, _, _, err := apiSend(http.DefaultClient, method, m.URL()+path, token, body, nil)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	login := func() string {
		t.Helper()
		req, _ := http.NewRequest("POST", m.URL()+"/api/sessions", strings.NewReader(`{"phone":"19900000000","password":"admin-password"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
			t.Fatalf("login: %d %v", resp.StatusCode, err)
		}
		return out.Token
	}
	a, b := login(), login()
	for range 3 { // cached after the first
		if got := do("GET", "/api/me", a, ""); got != 200 {
			t.Fatalf("me: %d", got)
		}
	}
	if got := do("DELETE", "/api/sessions", a, ""); got != 204 {
		t.Fatalf("logout: %d", got)
	}
	if got := do("GET", "/api/me", a, ""); got != 401 {
		t.Fatalf("me after logout: %d, want 401", got)
	}
	if got := do("GET", "/api/me", b, ""); got != 200 {
		t.Fatalf("the other session after logout: %d, want 200", got)
	}
}
