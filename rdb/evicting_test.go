package rdb

import (
	"context"
	"strings"
	"testing"

	"seckill/internal/testenv"
)

// TestEvictingNodes: a node whose maxmemory-policy is not noeviction is
// named, with its policy; one with noeviction is not.
func TestEvictingNodes(t *testing.T) {
	s := testenv.StartRedis(t)
	c := openClient(t, s.URL())
	ctx := context.Background()
	for _, tc := range []struct {
		policy string
		named  bool
	}{{"noeviction", false}, {"volatile-lru", true}, {"allkeys-lfu", true}} {
		if err := s.Raw().ConfigSet(ctx, "maxmemory-policy", tc.policy).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := c.EvictingNodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if named := len(got) == 1 && strings.HasSuffix(got[0], " "+tc.policy); named != tc.named || !tc.named && len(got) != 0 {
			t.Errorf("policy %s: EvictingNodes = %q, want it named: %v", tc.policy, got, tc.named)
		}
	}
}
