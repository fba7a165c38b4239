// Package addrkey names the wider address blocks a per-address limit also
// counts a client under.
//
// The limits count an IPv6 client as its /64 (a provider hands one
// subscriber at least that much), but a subscriber often holds a /56 and
// an organisation a /48: 256 and 65,536 /64s, each with a budget of its
// own (found by review: 2,560 registrations at once from one /56). So a
// /64 also counts against its /56 and its /48, whose budgets are Scale
// times the /64's: a /56 gets 4 /64s' worth, a /48 16, and someone with a
// /48 gets 16 times one address's budget, not 65,536 times.
package addrkey

import "net/netip"

// Width is a wider IPv6 block a /64 also counts under.
type Width struct {
	Bits  int // prefix length
	Scale int // its budget, in /64 budgets
}

// Widths are the blocks every IPv6 /64 also counts under, narrowest first.
var Widths = []Width{{Bits: 56, Scale: 4}, {Bits: 48, Scale: 16}}

// Wider returns the keys of Widths for key, an IPv6 /64 as the limits
// write it ("2001:db8:1:2::/64"), in the order of Widths; nil for any
// other key (an IPv4 address counts alone).
func Wider(key string) []string {
	p, err := netip.ParsePrefix(key)
	if err != nil || p.Bits() != 64 || !p.Addr().Is6() || p.Addr().Is4In6() {
		return nil
	}
	keys := make([]string, len(Widths))
	for i, w := range Widths {
		keys[i] = netip.PrefixFrom(p.Addr(), w.Bits).Masked().String()
	}
	return keys
}
