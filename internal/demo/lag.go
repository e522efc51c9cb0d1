package demo

import (
	"sort"
	"sync"
	"time"
)

// ackLag measures, on one node, the time from a write being acknowledged (on
// any node) to the first stream eviction of that key here after it: from then
// on this node cannot serve what the key held before the write (an L1 miss
// reads the table, which has the write, and a fill that began earlier is
// fenced off). This is the number the staleness bound is about.
// tiered.Stats' own lag starts at the stream record's
// ApproximateCreationDateTime, which AWS rounds to the second.
//
// The acknowledgement and the eviction may reach the node in either order
// (the ack is relayed by the parent, the eviction comes from the stream), so
// both are remembered per key.
type ackLag struct {
	mu        sync.Mutex
	pending   map[string]int64 // key -> End of its earliest write not yet followed by an eviction
	lastEvict map[string]int64 // key -> time of its latest eviction
	samples   []time.Duration
	max       time.Duration
	ambiguous int
}

const maxLagSamples = 1 << 18

func newAckLag() *ackLag {
	return &ackLag{pending: map[string]int64{}, lastEvict: map[string]int64{}}
}

func (l *ackLag) ack(key string, start, end int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev := l.lastEvict[key]; {
	case ev >= end: // evicted before the relayed ack got here
		l.sample(time.Duration(ev - end))
		return
	case ev >= start:
		// Evicted while the write was in flight: by this write's record (the
		// stream can beat the writer's HTTP response) or by an earlier one.
		// Ambiguous, so not measured rather than guessed.
		l.ambiguous++
		return
	}
	if p, ok := l.pending[key]; !ok || end < p {
		l.pending[key] = end // an earlier pending write is the one still waiting
	}
}

// evicted is the cache's OnInvalidate hook.
func (l *ackLag) evicted(key string, _ time.Time) {
	now := time.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastEvict[key] = now
	if end, ok := l.pending[key]; ok && end <= now {
		delete(l.pending, key)
		l.sample(time.Duration(now - end))
	}
}

func (l *ackLag) sample(d time.Duration) {
	l.max = max(l.max, d)
	if len(l.samples) < maxLagSamples {
		l.samples = append(l.samples, d)
	}
}

// summary returns the sample count, p50, p99 and max.
func (l *ackLag) summary() (n int, p50, p99, mx time.Duration) {
	l.mu.Lock()
	s := append([]time.Duration(nil), l.samples...)
	mx = l.max
	l.mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0, mx
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return len(s), q(0.50), q(0.99), mx
}
