package demo

import (
	"sort"
	"sync"
	"time"

	"github.com/tieredcache/tieredcache/internal/history"
)

// onlineChecker judges a node's reads with history.Checker while the run goes
// on. A read is judged only after checkDelay, because a node can read a value
// written elsewhere before that write's acknowledgement has been relayed here
// (judged at once it would look "never written"); finish judges the rest once
// every node's acknowledgements are in.
//
// A write that failed may still have landed (a timeout after DynamoDB applied
// it): such writes are "uncertain". A read that returns one is counted as
// unverified rather than judged, since the checker's rules need
// acknowledgement times.
type onlineChecker struct {
	h     *history.Checker
	delay time.Duration

	mu         sync.Mutex
	pending    []history.Read
	uncertain  map[string]map[string]bool // key -> values ("" = a delete)
	unverified int
}

const maxViolationSamples = 5

func newOnlineChecker(t, delay time.Duration) *onlineChecker {
	return &onlineChecker{
		h:         history.NewChecker(t, initialState),
		delay:     delay,
		uncertain: map[string]map[string]bool{},
	}
}

func (c *onlineChecker) addAck(a ackMsg) {
	if a.Uncertain {
		c.mu.Lock()
		m := c.uncertain[a.Key]
		if m == nil {
			m = map[string]bool{}
			c.uncertain[a.Key] = m
		}
		m[a.Value] = true
		c.mu.Unlock()
		return
	}
	c.h.AddWrite(history.Write{
		Node: a.Node, Key: a.Key, Value: a.Value,
		Start: time.Unix(0, a.Start), End: time.Unix(0, a.End),
	})
}

func (c *onlineChecker) addRead(r history.Read) {
	c.mu.Lock()
	c.pending = append(c.pending, r)
	c.mu.Unlock()
}

// checkDue judges the reads that ended more than delay before now.
func (c *onlineChecker) checkDue(now time.Time) {
	cut := now.Add(-c.delay)
	c.mu.Lock()
	// Reads are appended when they end, so pending is (nearly) sorted by End.
	n := sort.Search(len(c.pending), func(i int) bool { return !c.pending[i].End.Before(cut) })
	due := append([]history.Read(nil), c.pending[:n]...)
	c.pending = append(c.pending[:0], c.pending[n:]...)
	c.mu.Unlock()
	c.judge(due)
}

// finish judges every read still pending.
func (c *onlineChecker) finish() {
	c.mu.Lock()
	due := c.pending
	c.pending = nil
	c.mu.Unlock()
	c.judge(due)
}

func (c *onlineChecker) judge(reads []history.Read) {
	for _, r := range reads {
		c.mu.Lock()
		v := r.Value
		if !r.Found {
			v = ""
		}
		skip := c.uncertain[r.Key][v]
		if skip {
			c.unverified++
		}
		c.mu.Unlock()
		if skip {
			continue
		}
		c.h.CheckRead(r)
	}
}

// counts returns reads judged, violations and unverified reads, plus a few
// violations spelled out (the demo's keys and values are synthetic).
func (c *onlineChecker) counts() (checked, violations, unverified int, samples []string) {
	vs := c.h.Violations()
	for i := 0; i < len(vs) && i < maxViolationSamples; i++ {
		samples = append(samples, vs[i].String())
	}
	c.mu.Lock()
	unverified = c.unverified
	c.mu.Unlock()
	return c.h.Reads(), len(vs), unverified, samples
}
