package inmem_test

import (
	"context"
	"testing"
	"time"

	"seckill"
	"seckill/inmem"
	"seckill/internal/contract"
)

func TestContractStores(t *testing.T) {
	contract.TestStores(t, func(*testing.T) contract.Stores {
		s := inmem.NewStore()
		return contract.Stores{Users: s, Sessions: s, Sales: s, Orders: s}
	})
}

func TestContractLifecycle(t *testing.T) {
	contract.TestLifecycle(t, func(*testing.T) contract.LifecycleStores {
		s := inmem.NewStore()
		return contract.LifecycleStores{
			Stores:    contract.Stores{Users: s, Sessions: s, Sales: s, Orders: s},
			Lifecycle: s,
		}
	})
}

// TestStoreClock: the store's shared clock is the one it was given, as
// SQL gives times back.
func TestStoreClock(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6789012, time.FixedZone("x", 3600))
	got, err := inmem.NewStoreClock(func() time.Time { return at }).Now(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := at.UTC().Truncate(time.Millisecond); !got.Equal(want) || got.Location() != time.UTC || got.Nanosecond() != want.Nanosecond() {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}

// TestContractSessionCache holds the cache to the contract of the store it
// claims to be, in front of a store that passes it, with a TTL long enough
// that every answer after the first may come from the cache.
func TestContractSessionCache(t *testing.T) {
	contract.TestSessionStore(t, func(*testing.T) seckill.SessionStore {
		return inmem.NewSessionCache(inmem.NewStore(), time.Hour, 100)
	})
}

func TestContractSessionCacheRefreshing(t *testing.T) {
	contract.TestSessionStore(t, func(*testing.T) seckill.SessionStore {
		return inmem.NewSessionCache(inmem.NewStore(), time.Hour, 100).RefreshAfter(time.Nanosecond)
	})
}
