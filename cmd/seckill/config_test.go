package main

import (
	"fmt"
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
