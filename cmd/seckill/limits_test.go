package main

import (
	"context"
	"net/http"
	"testing"
)

// TestServeReadBudget: --user-read-rate and --user-read-burst reach the
// per-user bucket of reads (429 past the burst, the user's purchases
// untouched is httpapi's test), and --user-read-rate 0 turns it off.
func TestServeReadBudget(t *testing.T) {
	for _, tc := range []struct {
		rate   string
		reads  int
		status int // of the read after them
	}{
		{"0.001", 3, 429},
		{"0", 60, 200},
	} {
		t.Run("rate "+tc.rate, func(t *testing.T) {
			m := NewMain()
			if err := m.ParseFlags([]string{"--addr", "127.0.0.1:0", "--ops-addr", "off", "--data", t.TempDir(), "--log-level", "error",
				"--admin-phone", "19900000000", "--admin-password", "admin-password",
				"--user-read-rate", tc.rate, "--user-read-burst", "3"}); err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background()); err != nil {
				_ = m.Close()
				t.Fatal(err)
			}
			defer m.Close()
			var login struct{ Token string }
			apiCall(t, "POST", m.URL()+"/api/sessions", "", map[string]string{"phone": "19900000000", "password": "admin-password"}, 200, &login)
			for range tc.reads {
				apiCall(t, "GET", m.URL()+"/api/me", login.Token, nil, 200, nil)
			}
			code, header, _, err := apiSend(http.DefaultClient, "GET", m.URL()+"/api/me", login.Token, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.status {
				t.Fatalf("read %d: %d, want %d", tc.reads+1, code, tc.status)
			}
			if code == 429 && header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
}
