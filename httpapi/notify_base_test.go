package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestNotifyBaseIPv6Zone: without --public-url the notify URL is built
// from the connection's local address. Reached through an IPv6
// link-local address (fe80::…%eth0, the zone being the interface), the
// zone must be written %25eth0 (RFC 6874), or the notify URL is no URL and
// every pay request of such a buyer fails; IPv4 and plain IPv6 addresses
// come out as host:port.
func TestNotifyBaseIPv6Zone(t *testing.T) {
	s := &Server{}
	r := httptest.NewRequest(http.MethodPost, "/api/orders/1/pay", nil)
	local := &net.TCPAddr{IP: net.ParseIP("fe80::fc:ff:fe00:1"), Zone: "eth0", Port: 8080}
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(local)))
	notify := s.notifyBase(r) + "/api/payments/notify"
	u, err := url.Parse(notify)
	if err != nil {
		t.Fatalf("notify URL %q is no URL: %v", notify, err)
	}
	if u.Hostname() != "fe80::fc:ff:fe00:1%eth0" || u.Port() != "8080" {
		t.Errorf("notify URL %q: host %q port %q; want the local address fe80::fc:ff:fe00:1%%eth0 port 8080", notify, u.Hostname(), u.Port())
	}
	for _, tc := range []struct {
		addr *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 8080}, "http://[::1]:8080"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/api/orders/1/pay", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(tc.addr)))
		if got := s.notifyBase(r); got != tc.want {
			t.Errorf("notifyBase for %v = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
