package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
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

// TestServeWaitsForADatabaseLostAfterItsOpen: a database that goes away
// after the instance opened it, before the admin account is ensured, is
// waited for too. Found by review: NATS down at the start held the
// instance after its database opened; the database was cut meanwhile, and
// the admin's account then ended the start ("database unavailable").
func TestServeWaitsForADatabaseLostAfterItsOpen(t *testing.T) {
	pg := freshDatabase(t, integration(t, "SECKILL_TEST_POSTGRES"))
	natsURL := integration(t, "SECKILL_TEST_NATS")
	pu, err := url.Parse(pg)
	if err != nil {
		t.Fatal(err)
	}
	nu, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	pgPort, natsPort := freePortIn(t, 27000, 27999), freePortIn(t, 27000, 27999)
	pgReal, natsReal := pu.Host, nu.Host
	pu.Host, nu.Host = "127.0.0.1:"+pgPort, "127.0.0.1:"+natsPort
	cut := forward(t, pgPort, pgReal)
	m := NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DataDir = t.TempDir()
	m.Config.LogLevel = "error"
	m.Config.Ops = OpsConfig{Addr: "127.0.0.1:0"}
	m.Config.DB, m.Config.NATS = pu.String(), nu.String()
	m.Config.QueuePrefix = randomName("WAIT_")
	m.Config.AdminPhone, m.Config.AdminPassword = "19900000000", "admin-password-long"
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	t.Cleanup(func() { _ = m.Close() })
	time.Sleep(1500 * time.Millisecond) // the database opened; NATS is awaited
	cut()                               // the database goes away
	forward(t, natsPort, natsReal)      // NATS answers: on to the admin's account
	select {
	case err := <-ran:
		t.Fatalf("gave up on a database lost after its open: %v", err)
	case <-time.After(3 * time.Second):
	}
	forward(t, pgPort, pgReal) // the database is back
	if err := <-ran; err != nil {
		t.Fatalf("once the database was back: %v", err)
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
// target, until the test ends or cut is called: cut closes the listener
// and every connection it joined.
func forward(t *testing.T, port, target string) (cut func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  bool
	)
	keep := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if done {
			c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	cut = func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		done = true
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(cut)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", target)
				if err != nil || !keep(c) || !keep(b) {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c); b.Close() }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	return cut
}
