package invalidation

import (
	"context"
	"time"
)

// monitor re-evaluates health often enough to notice staleness within about a
// tenth of StaleAfter.
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
			c.evalHealth()
		}
	}
}

// evalHealth updates Healthy and Lag and moves trust. It holds sinkMu across
// the evaluation so that a concurrent loss (which resets a shard's caught-up
// time before taking sinkMu) is ordered after any trust it grants.
func (c *Consumer) evalHealth() {
	c.sinkMu.Lock()
	defer c.sinkMu.Unlock()
	now := c.o.Now().UnixNano()
	c.hmu.Lock()
	healthy := c.streamOK && len(c.followed)+len(c.pending) > 0
	var lag int64
	note := func(caught int64) {
		if caught == 0 {
			healthy = false
			return
		}
		lag = max(lag, now-caught)
	}
	for _, r := range c.followed {
		note(r.caught.Load())
	}
	for _, caught := range c.pending {
		note(caught)
	}
	c.hmu.Unlock()
	if lag > int64(c.o.StaleAfter) {
		healthy = false
	}
	c.st.lag.Store(lag)
	c.st.healthy.Store(healthy)
	switch {
	case !healthy && c.trusted:
		c.trusted = false
		c.o.Sink.SetTrusted(false)
	case healthy && !c.trusted:
		c.st.flushes.Add(1)
		c.o.Sink.Flush(ErrRecovered)
		c.trusted = true
		c.o.Sink.SetTrusted(true)
	}
}
