package inmem

// AfterRefresh makes c call f each time a background lookup has settled
// its entry, so tests learn when it is done instead of sleeping.
func AfterRefresh(c *SessionCache, f func()) { c.afterRefresh = f }
