package httpapi

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 127.0.0.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("10.0.0.9, ", maxForwardedHops) + "10.0.0.9"
	for _, tc := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxies trusted: the header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, nil, "203.0.113.5"},
		{"untrusted peer: the header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, proxies, "203.0.113.5"},
		{"trusted peer, no header", "10.0.0.2:4000", nil, proxies, "10.0.0.2"},
		{"one proxy", "10.0.0.2:4000", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
		{"spoofed entry on the left is skipped", "10.0.0.2:4000", []string{"1.1.1.1, 198.51.100.1"}, proxies, "198.51.100.1"},
		{"spoofed trusted-looking entry on the left", "10.0.0.2:4000", []string{"10.9.9.9, 198.51.100.1"}, proxies, "198.51.100.1"},
		{"two proxies", "127.0.0.1:4000", []string{"1.1.1.1, 198.51.100.1, 10.1.2.3"}, proxies, "198.51.100.1"},
		{"several header lines", "10.0.0.2:4000", []string{"1.1.1.1", "198.51.100.1, 10.1.2.3"}, proxies, "198.51.100.1"},
		{"garbage on the left is never looked at", "10.0.0.2:4000", []string{"<script>, not-an-ip, 198.51.100.1"}, proxies, "198.51.100.1"},
		{"garbage where the client should be", "10.0.0.2:4000", []string{"198.51.100.1, x' OR 1=1"}, proxies, "10.0.0.2"},
		{"address with a port", "10.0.0.2:4000", []string{"198.51.100.1:5555"}, proxies, "10.0.0.2"},
		{"empty entry", "10.0.0.2:4000", []string{"198.51.100.1, "}, proxies, "10.0.0.2"},
		{"empty header", "10.0.0.2:4000", []string{""}, proxies, "10.0.0.2"},
		{"zone", "10.0.0.2:4000", []string{"fe80::1%eth0"}, proxies, "10.0.0.2"},
		{"spaces", "10.0.0.2:4000", []string{"  198.51.100.1  "}, proxies, "198.51.100.1"},
		{"IPv6 client, canonical", "10.0.0.2:4000", []string{"2001:DB8:0:0::0001"}, proxies, "2001:db8::1"},
		{"IPv6 peer and proxy", "[fd00::2]:4000", []string{"2001:db8::7, fd12::1"}, proxies, "2001:db8::7"},
		{"IPv4-mapped client is IPv4", "10.0.0.2:4000", []string{"::ffff:198.51.100.1"}, proxies, "198.51.100.1"},
		{"IPv4-mapped peer is trusted", "[::ffff:10.0.0.2]:4000", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
		{"untrusted IPv6 peer", "[2001:db8::5]:4000", []string{"198.51.100.1"}, proxies, "2001:db8::5"},
		{"every entry trusted: the left-most", "10.0.0.2:4000", []string{"10.0.0.7, 10.0.0.8"}, proxies, "10.0.0.7"},
		{"too many trusted hops", "10.0.0.2:4000", []string{"198.51.100.1, " + long}, proxies, "10.0.0.2"},
		{"a long spoofed chain costs one entry", "10.0.0.2:4000", []string{strings.Repeat("6.6.6.6, ", 10000) + "198.51.100.1"}, proxies, "198.51.100.1"},
		{"not ip:port", "pipe", []string{"198.51.100.1"}, proxies, "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clientAddr(tc.remote, tc.xff, tc.trusted); got != tc.want {
				t.Errorf("clientAddr(%q, %q) = %q, want %q", tc.remote, tc.xff, got, tc.want)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.1.2.3/8 ,192.0.2.7,, ::1, ::ffff:172.16.0.0/108 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "::1/128", "172.16.0.0/12"}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("entry %d: %v, want %s", i, got[i], want[i])
		}
	}
	if got, err := ParseTrustedProxies(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.internal", "10.0.0.1:80", "fe80::1%eth0"} {
		if _, err := ParseTrustedProxies("127.0.0.1," + bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestLimitKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"198.51.100.1", "198.51.100.1"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"::1", "::/64"},
		{"pipe", "pipe"},
		// IPv4 clients behind NAT64 count as themselves, not as one /64.
		{"64:ff9b::1.2.3.4", "1.2.3.4"},
		{"64:ff9b::5.6.7.8", "5.6.7.8"},
	} {
		if got := limitKey(tc.addr); got != tc.want {
			t.Errorf("limitKey(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
