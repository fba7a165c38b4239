package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:s3cret@db:5432/shop":    "postgres://app:xxxxx@db:5432/shop",
		"redis://:pw@a:6379,b:6379":             "redis://:xxxxx@a:6379,b:6379",
		"mysql://root@127.0.0.1:3306/test":      "mysql://root@127.0.0.1:3306/test",
		"nats://u:p@n1:4222,nats://u:q@n2:4222": "nats://u:xxxxx@n1:4222,nats://u:xxxxx@n2:4222",
		"sqlite:data/seckill.db":                "sqlite:data/seckill.db",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

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
	m.Config.Secret, m.Config.AdminPassword, m.Config.DB = "topsecret", "adminpw", "postgres://u:dbpw@h/d"
	line := fmt.Sprint(m.Config.masked()...)
	for _, leak := range []string{"topsecret", "adminpw", "dbpw"} {
		if strings.Contains(line, leak) {
			t.Fatalf("config log leaks %q: %s", leak, line)
		}
	}
}
