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

// nat64 is the well-known prefix of NAT64 (RFC 6052): 64:ff9b::a.b.c.d is
// the IPv4 client a.b.c.d, reached through a translator.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Unwrap returns the IPv4 address an IPv6 one stands for: IPv4-mapped
// (::ffff:a.b.c.d) or through NAT64's well-known prefix; a itself
// otherwise. Counted as IPv6, every IPv4 client behind one translator
// shared a single /64 (found by review: ten registrations from
// 64:ff9b::1.2.3.4 refused 64:ff9b::5.6.7.8).
func Unwrap(a netip.Addr) netip.Addr {
	if a.Is4In6() {
		return a.Unmap()
	}
	if nat64.Contains(a) {
		b := a.As16()
		return netip.AddrFrom4([4]byte(b[12:16]))
	}
	return a
}
