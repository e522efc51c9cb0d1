package invalidation_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/invalidation"
)

type evKind string

const (
	evChanged   evKind = "changed"
	evFlush     evKind = "flush"
	evTrusted   evKind = "trusted"
	evUntrusted evKind = "untrusted"
)

type ev struct {
	kind   evKind
	change invalidation.Change
	reason error
	at     time.Time
}

func (e ev) String() string {
	switch e.kind {
	case evChanged:
		return "changed:" + e.change.PartitionKey
	case evFlush:
		return fmt.Sprintf("flush(%v)", e.reason)
	}
	return string(e.kind)
}

// recSink records every call and lets tests await a condition without sleeping.
type recSink struct {
	mu     sync.Mutex
	evs    []ev
	notify chan struct{}
	inCall atomic.Bool // detects concurrent calls, which the consumer promises never to make
	// trusting is the sink's trust state (TrustUntil records transitions only).
	trusting atomic.Bool
	t        testing.TB
}

func newSink(t testing.TB) *recSink { return &recSink{notify: make(chan struct{}), t: t} }

func (s *recSink) add(e ev) {
	if !s.inCall.CompareAndSwap(false, true) {
		s.t.Errorf("sink called concurrently")
	}
	defer s.inCall.Store(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	e.at = time.Now()
	s.evs = append(s.evs, e)
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *recSink) Changed(c invalidation.Change) { s.add(ev{kind: evChanged, change: c}) }
func (s *recSink) Flush(reason error)            { s.add(ev{kind: evFlush, reason: reason}) }

// TrustUntil records transitions only: evTrusted when trust is granted after
// none or a withdrawal, evUntrusted when it is withdrawn (renewals of a held
// trust are not events).
func (s *recSink) TrustUntil(until time.Time) {
	was := s.trusting.Swap(!until.IsZero())
	switch {
	case !until.IsZero() && !was:
		s.add(ev{kind: evTrusted})
	case until.IsZero() && was:
		s.add(ev{kind: evUntrusted})
	}
}

func (s *recSink) events() []ev {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ev(nil), s.evs...)
}

// await waits until cond holds over the events so far, or fails after timeout.
func (s *recSink) await(t testing.TB, what string, timeout time.Duration, cond func([]ev) bool) []ev {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		evs := append([]ev(nil), s.evs...)
		ch := s.notify
		s.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; events: %v", timeout, what, summary(evs))
		}
	}
}

func (s *recSink) awaitKeys(t testing.TB, timeout time.Duration, keys ...string) []ev {
	t.Helper()
	return s.await(t, "keys "+strings.Join(keys, ","), timeout, func(evs []ev) bool {
		seen := map[string]bool{}
		for _, e := range evs {
			if e.kind == evChanged {
				seen[e.change.PartitionKey] = true
			}
		}
		for _, k := range keys {
			if !seen[k] {
				return false
			}
		}
		return true
	})
}

func (s *recSink) awaitKind(t testing.TB, timeout time.Duration, k evKind, reason error) []ev {
	t.Helper()
	return s.await(t, string(k), timeout, func(evs []ev) bool { return indexOf(evs, k, reason, 0) >= 0 })
}

// indexOf finds the first event of kind k (and reason, for flushes) at or after from.
func indexOf(evs []ev, k evKind, reason error, from int) int {
	for i := from; i < len(evs); i++ {
		if evs[i].kind == k && (reason == nil || errors.Is(evs[i].reason, reason)) {
			return i
		}
	}
	return -1
}

func keyIndex(evs []ev, key string) int {
	for i, e := range evs {
		if e.kind == evChanged && e.change.PartitionKey == key {
			return i
		}
	}
	return -1
}

func count(evs []ev, k evKind) int {
	n := 0
	for _, e := range evs {
		if e.kind == k {
			n++
		}
	}
	return n
}

func summary(evs []ev) string {
	var b strings.Builder
	for i, e := range evs {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(e.String())
	}
	return b.String()
}
