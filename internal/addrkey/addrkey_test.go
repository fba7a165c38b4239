package addrkey

import (
	"net/netip"
	"slices"
	"testing"
)

func TestWider(t *testing.T) {
	for _, c := range []struct {
		key  string
		want []string
	}{
		{"2001:db8:1234:5678::/64", []string{"2001:db8:1234:5600::/56", "2001:db8:1234::/48"}},
		{"2001:db8:1234:56ff::/64", []string{"2001:db8:1234:5600::/56", "2001:db8:1234::/48"}},
		{"203.0.113.7", nil},
		{"2001:db8::1", nil},    // an address, not a /64 key
		{"2001:db8::/56", nil},  // already wide
		{"10.0.0.0/64", nil},    // not IPv6
		{"not an address", nil}, // garbage
		{"", nil},
	} {
		if got := Wider(c.key); !slices.Equal(got, c.want) {
			t.Errorf("Wider(%q) = %q, want %q", c.key, got, c.want)
		}
	}
}

func TestUnwrap(t *testing.T) {
	for in, want := range map[string]string{
		"64:ff9b::102:304":   "1.2.3.4",
		"64:ff9b::5.6.7.8":   "5.6.7.8",
		"::ffff:203.0.113.9": "203.0.113.9",
		"203.0.113.9":        "203.0.113.9",
		"2001:db8::1":        "2001:db8::1",
		"64:ff9b:1::1.2.3.4": "64:ff9b:1::102:304", // the local-use prefix embeds elsewhere: left as it is
	} {
		if got := Unwrap(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Unwrap(%s) = %s, want %s", in, got, want)
		}
	}
}
