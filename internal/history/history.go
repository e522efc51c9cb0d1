// Package history checks a recorded history of cache writes and reads
// against the staleness bound T, for tests, benchmarks and the demo.
//
// Values are opaque strings; every write must write a value never written
// before (e.g. "node3/17"), so that a read names the write it observed.
//
// Rule: a read of key k that started at s and returned value w (or nothing)
// violates the bound if some write w2 of k started after w's write was
// acknowledged (so w2 is certainly newer) and was itself acknowledged before
// s - T. A read of a value no write produced is a violation too. Writes whose
// calls overlap are concurrent: either order is accepted.
package history

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Write is one acknowledged write (Set or Delete: Delete writes Value "").
type Write struct {
	Node       string
	Key, Value string
	Start, End time.Time
}

// Read is one completed read. Found is false for a miss (ErrNotFound).
type Read struct {
	Node       string
	Key, Value string
	Found      bool
	Start, End time.Time
}

// Violation explains one bad read.
type Violation struct {
	Read   Read
	Newer  *Write // the write the read should have seen; nil if Value was never written
	Reason string
}

func (v Violation) String() string {
	if v.Newer == nil {
		return fmt.Sprintf("node %s read key %q: %s", v.Read.Node, v.Read.Key, v.Reason)
	}
	return fmt.Sprintf("node %s read key %q at %s: %s (newer write by node %s acknowledged %v before the read began)",
		v.Read.Node, v.Read.Key, v.Read.Start.Format(time.RFC3339Nano), v.Reason, v.Newer.Node, v.Read.Start.Sub(v.Newer.End))
}

// Checker accumulates writes and checks reads, online or at the end. It is
// safe for concurrent use. Initial is the value a key has before any write
// (what the loader returns), per key; "" with found=false means absent.
type Checker struct {
	T       time.Duration
	Initial func(key string) (value string, found bool)

	mu         sync.Mutex
	writes     map[string][]Write // per key, in order of End
	byValue    map[string]Write   // key+"\x00"+value -> write
	reads      int
	violations []Violation
}

// NewChecker returns a checker for bound t.
func NewChecker(t time.Duration, initial func(key string) (string, bool)) *Checker {
	return &Checker{T: t, Initial: initial, writes: map[string][]Write{}, byValue: map[string]Write{}}
}

// AddWrite records an acknowledged write.
func (c *Checker) AddWrite(w Write) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.writes[w.Key]
	i := sort.Search(len(ws), func(i int) bool { return ws[i].End.After(w.End) })
	ws = append(ws, Write{})
	copy(ws[i+1:], ws[i:])
	ws[i] = w
	c.writes[w.Key] = ws
	c.byValue[w.Key+"\x00"+w.Value] = w
}

// CheckRead checks r against the writes known so far and records a
// violation if it breaks the rule. It reports whether r was fine. Judge a
// read only once every write it may have observed has been added (a reader
// can see a value before its writer records the acknowledgement): otherwise
// that value looks "never written".
func (c *Checker) CheckRead(r Read) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	v, bad := c.judge(r)
	if bad {
		c.violations = append(c.violations, v)
	}
	return !bad
}

func (c *Checker) judge(r Read) (Violation, bool) {
	observed, known := c.observed(r)
	if !known {
		if r.Found {
			return Violation{Read: r, Reason: fmt.Sprintf("returned a value never written (%q)", r.Value)}, true
		}
		return Violation{Read: r, Reason: "returned not found, but the key exists and was never deleted"}, true
	}
	deadline := r.Start.Add(-c.T)
	for _, w := range c.writes[r.Key] {
		if !w.End.Before(deadline) {
			break // sorted by End: no later write counts
		}
		if observed.IsZero() || w.Start.After(observed) {
			w := w
			return Violation{Read: r, Newer: &w, Reason: fmt.Sprintf("returned an older state than %q", w.Value)}, true
		}
	}
	return Violation{}, false
}

// observed is the acknowledgement time of the write r saw (zero: the initial
// state), choosing the most favourable reading; known is false when no write
// and no initial state explains r.
func (c *Checker) observed(r Read) (time.Time, bool) {
	var iv string
	var ifound bool
	if c.Initial != nil {
		iv, ifound = c.Initial(r.Key)
	}
	if r.Found {
		if w, ok := c.byValue[r.Key+"\x00"+r.Value]; ok && w.Value != "" {
			return w.End, true
		}
		return time.Time{}, ifound && iv == r.Value
	}
	if d := c.latestDeleteEnd(r.Key); !d.IsZero() {
		return d, true
	}
	return time.Time{}, !ifound
}

// latestDeleteEnd is the latest acknowledgement of a delete of key: a read of
// "absent" is judged as observing that one (the most favourable reading).
func (c *Checker) latestDeleteEnd(key string) time.Time {
	var t time.Time
	for _, w := range c.writes[key] {
		if w.Value == "" && w.End.After(t) {
			t = w.End
		}
	}
	return t
}

// Reads is the number of reads checked.
func (c *Checker) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// Violations returns the violations found so far.
func (c *Checker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Violation(nil), c.violations...)
}
