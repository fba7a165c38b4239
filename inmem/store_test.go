package inmem_test

import (
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

// TestContractSessionCache holds the cache to the contract of the store it
// claims to be, in front of a store that passes it, with a TTL long enough
// that every answer after the first may come from the cache.
func TestContractSessionCache(t *testing.T) {
	contract.TestSessionStore(t, func(*testing.T) seckill.SessionStore {
		return inmem.NewSessionCache(inmem.NewStore(), time.Hour, 100)
	})
}

func TestContractSessionCacheRevalidating(t *testing.T) {
	contract.TestSessionStore(t, func(*testing.T) seckill.SessionStore {
		return inmem.NewSessionCache(inmem.NewStore(), time.Hour, 100).Revalidate(2 * time.Hour)
	})
}
