package l1

import "time"

// Test-only write helpers: tiered writes through Fill and SetFenced alone.

// Set stores v for key as a write by this node (tests only): it bumps the key's fence (so
// fills that began earlier fail) and replaces any entry. ttl as for Fill.
// It returns whether v is stored. If not (refused, dropped, closed), key
// has no entry afterwards: a write never leaves an older value behind (a
// closed Cache has no entries).
func (c *Cache[V]) Set(key string, v V, size int64, ttl time.Duration) bool {
	_, s, ok := c.lock(key)
	if !ok {
		return false
	}
	defer s.mu.Unlock()
	s.gen.Add(1)
	return c.store(key, v, size, ttl)
}

// Wait blocks until every store Ristretto has buffered is applied (tests
// only). The write methods already return only once their own value is
// visible to Get (or known refused): Wait only settles Ristretto's
// bookkeeping (costs, deletes). After Close it returns at once.
func (c *Cache[V]) Wait() {
	c.life.RLock()
	defer c.life.RUnlock()
	if !c.closed.Load() {
		c.rc.Wait()
	}
}
