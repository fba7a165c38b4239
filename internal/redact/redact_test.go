package redact

import (
	"errors"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/shop", "postgres://app:xxxxx@db:5432/shop"},
		// The live leak: a password holding "@" was cut at the first one.
		{"postgres://seckill:p@ssw0rd@db:5432/shop?sslmode=require", "postgres://seckill:xxxxx@db:5432/shop?sslmode=require"},
		{"postgres://u:a:b@c@h/d", "postgres://u:xxxxx@h/d"},
		{"postgres://u:p%40ss@h/d", "postgres://u:xxxxx@h/d"},
		{"postgres://u:p,w/x?y@h/d", "postgres://u:xxxxx@h/d"},
		{"postgres://h/d?user=u&password=s3cret&sslmode=disable", "postgres://h/d?user=u&password=xxxxx&sslmode=disable"},
		{"postgres://h/d?sslpassword=k&sslkey=/etc/k.pem", "postgres://h/d?sslpassword=xxxxx&sslkey=xxxxx"},
		{"mysql://root@127.0.0.1:3306/test", "mysql://root@127.0.0.1:3306/test"},
		{"mysql://root:pw@127.0.0.1:3306/test?parseTime=true", "mysql://root:xxxxx@127.0.0.1:3306/test?parseTime=true"},
		{"root:pw@tcp(127.0.0.1:3306)/test?parseTime=true", "root:xxxxx@tcp(127.0.0.1:3306)/test?parseTime=true"},
		{"root@unix(/run/mysqld.sock)/test", "root@unix(/run/mysqld.sock)/test"},
		{"redis://:pw@a:6379,b:6379", "redis://:xxxxx@a:6379,b:6379"},
		{"redis://u:s3cret@h:1,h2:2/0", "redis://u:xxxxx@h:1,h2:2/0"},
		{"redis://pw@h:6379", "redis://xxxxx@h:6379"},
		{"rediss://h:6379/0?password=pw&autopipeline=true", "rediss://h:6379/0?password=xxxxx&autopipeline=true"},
		// A NATS token is the whole userinfo.
		{"nats://TOKEN@host:4222", "nats://xxxxx@host:4222"},
		{"nats://u:p@n1:4222,nats://u:q@n2:4222", "nats://u:xxxxx@n1:4222,nats://u:xxxxx@n2:4222"},
		{"nats://tok1@n1:4222, nats://tok2@n2:4222", "nats://xxxxx@n1:4222, nats://xxxxx@n2:4222"},
		{"nats://n1:4222,n2:4222", "nats://n1:4222,n2:4222"},
		{"nats://h:4222?token=abc", "nats://h:4222?token=xxxxx"},
		{"sqlite:data/seckill.db", "sqlite:data/seckill.db"},
		{"sqlite:/srv/a@b/seckill.db", "sqlite:/srv/a@b/seckill.db"},
		{"", ""},
		{"localhost:6379", "localhost:6379"},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestError(t *testing.T) {
	url := "postgres://u:p%40ss w@h/d?password=qtok"
	err := errors.New(`cannot connect to "postgres://u:p%40ss w@h/d" as u with p@ss w and qtok`)
	got := Error(err, url).Error()
	for _, leak := range []string{"p%40ss w", "p@ss w", "qtok"} {
		if strings.Contains(got, leak) {
			t.Errorf("Error leaks %q: %s", leak, got)
		}
	}
	plain := errors.New("connection refused")
	if Error(plain, url) != plain {
		t.Error("an error showing no secret was replaced")
	}
	if Error(nil, url) != nil {
		t.Error("Error(nil) is not nil")
	}
}

// FuzzURL builds URLs from fuzzed parts, alone and in lists, and checks
// that the password, a token, or a secret query value never shows in what
// URL returns, nor in an error scrubbed by Error.
func FuzzURL(f *testing.F) {
	f.Add("postgres", "seckill", "p@ssw0rd", "db:5432", "/shop?sslmode=disable")
	f.Add("nats", "", "tok:en@x", "n1:4222", "")
	f.Add("redis", "u", "a,b", "h:1,h2:2", "/0")
	f.Add("mysql", "root", "x?y#z", "127.0.0.1:3306", "/test?parseTime=true")
	f.Fuzz(func(t *testing.T, scheme, user, pass, host, tail string) {
		if len(pass) < 3 || !validScheme(scheme) {
			t.Skip()
		}
		// A userinfo holding ",scheme://" reads as a list: out of scope.
		if schemeStart.MatchString(user + ":" + pass + "@") {
			t.Skip()
		}
		u2 := strings.ReplaceAll(user, ":", "") + "x"
		qpass := strings.NewReplacer("&", "", "#", "").Replace(pass)
		cases := []struct{ in, ideal string }{
			{scheme + "://" + user + ":" + pass + "@" + host + tail, scheme + "://" + user + ":" + Mask + "@" + host + tail},
			{scheme + "://" + u2 + ":" + pass + "@" + host + tail + "," + scheme + "://a:b@c", scheme + "://" + u2 + ":" + Mask + "@" + host + tail + "," + scheme + "://a:" + Mask + "@c"},
			{scheme + "://" + host + "?password=" + qpass, scheme + "://" + host + "?password=" + Mask},
		}
		if !namedUser[strings.ToLower(scheme)] && !strings.Contains(pass, ":") {
			cases = append(cases, struct{ in, ideal string }{scheme + "://" + pass + "@" + host + tail, scheme + "://" + Mask + "@" + host + tail})
		}
		for _, c := range cases {
			if strings.Contains(c.ideal, pass) {
				continue // the password is also written where it is no secret
			}
			if out := URL(c.in); strings.Contains(out, pass) {
				t.Fatalf("URL(%q) = %q leaks %q", c.in, out, pass)
			}
			if strings.Contains("open "+c.ideal+": failed", pass) {
				continue // the message around the URL holds it (a password like "00:" after host "00")
			}
			if out := Error(errors.New("open "+c.in+": failed"), c.in).Error(); strings.Contains(out, pass) {
				t.Fatalf("Error for %q = %q leaks %q", c.in, out, pass)
			}
		}
	})
}

func validScheme(s string) bool {
	if s == "" || strings.EqualFold(s, "sqlite") || strings.EqualFold(s, "file") {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '.' || r == '-')) {
			return false
		}
	}
	return true
}
