package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"seckill/internal/addrkey"
)

// The client IP is what the per-IP limits count, so it must be an address
// the client cannot choose. X-Forwarded-For is written left to right: the
// client writes whatever it likes, and each proxy appends the address it
// received the request from. Only the entries appended by proxies we trust
// are true, so the client is the right-most address that is not one of
// them, and the header counts only when the direct peer is a trusted proxy.

// maxForwardedHops bounds how many X-Forwarded-For entries clientIP
// examines, from the right. A chain of more trusted proxies than that is
// not believed: the peer's address stands.
const maxForwardedHops = 16

// LoopbackProxies trusts a proxy on the same machine (127.0.0.0/8, ::1):
// what the deprecated --trust-proxy now means.
var LoopbackProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// ParseTrustedProxies parses a comma-separated list of CIDRs, such as
// "10.0.0.0/8, fd00::/8"; a bare address is a prefix of one address. An
// empty list trusts nobody. The error names the first entry that is
// neither a CIDR nor an address.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("trusted proxies: %q is neither a CIDR nor an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		// Addresses are compared unmapped: ::ffff:10.0.0.0/104 is 10.0.0.0/8.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// clientIP is the key the per-IP limits count r under: the client's
// address (see clientAddr), an IPv6 one cut to its /64 (see limitKey).
func (s *Server) clientIP(r *http.Request) string {
	return limitKey(clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.cfg.TrustedProxies))
}

// limitKey is the key a per-address limit counts addr under. An IPv4
// address counts alone; an IPv6 address counts as its /64, because a
// provider hands one subscriber at least a /64 (RFC 6177), so one machine
// can take a fresh address for every request: keyed by the full address,
// every limit per address would be a limit per request.
func limitKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if a = addrkey.Unwrap(a); !a.Is6() {
		return a.String() // an IPv4 client, also through NAT64
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// clientAddr returns, as a canonical IP string, the peer's address of
// remote (an "ip:port"), unless the peer is in trusted: then the
// right-most address of the X-Forwarded-For values xff that is not in
// trusted, or the left-most one if all are. An entry on the way that is not
// a plain IP address (garbage, a port, a zone, an empty entry), or more than
// maxForwardedHops of them, makes the header untrustworthy: the peer's
// address stands.
func clientAddr(remote string, xff []string, trusted []netip.Prefix) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil { // not from a TCP listener; keep whatever it is
		if host, _, err := net.SplitHostPort(remote); err == nil {
			return host
		}
		return remote
	}
	peer := ap.Addr().Unmap().WithZone("")
	if len(xff) == 0 || !contains(trusted, peer) {
		return peer.String()
	}
	client, hops := peer, 0
	for i := len(xff) - 1; i >= 0; i-- {
		rest := xff[i]
		for {
			comma := strings.LastIndexByte(rest, ',')
			entry := strings.TrimSpace(rest[comma+1:])
			if hops++; hops > maxForwardedHops {
				return peer.String()
			}
			a, err := netip.ParseAddr(entry)
			if err != nil || a.Zone() != "" {
				return peer.String()
			}
			a = a.Unmap()
			if !contains(trusted, a) {
				return a.String()
			}
			client = a
			if comma < 0 {
				break
			}
			rest = rest[:comma]
		}
	}
	return client.String()
}

// contains reports whether a is in one of the prefixes.
func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// secure reports whether the client reached us over HTTPS: the connection
// is TLS, or Config.CookieSecure says every client does, or the direct peer
// is a trusted proxy whose last X-Forwarded-Proto entry is https (a
// TLS-terminating proxy appends or sets it; the client's own is believed
// from no one else). It decides the session cookie's Secure flag.
func (s *Server) secure(r *http.Request) bool {
	if r.TLS != nil || s.cfg.CookieSecure {
		return true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !contains(s.cfg.TrustedProxies, ap.Addr().Unmap().WithZone("")) {
		return false
	}
	vals := r.Header.Values("X-Forwarded-Proto")
	if len(vals) == 0 {
		return false
	}
	last := vals[len(vals)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}
