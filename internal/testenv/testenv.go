// Package testenv tells tests where the integration servers are. A test
// that needs one calls URL; without it the test is skipped with a message
// saying what to set — except under CI=true, where every integration suite
// must run and a missing server fails the test.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// examples are what the variables look like on a development machine.
var examples = map[string]string{
	"SECKILL_TEST_POSTGRES":      "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
	"SECKILL_TEST_MYSQL":         "mysql://root@127.0.0.1:3306/test",
	"SECKILL_TEST_REDIS":         "redis://127.0.0.1:6379",
	"SECKILL_TEST_REDIS_CLUSTER": "redis://127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 (scripts/redis-cluster.sh start DIR)",
	"SECKILL_TEST_NATS":          "nats://127.0.0.1:4222",
}

// URL returns the value of the environment variable name, the URL of a
// test server, or skips the test (fails it in CI) when it is unset.
func URL(t testing.TB, name string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	msg := fmt.Sprintf("%s is not set: set it to a test server's URL", name)
	if ex, ok := examples[name]; ok {
		msg += ", e.g. " + ex
	}
	Missing(t, msg+" (.ci/services.sh starts them all)")
	return ""
}

// Missing skips the test because what it needs is not here, or fails it in
// CI, where nothing may be skipped.
func Missing(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatal("required in CI: " + why)
	}
	t.Skip("skipped: " + why)
}

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }
