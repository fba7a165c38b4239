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
