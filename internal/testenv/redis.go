package testenv

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// OwnRedis is a redis-server of the test's own on a spare loopback port,
// persisting only when told (SAVE) to dump.rdb in its directory, and
// restarted from that file after a Kill: a Redis that comes back with
// older data, for drills the shared test server cannot be put through.
type OwnRedis struct {
	t    testing.TB
	bin  string
	dir  string
	Port string
	cmd  *exec.Cmd
}

// StartRedis starts an OwnRedis, killed when the test ends; without a
// redis-server binary the test is skipped (failed in CI).
func StartRedis(t testing.TB) *OwnRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server is not installed; the test restarts a Redis of its own")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	s := &OwnRedis{t: t, bin: bin, dir: t.TempDir(), Port: port}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// URL is the server's redis:// URL.
func (s *OwnRedis) URL() string { return "redis://127.0.0.1:" + s.Port }

// Start runs the server, loading dump.rdb if there is one, and waits until
// it answers.
func (s *OwnRedis) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "--port", s.Port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	probe := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + s.Port, MaxRetries: -1})
	defer probe.Close()
	deadline := time.Now().Add(10 * time.Second)
	for probe.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %s did not start (see %s)", s.Port, s.dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once, writing nothing (like a crash).
func (s *OwnRedis) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Raw returns a plain client (none of the engine's checks), to look at or
// change what the server holds, closed when the test ends.
func (s *OwnRedis) Raw() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + s.Port})
	s.t.Cleanup(func() { c.Close() })
	return c
}
