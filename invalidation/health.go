package invalidation

import (
	"context"
	"math"
	"time"
)

// monitor re-evaluates trust often enough to notice, within about a tenth of
// StaleAfter, that it lapsed (for Stats and the log: readers see the lapse by
// themselves, from the clock).
func (c *Consumer) monitor(ctx context.Context) {
	defer c.wg.Done()
	every := min(max(c.o.StaleAfter/10, 5*time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.refreshTrust()
		}
	}
}

// refreshTrust recomputes trust from every shard's caught-up time and gives
// it to the sink: until = the oldest caught-up time + StaleAfter. Readers
// compare until with their own clock reading, so trust lapses by itself when
// no poll completes in time, even when this goroutine does not run (a frozen
// process); this only moves until and says so when trust is withdrawn or
// granted again. Granting after a withdrawal or a lapse flushes first. It
// holds sinkMu throughout, so that a concurrent loss (which resets a shard's
// caught-up time before taking sinkMu) is ordered after any trust it grants.
func (c *Consumer) refreshTrust() {
	c.sinkMu.Lock()
	defer c.sinkMu.Unlock()
	now := c.nanos(c.o.Now())
	c.hmu.Lock()
	ok := c.streamOK && len(c.followed)+len(c.pending) > 0
	oldest := int64(math.MaxInt64)
	note := func(caught int64) {
		if caught == 0 {
			ok = false
		}
		oldest = min(oldest, caught)
	}
	for _, r := range c.followed {
		note(r.caught.Load())
	}
	for _, caught := range c.pending {
		note(caught)
	}
	c.hmu.Unlock()
	if !ok {
		c.st.oldest.Store(0)
		c.withdrawTrust()
		return
	}
	c.st.oldest.Store(oldest)
	until := oldest + int64(c.o.StaleAfter)
	if until <= now {
		c.withdrawTrust()
		return
	}
	if c.granted && (!c.trusted || c.until <= now) {
		// Trust was withdrawn, or lapsed unseen (this process was frozen, or
		// starved): what was cached meanwhile may be stale. A lapse is
		// withdrawn first, so the sink sees withdraw, flush, grant.
		c.withdrawTrust()
		c.st.flushes.Add(1)
		c.o.Sink.Flush(ErrRecovered)
	}
	c.trusted, c.granted = true, true
	if until != c.until {
		c.until = until
		c.o.Sink.TrustUntil(c.at(until))
	}
}

// withdrawTrust tells the sink, at once, to stop trusting. Callers hold sinkMu.
func (c *Consumer) withdrawTrust() {
	if c.trusted {
		c.trusted, c.until = false, 0
		c.o.Sink.TrustUntil(time.Time{})
	}
}
