package demo

// -freeze: the scenario of issue 8, item 1. Node n1 reads the hot keys in a
// loop, the other nodes write them every 0.5 s, and the parent freezes n1
// (SIGSTOP) for -freeze-for, then resumes it (SIGCONT), -freeze times. A
// frozen process does not know it was frozen: when it resumes, its readers
// may run before anything else in it has noticed that the world moved on.
// The staleness checker judges every read as usual; this file adds what is
// needed to tell whether each resume was really put to the test (the reader
// read before its stream consumer had applied what was written meanwhile)
// and which resume produced which violations.

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/tieredcache/tieredcache/internal/history"
)

// resumeTimeout bounds the wait for the reader to read again after a
// resume; past it the schedule is abandoned (and the run reported failed).
const resumeTimeout = time.Minute

// Freezer states.
const (
	freezeWarmup  = iota // waiting until n1 serves L1 hits with a healthy stream and every writer wrote
	freezeFrozen         // n1 is stopped
	freezeRunning        // n1 resumed: waiting for it to read again and for the gap to pass
	freezeDone
)

// freezer is the parent's side: it drives the schedule from the run loop.
type freezer struct {
	cfg     config
	reader  *child
	writers []*child

	state       int
	done        int // resumes so far
	stop, cont  time.Time
	readsAtCont uint64
	timer       *time.Timer
	failedOnce  bool
	stderr      io.Writer
}

func newFreezer(cfg config, children []*child, stderr io.Writer) *freezer {
	f := &freezer{cfg: cfg, reader: children[0], writers: children[1:], stderr: stderr}
	f.timer = time.NewTimer(time.Hour)
	f.timer.Stop()
	return f
}

// timerC is the channel the run loop selects on; nil (never ready) when no
// freezer runs.
func (f *freezer) timerC() <-chan time.Time {
	if f == nil {
		return nil
	}
	return f.timer.C
}

// step advances the schedule; it is called after every event and tick.
// It reports whether the schedule is over.
func (f *freezer) step(now time.Time) bool {
	if f == nil {
		return false
	}
	r := f.reader.last
	switch f.state {
	case freezeWarmup:
		if r == nil || r.Reads == 0 || r.L1Hits == 0 || r.Stream != "healthy" || r.Degraded {
			return false
		}
		for _, w := range f.writers {
			if w.last == nil || w.last.Sets == 0 {
				return false
			}
		}
		f.freeze()
	case freezeFrozen:
		if now.Sub(f.stop) >= f.cfg.FreezeFor {
			f.resume()
		}
	case freezeRunning:
		progressed := r != nil && r.Reads > f.readsAtCont && r.Stream == "healthy" && !r.Degraded
		switch {
		case progressed && now.Sub(f.cont) >= f.cfg.FreezeGap && f.done == f.cfg.Freeze:
			f.state = freezeDone
		case progressed && now.Sub(f.cont) >= f.cfg.FreezeGap:
			f.freeze()
		case now.Sub(f.cont) > resumeTimeout:
			f.fail(fmt.Errorf("n1 did not read again (with a healthy stream) within %v of resume %d", resumeTimeout, f.done))
		}
	}
	if f.reader.exited && f.state != freezeDone {
		f.fail(fmt.Errorf("n1 exited during the freeze schedule"))
	}
	return f.state == freezeDone
}

// fail abandons the schedule: the run ends and is reported failed.
func (f *freezer) fail(err error) {
	f.release()
	fmt.Fprintf(f.stderr, "demo: freeze: %v\n", err)
	f.failedOnce = true
	f.state = freezeDone
}

func (f *freezer) freeze() {
	if err := syscall.Kill(f.reader.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		f.fail(fmt.Errorf("SIGSTOP n1: %w", err))
		return
	}
	f.stop = time.Now()
	f.state = freezeFrozen
	f.timer.Reset(f.cfg.FreezeFor) // the freeze itself: its length is the scenario
}

func (f *freezer) resume() {
	f.cont = time.Now() // before SIGCONT: n1 cannot run before this instant
	if err := syscall.Kill(f.reader.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		f.fail(fmt.Errorf("SIGCONT n1: %w", err))
		return
	}
	f.done++
	if f.reader.last != nil {
		f.readsAtCont = f.reader.last.Reads // the last count n1 reported before the freeze
	}
	f.reader.in.push(mustLine(message{T: msgResumed, F: &freezeMsg{Stop: f.stop.UnixNano(), Cont: f.cont.UnixNano()}}))
	f.state = freezeRunning
}

// release resumes n1 if it is frozen: shutdown and kill paths call it, so
// that no node is left stopped.
func (f *freezer) release() {
	if f == nil || f.state != freezeFrozen {
		return
	}
	f.timer.Stop()
	_ = syscall.Kill(f.reader.cmd.Process.Pid, syscall.SIGCONT)
	f.cont = time.Now()
	f.done++
	f.state = freezeRunning
}

// failed reports whether the schedule was abandoned.
func (f *freezer) failed() bool { return f != nil && f.failedOnce }

// phase is the freezer's part of the status line.
func (f *freezer) phase() string {
	if f == nil {
		return ""
	}
	switch f.state {
	case freezeWarmup:
		return fmt.Sprintf("n1 warming up before %d freezes", f.cfg.Freeze)
	case freezeFrozen:
		return fmt.Sprintf("n1 FROZEN (%d/%d) for %v", f.done+1, f.cfg.Freeze, time.Since(f.stop).Truncate(100*time.Millisecond))
	case freezeRunning:
		return fmt.Sprintf("n1 resumed (%d/%d) %v ago", f.done, f.cfg.Freeze, time.Since(f.cont).Truncate(100*time.Millisecond))
	}
	return fmt.Sprintf("n1 frozen %d times", f.done)
}

// freezeLog is the reader's side: when each read started, when the stream
// consumer evicted something, and the freezes the parent reported.
type freezeLog struct {
	mu      sync.Mutex
	reads   []int64 // starts of the reads the checker judges, Unix ns
	evicts  []int64 // stream evictions, Unix ns
	acks    []int64 // acknowledgements of the other nodes' writes, Unix ns
	freezes []freezeMsg
}

func (l *freezeLog) acked(end int64) {
	l.mu.Lock()
	l.acks = append(l.acks, end)
	l.mu.Unlock()
}

func (l *freezeLog) read(start time.Time) {
	l.mu.Lock()
	l.reads = append(l.reads, start.UnixNano())
	l.mu.Unlock()
}

func (l *freezeLog) evicted() {
	now := time.Now().UnixNano()
	l.mu.Lock()
	l.evicts = append(l.evicts, now)
	l.mu.Unlock()
}

func (l *freezeLog) frozen(m freezeMsg) {
	l.mu.Lock()
	l.freezes = append(l.freezes, m)
	l.mu.Unlock()
}

// freezeReport is what the reader did after one resume. Times are Unix
// nanoseconds (0: none).
type freezeReport struct {
	Stop, Cont int64
	// MustSee counts the writes acknowledged after Stop and more than T
	// before Cont: every read after the resume must reflect them (or newer).
	MustSee int `json:"must_see"`
	// FirstRead is the start of the first read after Cont.
	FirstRead int64 `json:"first_read"`
	// FirstEvict is the first stream eviction after Cont: the earliest sign
	// that the consumer had caught up with what was written during the freeze.
	FirstEvict int64 `json:"first_evict"`
	// EarlyReads started after Cont and before FirstEvict (all reads after
	// Cont if there was no eviction): the reads that put the resume to the
	// test, answered before the consumer had applied anything newer.
	EarlyReads int `json:"early_reads"`
	// Reads started after Cont and before the next freeze (or the end).
	Reads int `json:"reads"`
	// Violations among those reads, and the worst of them: how long the
	// newer write they missed had been acknowledged when the read began.
	Violations int     `json:"violations"`
	WorstMs    float64 `json:"worst_ms"`
}

// reports judges the freezes against the reads, evictions and violations.
func (l *freezeLog) reports(t time.Duration, violations []history.Violation) []freezeReport {
	l.mu.Lock()
	reads := append([]int64(nil), l.reads...)
	evicts := append([]int64(nil), l.evicts...)
	acks := append([]int64(nil), l.acks...)
	fz := append([]freezeMsg(nil), l.freezes...)
	l.mu.Unlock()
	sort.Slice(reads, func(i, j int) bool { return reads[i] < reads[j] })
	sort.Slice(evicts, func(i, j int) bool { return evicts[i] < evicts[j] })
	sort.Slice(fz, func(i, j int) bool { return fz[i].Cont < fz[j].Cont })
	first := func(s []int64, from int64) (int, int64) { // index and value of the first element >= from
		i := sort.Search(len(s), func(i int) bool { return s[i] >= from })
		if i == len(s) {
			return i, 0
		}
		return i, s[i]
	}
	var out []freezeReport
	for i, f := range fz {
		until := int64(1<<63 - 1)
		if i+1 < len(fz) {
			until = fz[i+1].Stop
		}
		rep := freezeReport{Stop: f.Stop, Cont: f.Cont}
		for _, a := range acks {
			if a > f.Stop && a < f.Cont-int64(t) {
				rep.MustSee++
			}
		}
		ri, fr := first(reads, f.Cont)
		rep.FirstRead = fr
		_, rep.FirstEvict = first(evicts, f.Cont)
		for _, s := range reads[ri:] {
			if s >= until {
				break
			}
			rep.Reads++
			if rep.FirstEvict == 0 || s < rep.FirstEvict {
				rep.EarlyReads++
			}
		}
		for _, v := range violations {
			s := v.Read.Start.UnixNano()
			if s < f.Cont || s >= until {
				continue
			}
			rep.Violations++
			if v.Newer != nil {
				rep.WorstMs = max(rep.WorstMs, ms(v.Read.Start.Sub(v.Newer.End)))
			}
		}
		out = append(out, rep)
	}
	return out
}

// printFreezes shows, under -freeze, what each resume of n1 did and the
// checker's verdict on it.
func printFreezes(w io.Writer, cfg config, children []*child, t time.Duration) {
	if cfg.Freeze == 0 || len(children) == 0 || children[0].last == nil {
		return
	}
	fz := children[0].last.Freezes
	stale := 0
	for i, f := range fz {
		line := fmt.Sprintf("  freeze %-2d       n1 frozen %v, %d writes acknowledged more than T before it resumed; after SIGCONT: ",
			i+1, time.Duration(f.Cont-f.Stop).Round(time.Millisecond), f.MustSee)
		if f.FirstRead == 0 {
			line += "no read"
		} else {
			line += fmt.Sprintf("first read +%v, %d reads before the first stream eviction",
				time.Duration(f.FirstRead-f.Cont).Round(time.Microsecond), f.EarlyReads)
			if f.FirstEvict != 0 {
				line += fmt.Sprintf(" (+%v)", time.Duration(f.FirstEvict-f.Cont).Round(time.Microsecond))
			}
			line += fmt.Sprintf(", %d reads in all", f.Reads)
		}
		if f.Violations > 0 {
			stale++
			line += fmt.Sprintf("; %d STALE reads (up to %.1f s after a newer write was acknowledged)", f.Violations, f.WorstMs/1000)
		} else {
			line += "; no stale read"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "  freeze verdict  %d of %d resumes served reads staler than T = %v (%d freezes asked)\n", stale, len(fz), t, cfg.Freeze)
}
