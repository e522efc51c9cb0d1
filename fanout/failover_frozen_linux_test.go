//go:build linux

package fanout_test

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestFailoverFrozenLeaderProcess: the leading bridge runs in a separate OS
// process (as in TestFailoverKillsLeaderProcess) and is frozen with SIGSTOP
// in the middle of a read and write workload on four pods, until the hot
// standby has taken its lease (which it does only after seeing it unchanged
// for LeaseTTL) and every pod is on the new epoch; then SIGCONT. The lease
// deadline fences the resumed leader: the guard admits no GetRecords of its
// reader after the takeover, every message of its epoch a pod gets after
// the new epoch is counted Stale (tap), and it steps down once a renewal
// finds the lease taken. Never more than two readers; the history checker
// finds no read staler than T among at least 10^4.
func TestFailoverFrozenLeaderProcess(t *testing.T) {
	r := startChildFailover(t)
	pods, taps, g, c, b2, epoch, w := r.pods, r.taps, r.guard, r.child, r.standby, r.epoch, r.workload
	if childReader(t, g).Admitted == 0 {
		t.Fatal("the child's reads did not go through the guard")
	}
	frozen := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the child stopped", c.stopped)
	// Taken only once unchanged for LeaseTTL: the child is frozen past its lease.
	waitFor(t, "bridge-2 to lead", func() bool { return b2.Stats().Leader })
	took := time.Since(frozen)
	s2 := b2.Stats()
	if s2.Epoch <= epoch {
		t.Fatalf("takeover epoch %d, old %d: want higher", s2.Epoch, epoch)
	}
	waitFor(t, "every pod on the new epoch", func() bool {
		for _, p := range pods {
			if p.src.PodStats().Epoch != s2.Epoch {
				return false
			}
		}
		return true
	})
	if !c.stopped() {
		t.Fatal("the child ran before SIGCONT")
	}
	atTakeover := childReader(t, g) // the child is still frozen: nothing of it in flight
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	c.await(t, c.steppedDown, "step down after SIGCONT")
	t.Logf("leader frozen: bridge-2 led epoch %d after %v; the child resumed after %v and stepped down %v later (%s)",
		s2.Epoch, took, resumed.Sub(frozen), time.Since(resumed), c.last.Load())
	if cr := childReader(t, g); cr != atTakeover {
		t.Fatalf("the guard admitted reads of the deposed leader after the takeover: %+v -> %+v", atTakeover, cr)
	}
	waitFor(t, "every pod trusted", allTrusted(pods))
	for w.reads.Load() < minCheckedReads {
		w.awaitReads(t, minCheckedReads/10)
	}
	w.awaitReads(t, minCheckedReads/5)
	w.finish(t)
	for i, tp := range taps {
		tp.check(t, i)
	}
	if st := g.Stats(); st.Refused != 0 || st.MaxReaders != 2 {
		t.Fatalf("reader-limit guard: %+v; want two readers at most (the leader and the standby), none refused", st)
	}
	if err := c.exit(t); err != nil {
		t.Fatalf("the child bridge: %v", err)
	}
	t.Logf("guard: %+v; child reader %+v; bridge-2 %+v", g.Stats(), childReader(t, g), b2.Stats())
}

// stopped reports whether the child is stopped by a signal (Linux: state T
// in /proc/PID/stat).
func (c *child) stopped() bool {
	b, err := os.ReadFile("/proc/" + itoa(c.cmd.Process.Pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && len(b) > i+2 && b[i+2] == 'T'
}
