package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestParseFlagsEnvFallback(t *testing.T) {
	t.Setenv("SECKILL_DATA", "/srv/sale")
	t.Setenv("SECKILL_USER_RATE", "7.5")
	t.Setenv("SECKILL_ADDR", ":9999")
	m := NewMain()
	if err := m.ParseFlags([]string{"--addr", ":1234"}); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.DataDir != "/srv/sale" || c.UserRate != 7.5 || c.Addr != ":1234" {
		t.Fatalf("config %+v: env must fill what flags leave unset, flags win", c)
	}
	t.Setenv("SECKILL_BATCH", "many")
	if err := NewMain().ParseFlags(nil); err == nil || !strings.Contains(err.Error(), "SECKILL_BATCH") {
		t.Fatalf("bad env value: %v", err)
	}
	if err := NewMain().ParseFlags([]string{"extra"}); err == nil {
		t.Fatal("stray argument accepted")
	}
}

func TestMaskedConfig(t *testing.T) {
	m := NewMain()
	m.Config.Secret, m.Config.AdminPassword = "topsecret", "adminpw"
	// The live leaks: a password holding "@", and a NATS token.
	m.Config.DB = "postgres://seckill:dbp@ssw0rd@db:5432/shop?sslmode=require"
	m.Config.NATS = "nats://natstoken1@n1:4222,nats://natstoken2@n2:4222"
	m.Config.Redis = "redis://:redis:pw@r1:6379,r2:6379"
	line := fmt.Sprint(m.Config.masked()...)
	for _, leak := range []string{"topsecret", "adminpw", "dbp@ssw0rd", "ssw0rd", "natstoken", "redis:pw"} {
		if strings.Contains(line, leak) {
			t.Fatalf("config log leaks %q: %s", leak, line)
		}
	}
	for _, host := range []string{"db:5432/shop", "n1:4222", "n2:4222", "r1:6379,r2:6379"} {
		if !strings.Contains(line, host) {
			t.Errorf("config log lost %q: %s", host, line)
		}
	}
}

// TestTrustedProxies: --trusted-proxies reaches the per-IP limit (a client
// behind the proxy cannot escape it by writing X-Forwarded-For itself), the
// deprecated --trust-proxy means loopback, and a bad list stops the start.
func TestTrustedProxies(t *testing.T) {
	for _, flags := range [][]string{{"--trusted-proxies", "127.0.0.1/32"}, {"--trust-proxy"}} {
		t.Run(flags[0], func(t *testing.T) {
			m := NewMain()
			args := append([]string{"--addr", "127.0.0.1:0", "--ops-addr", "off", "--data", t.TempDir(), "--log-level", "error",
				"--ip-rate", "0.001", "--ip-burst", "2"}, flags...)
			if err := m.ParseFlags(args); err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background()); err != nil {
				_ = m.Close()
				t.Fatal(err)
			}
			defer m.Close()
			login := func(xff string) int {
				t.Helper()
				req, _ := http.NewRequest("POST", m.URL()+"/api/sessions", strings.NewReader(`{"phone":"13000000000","password":"whatever1"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Forwarded-For", xff)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			for i, want := range []int{401, 401, 429} {
				if got := login(fmt.Sprintf("6.6.6.%d, 198.51.100.7", i)); got != want {
					t.Fatalf("login %d with a spoofed X-Forwarded-For: %d, want %d", i+1, got, want)
				}
			}
			if got := login("198.51.100.8"); got != 401 {
				t.Fatalf("another client behind the proxy: %d, want 401", got)
			}
		})
	}

	m := NewMain()
	if err := m.ParseFlags([]string{"--data", t.TempDir(), "--trusted-proxies", "10.0.0.0/8,proxy.internal"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "proxy.internal") {
		_ = m.Close()
		t.Fatalf("Run with a bad --trusted-proxies: %v", err)
	}
}

// TestRunRefusesBadNumbers: flags a server cannot run with are refused by
// Run, naming the flag, before anything is opened.
func TestRunRefusesBadNumbers(t *testing.T) {
	for _, args := range [][]string{
		{"--writers", "0"},
		{"--sweep-every", "0s"},
		{"--pay-window", "0s"},
		{"--pay-window", "-5s"},
		{"--secret", "too short"},
		{"--nats-replicas", "3"},
		{"--session-cache", "0"},
		{"--user-read-burst", "0"},
		{"--max-header-bytes", "0"},
		{"--db-timeout", "-1s"},
	} {
		m := NewMain()
		if err := m.ParseFlags(append(args, "--data", t.TempDir(), "--addr", "127.0.0.1:0")); err != nil {
			t.Fatal(err)
		}
		err := m.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			m.Close()
			t.Errorf("%v: Run = %v, want an error naming %s", args, err, args[0])
		}
	}
}

// TestWeakAdminPassword: serve warns about the README's example admin
// password and short ones (found by review: the README's one-liner starts
// an admin whose password is on the page), not about a long secret.
func TestWeakAdminPassword(t *testing.T) {
	for pw, weak := range map[string]bool{
		"change-me-please":             true,
		"admin-password":               false,
		"short-pw":                     true,
		"十一个字符的管理员密码":                  true, // 11 characters, 33 bytes
		"a long and secret passphrase": false,
	} {
		if got := weakAdminPassword(pw); got != weak {
			t.Errorf("weakAdminPassword(%q) = %v, want %v", pw, got, weak)
		}
	}
}
