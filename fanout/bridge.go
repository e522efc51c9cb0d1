package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
)

// DefaultSubject is the subject a bridge publishes a table's batches on.
func DefaultSubject(table string) string { return "tieredcache.inval." + table }

// DefaultStalenessBound is T when BridgeOptions.StalenessBound is zero (as
// tiered.DefaultStalenessBound).
const DefaultStalenessBound = 2 * time.Second

// maxMessageKeyBytes bounds the key bytes of one message (NATS refuses
// payloads above its max_payload, 1 MB by default).
const maxMessageKeyBytes = 256 << 10

// TableAPI is the part of *dynamodb.Client a bridge uses: the lease item,
// and DescribeTable for its stream consumer.
type TableAPI interface {
	LeaseAPI
	invalidation.TableAPI
}

// BridgeOptions configures a Bridge. Zero durations take defaults derived
// from StalenessBound (T).
type BridgeOptions struct {
	// ID names this candidate in the lease item; unique among candidates.
	// Required.
	ID string
	// Table is the cache table: its stream is read, and it holds the lease
	// item. Required.
	Table string
	// DynamoDB reads and writes the lease item. Required.
	DynamoDB TableAPI
	// Streams reads the stream (invalidation.NewStreamsClient). Required.
	Streams invalidation.StreamsAPI
	// Transport publishes the batches. Required; the bridge does not close it.
	Transport Transport
	// Subject to publish on. Default DefaultSubject(Table).
	Subject string
	// StalenessBound is the caches' T. Default DefaultStalenessBound.
	StalenessBound time.Duration
	// BatchInterval: changes are published as soon as the stream poll that
	// read them has drained its shard (at most one message per shard poll),
	// and at most this long after the bridge read them. Default
	// min(50 ms, T/8).
	BatchInterval time.Duration
	// HeartbeatInterval: without changes, a message goes out this often.
	// Default T/4.
	HeartbeatInterval time.Duration
	// PollInterval of the stream consumer. Default min(50 ms, T/8).
	PollInterval time.Duration
	// LeaseTTL: a standby takes the lease after it has seen it unchanged for
	// LeaseTTL (its own clock). Default T/2.
	LeaseTTL time.Duration
	// LeaseRenew is the renewal period of the leader and the polling period
	// of a standby. Default T/8.
	LeaseRenew time.Duration
	// LeaseMargin: the leader stops reading and publishing LeaseTTL -
	// LeaseMargin after it began its last successful renewal (its own
	// monotonic clock). Default T/8.
	LeaseMargin time.Duration
	// CallTimeout bounds each lease call. Default 1 s, at most LeaseRenew*2.
	CallTimeout time.Duration
	// KeyHashes: messages name each changed item by a 64-bit hash of its
	// partition key value (l2.PartitionKeyHash: 8 bytes, instead of the
	// key's length and bytes). Every pod must then set PodOptions.KeyHashes
	// (a pod without it counts such a message as unreadable: it flushes).
	// A collision of two keys' hashes makes a pod evict the other key too.
	KeyHashes bool
	// LeaseKey is the lease item's partition key. Default DefaultLeaseKey;
	// it must contain no '#' (no cache may take it for one of its keys).
	LeaseKey string
	// Logger gets operational events (never keys). Default: discard.
	Logger *slog.Logger
}

func (o *BridgeOptions) setDefaults() error {
	switch {
	case o.ID == "":
		return errors.New("fanout: BridgeOptions.ID is required")
	case o.Table == "":
		return errors.New("fanout: BridgeOptions.Table is required")
	case o.DynamoDB == nil || o.Streams == nil || o.Transport == nil:
		return errors.New("fanout: BridgeOptions.DynamoDB, Streams and Transport are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.StalenessBound, DefaultStalenessBound)
	t := o.StalenessBound
	def(&o.BatchInterval, min(50*time.Millisecond, t/8))
	def(&o.HeartbeatInterval, t/4)
	def(&o.PollInterval, min(50*time.Millisecond, t/8))
	def(&o.LeaseTTL, t/2)
	def(&o.LeaseRenew, t/8)
	def(&o.LeaseMargin, t/8)
	def(&o.CallTimeout, min(time.Second, 2*o.LeaseRenew))
	if o.Subject == "" {
		o.Subject = DefaultSubject(o.Table)
	}
	if o.LeaseKey == "" {
		o.LeaseKey = DefaultLeaseKey
	}
	for _, c := range o.LeaseKey {
		if c == '#' {
			return errors.New("fanout: BridgeOptions.LeaseKey must not contain '#'")
		}
	}
	if o.LeaseMargin >= o.LeaseTTL || o.LeaseRenew >= o.LeaseTTL-o.LeaseMargin {
		return fmt.Errorf("fanout: lease: renew %v and margin %v must fit in TTL %v", o.LeaseRenew, o.LeaseMargin, o.LeaseTTL)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Bridge is one candidate bridge. Among the candidates sharing a table, the
// one holding the lease item reads the table's stream (once, with an
// invalidation.Consumer) and publishes its changes; the others poll the lease
// item every LeaseRenew and take it over when they have seen it unchanged for
// LeaseTTL. Each takeover increments the lease's epoch, which every message
// carries: pods flush on a new epoch and ignore older ones.
//
// The leader renews every LeaseRenew. It reads and publishes only until
// LeaseTTL - LeaseMargin after the start of its last successful renewal, on
// its own monotonic clock (every stream call is checked against that
// deadline, and bounded by it), and stops leading past it: so, with clock
// rates equal, it has stopped before any standby can judge the lease expired,
// and at most one candidate reads the stream, even when the leader was frozen.
//
// With the defaults (T = 2 s: TTL 1 s, renewal and margin 250 ms), a takeover
// after the leader dies takes at most TTL + LeaseRenew + one read (about
// 1.3 s) plus the new consumer's start; pods meanwhile lose trust T/2 after
// the last watermark they received and serve only young entries, so T holds.
type Bridge struct {
	o     BridgeOptions
	lease lease
	base  time.Time // origin of SentAt and of deadline

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool

	// deadline: nanoseconds since base until which this candidate may read
	// and publish (0: not leading).
	deadline atomic.Int64

	st bridgeCounters
}

type bridgeCounters struct {
	leader                                       atomic.Bool
	epoch, seq                                   atomic.Uint64
	getRecords, refused, published, keys, errors atomic.Int64
	takeovers, stepDowns                         atomic.Int64
	leadingSince, lastReadEnd                    atomic.Int64 // b.now scale; 0: never
}

// BridgeStats is a snapshot of a Bridge.
type BridgeStats struct {
	// Leader: this candidate leads now; Epoch is the epoch it last led.
	Leader bool
	Epoch  uint64
	// Seq is the last sequence number published in Epoch.
	Seq uint64
	// GetRecords counts GetRecords calls this candidate sent; Refused the
	// stream calls refused because its lease deadline had passed.
	GetRecords, Refused int64
	// Published counts messages, Keys the keys they carried; PublishErrors
	// failed publications.
	Published, Keys, PublishErrors int64
	// Takeovers counts leases taken; StepDowns leaderships ended.
	Takeovers, StepDowns int64
	// LeadingSince is when the write that took the lease last began;
	// LastReadEnd when this candidate's last GetRecords call returned (zero:
	// never). Both read this process's clock.
	LeadingSince, LastReadEnd time.Time
}

// NewBridge validates o.
func NewBridge(o BridgeOptions) (*Bridge, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	return &Bridge{o: o, base: time.Now(),
		lease: lease{api: o.DynamoDB, table: o.Table, key: o.LeaseKey, id: o.ID}}, nil
}

// Start runs the candidate in the background until Close.
func (b *Bridge) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return invalidation.ErrClosed
	}
	if b.cancel != nil {
		return invalidation.ErrStarted
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.run(ctx)
	}()
	return nil
}

// Close stops leading (or campaigning) and waits for every goroutine. It does
// not release the lease: a standby takes it after LeaseTTL. Safe to call
// twice.
func (b *Bridge) Close() error {
	b.mu.Lock()
	b.closed = true
	cancel := b.cancel
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	b.wg.Wait()
	return nil
}

// Stats returns a snapshot.
func (b *Bridge) Stats() BridgeStats {
	s := &b.st
	return BridgeStats{Leader: s.leader.Load(), Epoch: s.epoch.Load(), Seq: s.seq.Load(),
		GetRecords: s.getRecords.Load(), Refused: s.refused.Load(), Published: s.published.Load(),
		Keys: s.keys.Load(), PublishErrors: s.errors.Load(), Takeovers: s.takeovers.Load(), StepDowns: s.stepDowns.Load(),
		LeadingSince: b.at(s.leadingSince.Load()), LastReadEnd: b.at(s.lastReadEnd.Load())}
}

// at converts a b.now reading (0: none) to a time.Time.
func (b *Bridge) at(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return b.base.Add(time.Duration(n))
}

func (b *Bridge) now() int64 { return int64(time.Since(b.base)) }

func (b *Bridge) run(ctx context.Context) {
	for ctx.Err() == nil {
		epoch, granted, ok := b.campaign(ctx)
		if !ok {
			return
		}
		b.lead(ctx, epoch, granted)
	}
}

// campaign polls the lease until this candidate takes it; granted is when
// the winning write began (b.now scale).
func (b *Bridge) campaign(ctx context.Context) (epoch uint64, granted int64, ok bool) {
	var obs observer
	t := time.NewTicker(b.o.LeaseRenew)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
		s, err := b.lease.read(cctx)
		cancel()
		readEnd := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				b.o.Logger.Warn("fanout: read lease", "err", err)
			}
		} else if obs.expired(s, readEnd, b.o.LeaseTTL) {
			start := b.now()
			cctx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
			e, won, err := b.lease.take(cctx, s)
			cancel()
			switch {
			case err != nil:
				// The write may have landed: if it did, the lease is ours
				// but we do not know it; it expires unused, as a dead
				// leader's would.
				if ctx.Err() == nil {
					b.o.Logger.Warn("fanout: take lease", "err", err)
				}
			case won:
				b.o.Logger.Info("fanout: lease taken; leading", "id", b.o.ID, "epoch", e)
				return e, start, true
			}
			obs = observer{}
		}
		select {
		case <-ctx.Done():
			return 0, 0, false
		case <-t.C:
		}
	}
}

// lead reads the stream and publishes until the lease is lost, cannot be
// renewed in time, or ctx ends.
func (b *Bridge) lead(ctx context.Context, epoch uint64, granted int64) {
	b.deadline.Store(granted + int64(b.o.LeaseTTL-b.o.LeaseMargin))
	b.st.epoch.Store(epoch)
	b.st.seq.Store(0)
	b.st.leader.Store(true)
	b.st.takeovers.Add(1)
	b.st.leadingSince.Store(granted)
	lctx, stop := context.WithCancel(ctx)
	var (
		wg       sync.WaitGroup
		consumer *invalidation.Consumer
	)
	defer func() {
		stop()
		if consumer != nil {
			_ = consumer.Close() // no stream call after this
		}
		wg.Wait()
		b.deadline.Store(0)
		b.st.leader.Store(false)
		b.st.stepDowns.Add(1)
	}()
	wg.Add(1)
	go func() { // renewals
		defer wg.Done()
		defer stop()
		t := time.NewTicker(b.o.LeaseRenew)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			start := b.now()
			if start >= b.deadline.Load() {
				b.o.Logger.Warn("fanout: lease not renewed in time; stepping down", "epoch", epoch)
				return
			}
			cctx, cancel := context.WithDeadline(lctx, b.base.Add(time.Duration(b.deadline.Load())))
			err := b.lease.renew(cctx, epoch)
			cancel()
			switch {
			case err == nil:
				b.deadline.Store(start + int64(b.o.LeaseTTL-b.o.LeaseMargin))
			case errors.Is(err, errLeaseLost):
				b.o.Logger.Warn("fanout: lease taken by another candidate; stepping down", "epoch", epoch)
				return
			default:
				if lctx.Err() == nil {
					b.o.Logger.Warn("fanout: renew lease", "err", err)
				}
			}
		}
	}()

	sk := &bridgeSink{leaseKey: b.o.LeaseKey, wake: make(chan struct{}, 1)}
	c, err := invalidation.New(invalidation.Options{
		Streams: &guardedStreams{b: b, api: b.o.Streams}, Tables: b.o.DynamoDB, Table: b.o.Table,
		Sink: sk, PollInterval: b.o.PollInterval, StaleAfter: b.o.StalenessBound / 2, Logger: b.o.Logger,
	})
	if err != nil {
		b.o.Logger.Error("fanout: stream consumer", "err", err)
		return
	}
	consumer = c
	if err := consumer.Start(lctx); err != nil {
		if lctx.Err() == nil {
			b.o.Logger.Warn("fanout: start stream consumer", "err", err)
		}
		return
	}
	b.publish(lctx, stop, epoch, sk)
}

// publish sends a batch after each shard poll that read changes (and every
// BatchInterval while there are any), a heartbeat every HeartbeatInterval
// otherwise, until ctx ends or the lease deadline passes.
func (b *Bridge) publish(ctx context.Context, stop context.CancelFunc, epoch uint64, sk *bridgeSink) {
	t := time.NewTicker(b.o.BatchInterval)
	defer t.Stop()
	var (
		seq     uint64
		lastPub time.Time
		prevW   time.Time // the watermark of the last message (zero: none)
		buf     []byte
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-sk.wake: // a poll read changes: publish them now, not at the next tick
		}
		if b.now() >= b.deadline.Load() {
			stop()
			return
		}
		now := time.Now()
		batch, ok := sk.take(now.Sub(lastPub) >= b.o.HeartbeatInterval)
		if !ok {
			continue
		}
		// Split keys so no message is too large; only the last part
		// carries the new watermark (the earlier ones the previous one).
		var w time.Time
		if !batch.until.IsZero() {
			w = batch.until.Add(-b.o.StalenessBound / 2)
		}
		keys, vers, proofs := batch.keys, batch.vers, batch.proofs
		for first := true; first || len(keys) > 0; first = false {
			n, size := 0, 0
			for n < len(keys) && (n == 0 || size+len(keys[n]) <= maxMessageKeyBytes) {
				size += len(keys[n])
				n++
			}
			m := Message{Epoch: epoch, Flush: first && batch.flush, Keys: keys[:n]}
			if vers != nil {
				m.Versions, m.Proofs = vers[:n], proofs[:n]
				vers, proofs = vers[n:], proofs[n:]
			}
			if b.o.KeyHashes {
				m.Hashes = make([]uint64, n)
				for i, k := range m.Keys {
					m.Hashes[i] = l2.PartitionKeyHash(k)
				}
				m.Keys = nil
			}
			keys = keys[n:]
			mw := w
			if len(keys) > 0 {
				mw = prevW
			}
			seq++
			pubAt := time.Now()
			m.Seq, m.SentAt = seq, int64(pubAt.Sub(b.base))
			if mw.IsZero() {
				m.NoTrust = true
			} else {
				m.WatermarkAge = int64(max(pubAt.Sub(mw), 0))
			}
			buf = AppendMessage(buf[:0], &m)
			if err := b.o.Transport.Publish(ctx, b.o.Subject, buf); err != nil {
				b.st.errors.Add(1)
				if ctx.Err() == nil {
					b.o.Logger.Warn("fanout: publish", "err", err) // pods see a sequence gap and flush
				}
			} else {
				b.st.published.Add(1)
				b.st.keys.Add(int64(m.n()))
			}
			b.st.seq.Store(seq)
		}
		prevW, lastPub = w, now
	}
}

// batch is what the bridge's sink collected since the last message.
type batch struct {
	keys   []string
	vers   []int64  // with NEW_IMAGE: each key's version
	proofs []uint64 // with vers: each key's write proof (l2.Item.Proof)
	flush  bool
	until  time.Time
}

// bridgeSink collects the consumer's events for the publisher.
type bridgeSink struct {
	leaseKey string
	// wake tells the publisher that a poll that drained a shard read
	// changes (signalled from TrustUntil, which follows the poll's
	// Changed calls), so they go out at once, with the watermark it set.
	wake chan struct{}

	mu    sync.Mutex
	cur   batch
	until time.Time
}

func (s *bridgeSink) Changed(c invalidation.Change) {
	if c.PartitionKey == s.leaseKey || l2.IsLeasePartitionKey(c.PartitionKey) {
		return // the bridge's lease renewals, or a cache's fill lease: no cache holds either
	}
	// From a NEW_IMAGE: the version and the write proof, so that the
	// writing pod keeps its own entry (pods evict on anything else). A
	// lease placeholder (a fill lease taken on a vacant item; entry and
	// version unchanged) is not sent: no pod holds an entry it changes, and
	// the lease holder's own fill in flight must not lose its fence (as the
	// direct mode's sink does with ReplaceOnChange). An image l2 cannot
	// parse goes as an unproved change (proof 0): pods evict.
	var (
		ver   int64
		proof uint64
	)
	if c.NewImage != nil {
		item, err := l2.ItemFromStreamImage(c.NewImage)
		if err == nil && item.Leased {
			return
		}
		if err == nil {
			ver, proof = item.Version, item.Proof()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.NewImage != nil && s.cur.vers == nil {
		s.cur.vers = make([]int64, len(s.cur.keys))
		s.cur.proofs = make([]uint64, len(s.cur.keys))
	}
	s.cur.keys = append(s.cur.keys, c.PartitionKey)
	if s.cur.vers != nil {
		s.cur.vers = append(s.cur.vers, ver)
		s.cur.proofs = append(s.cur.proofs, proof)
	}
}

// Flush: the pods must flush; what was collected before is superseded.
func (s *bridgeSink) Flush(error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = batch{flush: true}
}

func (s *bridgeSink) TrustUntil(until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.until = until
	if len(s.cur.keys) > 0 || s.cur.flush {
		select {
		case s.wake <- struct{}{}:
		default: // already signalled
		}
	}
}

// take returns what was collected, if there is anything or heartbeat is set.
func (s *bridgeSink) take(heartbeat bool) (batch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur.keys) == 0 && !s.cur.flush && !heartbeat {
		return batch{}, false
	}
	out := s.cur
	out.until = s.until
	s.cur = batch{}
	return out, true
}

// errNotLeader is what a stream call gets once the lease deadline passed.
var errNotLeader = errors.New("fanout: not the leader (lease deadline passed)")

// guardedStreams lets the consumer call the stream only while this
// candidate's lease deadline has not passed, and bounds each call by it.
type guardedStreams struct {
	b   *Bridge
	api invalidation.StreamsAPI
}

func (g *guardedStreams) check(ctx context.Context) (context.Context, context.CancelFunc, error) {
	d := g.b.deadline.Load()
	if d == 0 || g.b.now() >= d {
		g.b.st.refused.Add(1)
		return nil, nil, errNotLeader
	}
	ctx, cancel := context.WithDeadline(ctx, g.b.base.Add(time.Duration(d)))
	return ctx, cancel, nil
}

func (g *guardedStreams) DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	ctx, cancel, err := g.check(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return g.api.DescribeStream(ctx, in, optFns...)
}

func (g *guardedStreams) GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	ctx, cancel, err := g.check(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return g.api.GetShardIterator(ctx, in, optFns...)
}

func (g *guardedStreams) GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	ctx, cancel, err := g.check(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	g.b.st.getRecords.Add(1)
	defer func() { g.b.st.lastReadEnd.Store(g.b.now()) }()
	return g.api.GetRecords(ctx, in, optFns...)
}
