package inmem

// AfterRefresh makes c call f each time a background lookup has settled
// its entry, so tests learn when it is done instead of sleeping.
func AfterRefresh(c *SessionCache, f func()) { c.afterRefresh = f }

// SetGuardMax bounds g to max keys per shard (tests).
func SetGuardMax(g *LoginGuard, max int) { g.max = max }

// GuardKeys counts the keys g holds.
func GuardKeys(g *LoginGuard) int {
	n := 0
	for i := range g.shard {
		g.shard[i].mu.Lock()
		n += len(g.shard[i].keys)
		g.shard[i].mu.Unlock()
	}
	return n
}
