package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tieredcache/tieredcache/invalidation"
)

// Reasons a Pod passes to Sink.Flush (besides invalidation.ErrRecovered,
// before trust is granted again after it was withdrawn or had lapsed, and
// the bridge's own reasons, relayed as ErrBridgeFlushed).
var (
	// ErrSequenceGap: a message of the epoch never arrived (or arrived
	// undecodable): its keys are unknown.
	ErrSequenceGap = errors.New("fanout: message sequence gap")
	// ErrEpochChanged: another bridge took the lease; changes between the
	// old leader's last read and the new leader's first are unknown.
	ErrEpochChanged = errors.New("fanout: bridge epoch changed")
	// ErrReconnected: the transport reconnected; messages may have been
	// lost while it was down.
	ErrReconnected = errors.New("fanout: transport reconnected")
	// ErrBridgeFlushed: the bridge lost track of the stream.
	ErrBridgeFlushed = errors.New("fanout: the bridge lost track of the stream")
)

// PodOptions configures a Pod.
type PodOptions struct {
	// Transport carries the bridge's messages. Required. The Pod does not
	// close it.
	Transport Transport
	// Subject is the subject the bridge publishes on. Required: use the
	// bridge's (BridgeOptions.Subject, default DefaultSubject(table)).
	Subject string
	// KeyHashes must be set when the bridge sends key hashes
	// (BridgeOptions.KeyHashes): the cache then indexes its keys by hash
	// (invalidation.HashingSource). A pod without it counts a message of
	// hashes as unreadable, and flushes.
	KeyHashes bool
	// MaxTransit bounds the one-way delay of the fastest message of each
	// epoch from the bridge to this pod; it is taken off every grant of
	// trust (see Pod). Without agreeing clocks no one-way delay can be
	// measured, so this is an assumption, not a measurement. Default
	// DefaultMaxTransit(T): min(T/16, 100 ms), far above one network's
	// base latency yet small enough that trust still holds from one
	// heartbeat to the next (every T/4, plus a batch tick of min(50 ms,
	// T/8)) while the watermark age a heartbeat carries stays under
	// T/2 - MaxTransit - T/4 - tick: T/16 at worst, 350 ms at T = 2 s.
	// It must be below T/2 (Start refuses it otherwise).
	MaxTransit time.Duration
}

// DefaultMaxTransit is PodOptions.MaxTransit's default for the staleness
// bound t: min(t/16, 100 ms).
func DefaultMaxTransit(t time.Duration) time.Duration { return min(t/16, 100*time.Millisecond) }

// Pod is the pod side of fan-out: an invalidation.Source (for
// tiered.Options.Invalidation) that reads no stream. It subscribes to the
// bridge's messages, reports each key they name as changed (by key, or by
// hash with KeyHashes; with the version and write proof when the bridge reads
// NEW_IMAGE, so the cache keeps its own writes), and keeps trust from their
// watermarks.
//
// Trust: a message received at R (this pod's monotonic clock) says every
// change made before SentAt-WatermarkAge (the bridge's clock) was published.
// The pod maps the bridge's clock onto its own through the smallest
// R-SentAt seen in the epoch (minOff): the clocks' offset, which pods never
// need to know, plus the smallest transit delay of the epoch. Trust then
// lasts until SentAt-WatermarkAge+minOff+StaleAfter-MaxTransit. Any delay
// above the smallest one seen (queueing, a stall, a frozen pod reading a
// backlog) is thus counted against trust, never for it; the smallest one is
// counted for it, and MaxTransit takes it back: the staleness bound holds
// as long as the fastest message of each epoch reached the pod within
// MaxTransit (if every message of an epoch is late by more, trust runs that
// much too long). Clock rates are assumed equal (drift of a few ppm is
// negligible).
//
// It flushes the sink on a sequence gap, an epoch change, a reconnection, a
// bridge flush, and before trust is granted again after it was withdrawn or
// had lapsed. With no message for StaleAfter, trust lapses by itself.
type Pod struct {
	o PodOptions

	mu      sync.Mutex // serialises every Sink call and guards what follows
	cfg     invalidation.SourceConfig
	started bool
	closed  bool
	unsub   func()

	epoch   uint64
	haveSeq bool
	seq     uint64
	haveOff bool
	minOff  int64     // smallest R-SentAt of the epoch (R on base's scale)
	base    time.Time // origin of R
	trusted bool      // trust granted and not withdrawn
	until   time.Time // the last until granted
	lastW   time.Time // the last watermark, on this pod's clock

	warnedHashes bool // the KeyHashes mismatch was logged

	st PodStats
}

// PodStats are a Pod's counters.
type PodStats struct {
	// Epoch and Seq are those of the last message applied.
	Epoch, Seq uint64
	// Messages counts messages applied; Keys the keys they named.
	Messages, Keys int64
	// Gaps, EpochChanges, Reconnects, BridgeFlushes count flushes by reason;
	// Flushes counts every flush (ErrRecovered included).
	Gaps, EpochChanges, Reconnects, BridgeFlushes, Flushes int64
	// Stale counts messages of an older epoch or an old sequence number,
	// ignored; Undecodable those that could not be read.
	Stale, Undecodable int64
}

// NewPod returns a Pod that does nothing until Start.
func NewPod(o PodOptions) (*Pod, error) {
	if o.Transport == nil {
		return nil, errors.New("fanout: PodOptions.Transport is required")
	}
	if o.Subject == "" {
		return nil, errors.New("fanout: PodOptions.Subject is required")
	}
	if o.MaxTransit < 0 {
		return nil, errors.New("fanout: PodOptions.MaxTransit is negative")
	}
	return &Pod{o: o}, nil
}

// Start implements invalidation.Source: it subscribes (the subscription is
// active when it returns). Trust comes with the first message.
func (p *Pod) Start(_ context.Context, cfg invalidation.SourceConfig) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return invalidation.ErrClosed
	}
	if p.started {
		return invalidation.ErrStarted
	}
	if p.o.MaxTransit == 0 {
		p.o.MaxTransit = DefaultMaxTransit(2 * cfg.StaleAfter)
	}
	if p.o.MaxTransit >= cfg.StaleAfter {
		return fmt.Errorf("fanout: PodOptions.MaxTransit %v is not below T/2 = %v: trust could never be granted",
			p.o.MaxTransit, cfg.StaleAfter)
	}
	p.started = true
	p.cfg = cfg
	p.base = cfg.Now()
	// Subscribe's callbacks take p.mu: subscribe without holding it.
	p.mu.Unlock()
	unsub, err := p.o.Transport.Subscribe(p.o.Subject, p.onMessage, p.onState)
	p.mu.Lock()
	if err != nil {
		return err
	}
	p.unsub = unsub
	if p.closed { // Close ran meanwhile
		p.unsub()
	}
	return nil
}

// SendsKeyHashes implements invalidation.HashingSource: PodOptions.KeyHashes.
func (p *Pod) SendsKeyHashes() bool { return p.o.KeyHashes }

// Close implements invalidation.Source.
func (p *Pod) Close() error {
	p.mu.Lock()
	p.closed = true
	unsub := p.unsub
	p.unsub = nil
	p.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	return nil
}

func (p *Pod) flush(reason error) {
	p.st.Flushes++
	p.cfg.Sink.Flush(reason)
}

func (p *Pod) withdraw() {
	if p.trusted {
		p.trusted = false
		p.cfg.Sink.TrustUntil(time.Time{})
	}
}

func (p *Pod) onState(s ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || s != Reconnected {
		return
	}
	p.cfg.Logger.Warn("fanout: transport reconnected; flushing L1")
	p.st.Reconnects++
	p.flush(ErrReconnected)
	p.withdraw()
	p.haveSeq = false // the next message restarts the sequence: what was lost is flushed
}

func (p *Pod) onMessage(data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := p.cfg.Now()
	flushes := p.st.Flushes
	m, err := DecodeMessage(data)
	if err == nil && m.Hashes != nil && !p.o.KeyHashes {
		if !p.warnedHashes { // once: every message of that bridge is refused
			p.warnedHashes = true
			p.cfg.Logger.Error("fanout: the bridge sends key hashes; set PodOptions.KeyHashes (flushing L1, not trusting it)")
		}
		err = ErrBadMessage
	}
	if err != nil {
		p.st.Undecodable++
		p.flush(ErrSequenceGap)
		p.withdraw()
		p.haveSeq = false
		return
	}
	switch {
	case m.Epoch < p.epoch:
		p.st.Stale++ // a deposed leader's: fenced
		return
	case m.Epoch > p.epoch:
		if p.epoch != 0 {
			p.cfg.Logger.Warn("fanout: bridge epoch changed; flushing L1", "from", p.epoch, "to", m.Epoch)
			p.st.EpochChanges++
			p.flush(ErrEpochChanged)
			p.withdraw()
		}
		p.epoch, p.haveSeq, p.haveOff = m.Epoch, false, false
	case p.haveSeq && m.Seq <= p.seq:
		p.st.Stale++
		return
	case p.haveSeq && m.Seq != p.seq+1:
		p.cfg.Logger.Warn("fanout: message sequence gap; flushing L1", "missing", m.Seq-p.seq-1)
		p.st.Gaps++
		p.flush(ErrSequenceGap)
		p.withdraw()
	}
	p.haveSeq, p.seq = true, m.Seq
	p.st.Epoch, p.st.Seq = m.Epoch, m.Seq
	p.st.Messages++
	if m.Flush {
		p.st.BridgeFlushes++
		p.flush(ErrBridgeFlushed)
	}
	var sums []invalidation.ImageSummary
	if m.Proofs != nil {
		sums = make([]invalidation.ImageSummary, len(m.Proofs))
	}
	for i := range m.n() {
		var ch invalidation.Change
		if m.Hashes != nil {
			ch.KeyHash = m.Hashes[i]
		} else {
			ch.PartitionKey = m.Keys[i]
		}
		if sums != nil {
			sums[i] = invalidation.ImageSummary{Version: m.Versions[i], Proof: m.Proofs[i]}
			ch.Summary = &sums[i]
		}
		p.cfg.Sink.Changed(ch)
	}
	p.st.Keys += int64(m.n())
	if m.NoTrust {
		p.withdraw()
		return
	}
	r := int64(now.Sub(p.base))
	if off := r - m.SentAt; !p.haveOff || off < p.minOff {
		p.minOff, p.haveOff = off, true
	}
	w := p.base.Add(time.Duration(m.SentAt - m.WatermarkAge + p.minOff))
	until := w.Add(p.cfg.StaleAfter - p.o.MaxTransit)
	if !until.After(now) {
		return // too old to grant anything: trust lapses (or stays lapsed)
	}
	if (!p.trusted || !now.Before(p.until)) && p.st.Flushes == flushes {
		// Granted again after a withdrawal or a lapse (or for the first
		// time), and not flushed above: whatever was cached meanwhile may
		// have missed changes.
		p.flush(invalidation.ErrRecovered)
	}
	p.trusted, p.until, p.lastW = true, until, w
	p.cfg.Sink.TrustUntil(until)
}

// Stats implements invalidation.StatsSource (Healthy, Trusted, Lag: the
// watermark's age now, Records: messages, Changes: keys, Flushes, Errors:
// undecodable messages).
func (p *Pod) Stats() invalidation.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := invalidation.Stats{Trusted: p.trusted, Records: p.st.Messages, Changes: p.st.Keys,
		Flushes: p.st.Flushes, Errors: p.st.Undecodable}
	if p.cfg.Now != nil && !p.lastW.IsZero() {
		now := p.cfg.Now()
		s.Healthy = p.trusted && now.Before(p.until)
		s.Lag = now.Sub(p.lastW)
	}
	return s
}

// PodStats returns the Pod's own counters.
func (p *Pod) PodStats() PodStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}
