package httpapi

import (
	"fmt"
	"testing"
	"time"
)

// TestBucketsFloodKeepsExhausted: an address that spent its budget stays
// refused while a flood of new addresses fills the map many times over;
// the map stays bounded. Evicting every bucket when full (as it used to)
// gave the flooding address, and every other exhausted one, a fresh
// budget.
func TestBucketsFloodKeepsExhausted(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newIPBuckets(Budget{Rate: 1.0 / 60, Burst: 10})
	l.max = 1000
	l.now = func() time.Time { return now }
	for range 10 {
		if !l.take("198.51.100.7") {
			t.Fatal("refused within the burst")
		}
	}
	if l.take("198.51.100.7") {
		t.Fatal("allowed past the burst")
	}
	for i := range 10 * l.max {
		l.take(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if len(l.m) > l.max {
			t.Fatalf("%d buckets, bound %d", len(l.m), l.max)
		}
	}
	if l.take("198.51.100.7") {
		t.Error("an exhausted address was given a fresh budget by a flood of new addresses")
	}
	if !l.exhausted("198.51.100.7") {
		t.Error("exhausted address forgotten")
	}
}

// TestBucketsEvictionMakesRoom: a full map given a new address makes room
// for a quarter of its bound at once, so that the walk over the whole map
// (under the lock every request of the limit takes) is paid once per
// quarter of new addresses. Dropping only the buckets that happen to be
// full again, when one or two are, left the map full: with buckets
// refilling one after another (a steady stream of addresses, or one who
// paces them), every new address walked all 100,000 buckets again.
func TestBucketsEvictionMakesRoom(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newIPBuckets(Budget{Rate: 1, Burst: 1})
	l.max = 1000
	l.now = func() time.Time { return now }
	// Bucket i is spent at i ms and full again a second later: at any
	// moment past the first second, about one of them is.
	for i := range l.max {
		l.take(fmt.Sprintf("10.0.%d.%d", i>>8, i&255))
		now = now.Add(time.Millisecond)
	}
	l.take("198.51.100.1")
	// The new address takes one of the places made.
	if room := l.max - len(l.m) + 1; room < l.max/4 {
		t.Fatalf("a full map given a new address made room for %d, want at least %d: the next new address walks it all again", room, l.max/4)
	}
}

// TestBucketsIPv6BlocksShare: the /64s of one /56 share 4 budgets, those
// of one /48 16, all or nothing; IPv4 addresses and the /64s of other
// blocks are not touched. Before, each /64 had a budget of its own: one
// subscriber's /56 made 2,560 registrations at once (found by review).
func TestBucketsIPv6BlocksShare(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newIPBuckets(Budget{Rate: 1.0 / 60, Burst: 10})
	l.now = func() time.Time { return now }
	taken := func(keys []string) int {
		n := 0
		for _, k := range keys {
			for l.take(k) {
				n++
			}
		}
		return n
	}
	var slash56, slash48 []string
	for i := range 256 {
		slash56 = append(slash56, fmt.Sprintf("2001:db8:1:%x::/64", 0x100+i)) // 2001:db8:1:100::/56
	}
	for i := range 256 {
		slash48 = append(slash48, fmt.Sprintf("2001:db8:2:%x::/64", i<<8)) // a /64 in each /56 of 2001:db8:2::/48
	}
	if n := taken(slash56); n != 40 {
		t.Errorf("the /64s of one /56 took %d, want 4 × 10", n)
	}
	if n := taken(slash48); n != 160 {
		t.Errorf("the /64s of one /48 took %d, want 16 × 10", n)
	}
	if !l.exhausted("2001:db8:2:ff00::/64") || !l.exhausted("2001:db8:1:1ff::/64") {
		t.Error("a /64 of a spent block is not exhausted")
	}
	if l.exhausted("2001:db8:3::/64") || !l.take("2001:db8:3::/64") {
		t.Error("another /48 was refused")
	}
	for i := range 100 {
		if !l.take(fmt.Sprintf("203.0.113.%d", i)) {
			t.Fatal("an IPv4 address was refused")
		}
	}
}
