package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"seckill/rdb"
	"seckill/sqldb"
)

// TestServeWaitsForUnreachableBackends: an instance started while its
// database, Redis or NATS cannot be reached (restarting, a cut link)
// waits for it and starts once it answers. Found by review: an instance
// restarted during a database outage exited at once ("open postgres: …
// unexpected EOF"), as it did with NATS or Redis down, and the load
// balancer was left with fewer instances until someone restarted it.
func TestServeWaitsForUnreachableBackends(t *testing.T) {
	for _, tt := range []struct {
		name, env string
		away      time.Duration // go-redis tries its own dials for a second or two first
	}{
		{"postgres", "SECKILL_TEST_POSTGRES", 1500 * time.Millisecond},
		{"redis", "SECKILL_TEST_REDIS", 5 * time.Second},
		{"nats", "SECKILL_TEST_NATS", 1500 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			target := integration(t, tt.env)
			if tt.name == "postgres" {
				target = freshDatabase(t, target)
			}
			u, err := url.Parse(target)
			if err != nil {
				t.Fatal(err)
			}
			port := freePortIn(t, 27000, 27999)
			real := u.Host
			u.Host = "127.0.0.1:" + port
			m := NewMain()
			m.Config.Addr = "127.0.0.1:0"
			m.Config.DataDir = t.TempDir()
			m.Config.LogLevel = "error"
			m.Config.Ops = OpsConfig{Addr: "127.0.0.1:0"}
			switch tt.name {
			case "postgres":
				m.Config.DB = u.String()
			case "redis":
				m.Config.DB = freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES"))
				m.Config.Redis = u.String()
				m.Config.RedisPrefix = randomName("wait_") + ":"
				m.Config.PublicURL = "http://127.0.0.1"
			case "nats":
				m.Config.NATS = u.String()
				m.Config.QueuePrefix = randomName("WAIT_")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			ran := make(chan error, 1)
			go func() { ran <- m.Run(ctx) }()
			t.Cleanup(func() { _ = m.Close() })
			select {
			case err := <-ran:
				t.Fatalf("started without its %s, or gave up at once: %v", tt.name, err)
			case <-time.After(tt.away):
			}
			forward(t, port, real) // the backend answers now
			if err := <-ran; err != nil {
				t.Fatalf("once its %s answered: %v", tt.name, err)
			}
		})
	}
}

// TestUnreachable tells a backend that cannot be reached from one that
// answered no, on the errors the openers return.
func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := "127.0.0.1:" + freePort(t)
	for name, open := range map[string]func() error{
		"postgres": func() error {
			_, err := sqldb.Open(ctx, "postgres://postgres@"+closed+"/test?sslmode=disable")
			return err
		},
		"mysql": func() error { _, err := sqldb.Open(ctx, "mysql://root@"+closed+"/test"); return err },
		"redis": func() error { _, err := rdb.Open(ctx, "redis://"+closed); return err },
	} {
		if err := open(); err == nil || !unreachable(err) {
			t.Errorf("%s at a closed port: %v, unreachable %v; want true", name, err, unreachable(err))
		}
	}
	if _, err := sqldb.Open(ctx, "sqlite:"+t.TempDir()+"/no/such/dir/x.db"); err == nil || unreachable(err) {
		t.Errorf("sqlite in a missing directory: %v, unreachable %v; want false", err, unreachable(err))
	}
	if err := errors.New("migrations are newer than this binary"); unreachable(err) {
		t.Errorf("%v: unreachable", err)
	}
}

// forward accepts connections on port from now on and joins each to
// target, until the test ends.
func forward(t *testing.T, port, target string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c); b.Close() }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
}
