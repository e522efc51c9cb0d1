package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// StandbySuffix is appended to BridgeOptions.LeaseKey to name the hot
// standby's lease item.
const StandbySuffix = ".standby"

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
	// LeaseRenew is the renewal period of a lease holder (LeaseRenew/2
	// while a renewal is in flight) and the polling period of the other
	// candidates. Default T/8.
	LeaseRenew time.Duration
	// LeaseMargin: a lease holder stops reading (and the leader publishing)
	// LeaseTTL - LeaseMargin after it began its last successful renewal (its
	// own monotonic clock), until a renewal lands. Default T/8.
	LeaseMargin time.Duration
	// CallTimeout bounds each lease read and take. Default 1 s, at most
	// LeaseRenew*2. (A renewal is bounded by the deadline it would grant.)
	CallTimeout time.Duration
	// KeyHashes: messages name each changed item by a 64-bit hash of its
	// partition key value (l2.PartitionKeyHash: 8 bytes, instead of the
	// key's length and bytes). Every pod must then set PodOptions.KeyHashes
	// (a pod without it counts such a message as unreadable: it flushes).
	// A collision of two keys' hashes makes a pod evict the other key too.
	KeyHashes bool
	// LeaseKey is the lease item's partition key. Default DefaultLeaseKey;
	// it must contain no '#' (no cache may take it for one of its keys).
	// The hot standby's lease item is LeaseKey+StandbySuffix.
	LeaseKey string
	// HotStandby: while another candidate leads, this one may hold the
	// standby's lease item (one holder at a time, fenced as the leader's)
	// and read the stream without publishing; when the leader's lease
	// expires it takes it and publishes at once from where it is, with no
	// consumer to start. So at most two candidates read: the leader and the
	// hot standby. Candidates without it defer to a live hot standby; one
	// that cannot take the expired lease resigns (see Bridge). Set it
	// alike on every candidate. Default false: standbys poll the leader's
	// lease item only and start reading when they take it.
	HotStandby bool
	// Candidates, when set, are the IDs allowed to campaign: a bridge whose
	// ID is not among them stays idle (Start does nothing), so every pod
	// can run the same code while only a few contend for the lease.
	Candidates []string
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
// LeaseTTL. Each takeover raises the lease's epoch, which every message
// carries: pods flush on a new epoch and ignore older ones. The new epoch is
// the previous one + 1, or the wall clock's Unix milliseconds if higher: so
// a lease item deleted (by an operator, a table restore) restarts above
// every earlier epoch, as long as the candidates' wall clocks differ by less
// than the time since the earlier takeover. With
// HotStandby, one other candidate holds a second lease item, fenced the same
// way, and reads the stream too without publishing: at most two candidates
// read (the two lease holders), and the hot standby takes over without
// starting a consumer.
//
// The leader renews every LeaseRenew (more often while a renewal is slow,
// see keep). It reads and publishes only until LeaseTTL - LeaseMargin after
// the start of its last successful renewal, on its own monotonic clock
// (every stream call is checked against that deadline, and bounded by it;
// every message is checked against it just before it is sent),
// and pauses past it until a renewal lands, or steps down if the lease was
// taken: so, with clock rates equal, it has stopped before any standby can
// judge the lease expired, and at most one candidate reads as the leader,
// even when the leader was frozen. The hot standby's reads are fenced by its
// own lease in the same way.
//
// With the defaults (T = 2 s: TTL 1 s, renewal and margin 250 ms), a takeover
// after the leader dies takes at most TTL + LeaseRenew + two reads of the
// lease items (about 1.3 s; 1.1 to 1.3 s measured by TestFailoverKeepsT),
// plus, without a hot standby, the new consumer's start. Pods meanwhile lose
// trust T/2 - MaxTransit after the last watermark they received and serve only young
// entries, so T holds; they flush on the new epoch and trust again on its
// first message. A hot standby that cannot take the expired lease resigns
// 2*LeaseTTL after the item last changed, and another candidate takes it
// once the standby's lease has expired: at most 3*TTL + LeaseRenew + two
// reads after the leader's last renewal (about 3.3 s).
type Bridge struct {
	o            BridgeOptions
	lease        lease     // the leader's
	standbyLease lease     // the hot standby's
	base         time.Time // origin of SentAt and of deadline

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool

	// deadline: nanoseconds since base until which this candidate may read
	// and publish (0: not leading); sdeadline: until which it may read as
	// the hot standby (0: not the standby).
	deadline, sdeadline atomic.Int64

	extMu sync.Mutex
	ext   chan struct{} // closed when a deadline moves (see extended)

	st bridgeCounters
}

type bridgeCounters struct {
	leader, standby                              atomic.Bool
	epoch, seq                                   atomic.Uint64
	getRecords, refused, published, keys, errors atomic.Int64
	takeovers, stepDowns, pauses, resigns        atomic.Int64
	renewals, renewErrors, renewMax              atomic.Int64
	leadingSince, lastReadEnd                    atomic.Int64 // b.now scale; 0: never
}

func (s *bridgeCounters) noteRenewal(d time.Duration) {
	s.renewals.Add(1)
	for m := s.renewMax.Load(); int64(d) > m && !s.renewMax.CompareAndSwap(m, int64(d)); m = s.renewMax.Load() {
	}
}

// BridgeStats is a snapshot of a Bridge.
type BridgeStats struct {
	// Leader: this candidate holds the leader's lease and its deadline has
	// not passed (it may read and publish now); Epoch is the epoch it last
	// led. Standby: it holds the hot standby's lease (it reads, publishes
	// nothing).
	Leader, Standby bool
	Epoch           uint64
	// Seq is the last sequence number published in Epoch.
	Seq uint64
	// GetRecords counts GetRecords calls this candidate sent; Refused the
	// stream calls refused because its lease deadline had passed.
	GetRecords, Refused int64
	// Published counts messages, Keys the keys they carried; PublishErrors
	// failed publications.
	Published, Keys, PublishErrors int64
	// Takeovers counts leader's leases taken; StepDowns leaderships ended;
	// Pauses the times the leader's deadline passed before a renewal landed
	// (reads and publications wait for one; the pods' trust lapses).
	Takeovers, StepDowns, Pauses int64
	// Resigns counts standby leases given up because the leader's lease
	// stayed unchanged for 2*LeaseTTL without this hot standby taking it.
	Resigns int64
	// Renewals counts lease renewals that returned, RenewErrors those that
	// failed (other than a lost lease); RenewMax is the slowest.
	Renewals, RenewErrors int64
	RenewMax              time.Duration
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
	return &Bridge{o: o, base: time.Now(), ext: make(chan struct{}),
		lease:        lease{api: o.DynamoDB, table: o.Table, key: o.LeaseKey, id: o.ID},
		standbyLease: lease{api: o.DynamoDB, table: o.Table, key: o.LeaseKey + StandbySuffix, id: o.ID}}, nil
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
	if b.o.Candidates != nil && !slices.Contains(b.o.Candidates, b.o.ID) {
		b.cancel = func() {}
		b.o.Logger.Info("fanout: not a configured candidate; this bridge stays idle", "id", b.o.ID)
		return nil
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
	return BridgeStats{Leader: s.leader.Load() && b.now() < b.deadline.Load(), Standby: s.standby.Load(),
		Epoch: s.epoch.Load(), Seq: s.seq.Load(), Pauses: s.pauses.Load(),
		Renewals: s.renewals.Load(), RenewErrors: s.renewErrors.Load(), RenewMax: time.Duration(s.renewMax.Load()),
		GetRecords: s.getRecords.Load(), Refused: s.refused.Load(), Published: s.published.Load(),
		Keys: s.keys.Load(), PublishErrors: s.errors.Load(), Takeovers: s.takeovers.Load(), StepDowns: s.stepDowns.Load(), Resigns: s.resigns.Load(),
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
		r, ok := b.campaign(ctx)
		if !ok {
			return
		}
		b.serve(ctx, r)
	}
}

// won is a lease this candidate took: the leader's or the standby's.
type won struct {
	standby bool
	epoch   uint64
	granted int64 // when the winning write began (b.now scale)
}

// campaign polls the lease items until this candidate takes one. It takes
// the leader's lease once it has seen it unchanged for LeaseTTL and the
// standby's lease is free too (absent, or unchanged for LeaseTTL): a live
// hot standby has precedence. With HotStandby, it takes a free standby
// lease once it has seen the leader's epoch unchanged for LeaseTTL, so the
// predecessor of that leader stopped reading at least LeaseTTL before this
// candidate starts.
func (b *Bridge) campaign(ctx context.Context) (won, bool) {
	var obsL, obsS observer
	t := time.NewTicker(b.o.LeaseRenew)
	defer t.Stop()
	for {
		sL, endL, errL := b.readLease(ctx, &b.lease)
		sS, endS, errS := b.readLease(ctx, &b.standbyLease)
		if errL == nil && errS == nil {
			lExpired := obsL.expired(sL, endL, b.o.LeaseTTL)
			sFree := obsS.expired(sS, endS, b.o.LeaseTTL)
			switch {
			case lExpired && sFree:
				if w, ok := b.take(ctx, &b.lease, sL); ok {
					b.o.Logger.Info("fanout: lease taken; leading", "id", b.o.ID, "epoch", w.epoch)
					return w, true
				}
				obsL = observer{}
			case b.o.HotStandby && sFree && obsL.epochStable(endL, b.o.LeaseTTL):
				if w, ok := b.take(ctx, &b.standbyLease, sS); ok {
					b.o.Logger.Info("fanout: standby lease taken; reading as hot standby", "id", b.o.ID)
					w.standby = true
					return w, true
				}
				obsS = observer{}
			}
		}
		select {
		case <-ctx.Done():
			return won{}, false
		case <-t.C:
		}
	}
}

// readLease reads l's item; end is when the read returned.
func (b *Bridge) readLease(ctx context.Context, l *lease) (leaseState, time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
	s, err := l.read(cctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		b.o.Logger.Warn("fanout: read lease", "item", l.key, "err", err)
	}
	return s, time.Now(), err
}

// take writes l for this candidate over seen; ok if it won.
func (b *Bridge) take(ctx context.Context, l *lease, seen leaseState) (won, bool) {
	start := b.now()
	cctx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
	e, ok, err := l.take(cctx, seen)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return won{}, false
		}
		// The write may have landed (a timeout on a loaded table): read
		// the item back, and if it holds this write, the lease is ours
		// since start (its deadline may have passed already: reading
		// then waits for a renewal). Otherwise it expires unused, as a
		// dead holder's would.
		b.o.Logger.Warn("fanout: take lease", "item", l.key, "err", err)
		s, _, rerr := b.readLease(ctx, l)
		if rerr != nil || !s.exists || s.holder != b.o.ID || s.epoch != e || s.rev != seen.rev+1 {
			return won{}, false
		}
		b.o.Logger.Info("fanout: the lease write that timed out had landed", "item", l.key, "epoch", s.epoch)
		return won{epoch: s.epoch, granted: start}, true
	}
	return won{epoch: e, granted: start}, ok
}

// serve reads the stream from taking a lease until holding none: as the hot
// standby (reading, publishing nothing) until it takes the leader's lease,
// then as the leader. The stream consumer and its position carry over from
// one role to the other.
func (b *Bridge) serve(ctx context.Context, w won) {
	sctx, stop := context.WithCancel(ctx)
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
		b.sdeadline.Store(0)
		b.extended()
		if b.st.leader.Swap(false) {
			b.st.stepDowns.Add(1)
		}
		b.st.standby.Store(false)
	}()
	sk := &bridgeSink{leaseKey: b.o.LeaseKey, standbyKey: b.standbyLease.key, discard: w.standby, wake: make(chan struct{}, 1)}
	if w.standby {
		b.sdeadline.Store(w.granted + int64(b.o.LeaseTTL-b.o.LeaseMargin))
		b.st.standby.Store(true)
	} else {
		b.startLeading(w)
	}
	b.extended()

	// Renewals of the lease taken: the standby's until it leads.
	kctx, endKeep := context.WithCancel(sctx)
	defer endKeep()
	var leading atomic.Bool // the standby's lease lost once leading does not matter
	if w.standby {
		b.keep(kctx, &wg, &b.standbyLease, w.epoch, &b.sdeadline, func() {
			if !leading.Load() {
				stop()
			}
		})
	} else {
		b.keep(kctx, &wg, &b.lease, w.epoch, &b.deadline, stop)
	}

	c, err := invalidation.New(invalidation.Options{
		Streams: &guardedStreams{b: b, api: b.o.Streams}, Tables: b.o.DynamoDB, Table: b.o.Table,
		Sink: sk, PollInterval: b.o.PollInterval, StaleAfter: b.o.StalenessBound / 2,
		MaxBackoff: 2 * b.o.LeaseRenew, Logger: b.o.Logger,
	})
	if err != nil {
		b.o.Logger.Error("fanout: stream consumer", "err", err)
		return
	}
	consumer = c
	if err := consumer.Start(sctx); err != nil {
		if sctx.Err() == nil {
			b.o.Logger.Warn("fanout: start stream consumer", "err", err)
		}
		return
	}
	if w.standby {
		lw, ok := b.await(sctx)
		if !ok {
			return
		}
		// Leading now: the standby's lease is left to expire (no more
		// renewals), and changes read from here on are published.
		leading.Store(true)
		endKeep()
		sk.lead()
		b.startLeading(lw)
		b.extended()
		b.keep(sctx, &wg, &b.lease, lw.epoch, &b.deadline, stop)
		b.st.standby.Store(false)
		b.o.Logger.Info("fanout: hot standby took the lease; leading", "id", b.o.ID, "epoch", lw.epoch)
		w = lw
	}
	b.publish(sctx, w.epoch, sk)
}

// startLeading records a leader's lease taken.
func (b *Bridge) startLeading(w won) {
	b.deadline.Store(w.granted + int64(b.o.LeaseTTL-b.o.LeaseMargin))
	b.st.epoch.Store(w.epoch)
	b.st.seq.Store(0)
	b.st.leader.Store(true)
	b.st.takeovers.Add(1)
	b.st.leadingSince.Store(w.granted)
}

// await polls the leader's lease while this candidate is the hot standby,
// and takes it once it has seen it unchanged for LeaseTTL. The other
// candidates defer to a live standby, so a standby that cannot take the
// lease must not hold on: once it has seen no change of the leader's lease
// for 2*LeaseTTL (its takes failed, or its reads of the item did), it
// resigns (ok false): it stops reading and renewing, and its lease expires
// LeaseTTL later, when another candidate takes the leader's lease as if
// there were no standby. (A live leader changes the item every LeaseRenew,
// and one unchanged for LeaseTTL is taken: 2*LeaseTTL without a change
// means this standby's takes or reads failed.)
func (b *Bridge) await(ctx context.Context) (won, bool) {
	var (
		obs     observer
		last    leaseState
		changed = time.Now() // when a read last returned a new state of the item
	)
	t := time.NewTicker(b.o.LeaseRenew)
	defer t.Stop()
	for {
		s, end, err := b.readLease(ctx, &b.lease)
		if err == nil && s != last {
			last, changed = s, end
		}
		if err == nil && obs.expired(s, end, b.o.LeaseTTL) {
			if w, ok := b.take(ctx, &b.lease, s); ok {
				return w, true
			}
			obs = observer{}
		}
		if time.Since(changed) >= 2*b.o.LeaseTTL && ctx.Err() == nil {
			b.st.resigns.Add(1)
			b.o.Logger.Warn("fanout: hot standby could not take the expired lease; resigning the standby's lease",
				"id", b.o.ID, "unchanged", time.Since(changed))
			return won{}, false
		}
		select {
		case <-ctx.Done():
			return won{}, false
		case <-t.C:
		}
	}
}

// maxRenewals bounds the renewals in flight at once.
const maxRenewals = 5

// keep renews l (held at epoch) every LeaseRenew until ctx ends, and calls
// lost if another candidate took it. Renewals do not wait for each other:
// while one is in flight (a loaded table, a stalled connection), the next
// starts after LeaseRenew/2, and any success moves *deadline to LeaseTTL -
// LeaseMargin after that renewal began, whichever lands first. So reading
// goes on while renewals take up to LeaseTTL - LeaseMargin - LeaseRenew/2
// (625 ms at T = 2 s). Each call is bounded by the deadline it would
// grant, so a late success still counts: reading pauses when *deadline
// passes and resumes when a renewal lands, with the same epoch.
func (b *Bridge) keep(ctx context.Context, wg *sync.WaitGroup, l *lease, epoch uint64, deadline *atomic.Int64, lost func()) {
	var inflight atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(b.o.LeaseRenew / 2)
		defer t.Stop()
		var last int64 // the first renewal goes at the first tick: the lease may have been taken long ago (see take)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n := inflight.Load()
			if since := b.now() - last; n >= maxRenewals || (n == 0 && since < int64(b.o.LeaseRenew)*9/10) {
				continue
			}
			last = b.now()
			inflight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inflight.Add(-1)
				start := b.now()
				grant := start + int64(b.o.LeaseTTL-b.o.LeaseMargin)
				cctx, cancel := context.WithDeadline(ctx, b.at(grant))
				err := l.renew(cctx, epoch)
				cancel()
				b.st.noteRenewal(time.Duration(b.now() - start))
				switch {
				case err == nil:
					for d := deadline.Load(); d < grant && d != 0; d = deadline.Load() {
						if deadline.CompareAndSwap(d, grant) {
							b.extended()
							break
						}
					}
				case errors.Is(err, errLeaseLost):
					if ctx.Err() == nil {
						b.o.Logger.Warn("fanout: lease taken by another candidate; stepping down", "item", l.key, "epoch", epoch)
						lost()
					}
				default:
					if ctx.Err() == nil {
						b.st.renewErrors.Add(1)
						b.o.Logger.Warn("fanout: renew lease", "item", l.key, "err", err)
					}
				}
			}()
		}
	}()
}

// extended wakes stream calls waiting for a lease deadline to move.
func (b *Bridge) extended() {
	b.extMu.Lock()
	close(b.ext)
	b.ext = make(chan struct{})
	b.extMu.Unlock()
}

// readUntil is the deadline of this candidate's reads (b.now scale; 0:
// none): the later of the leader's and the standby's lease deadlines, and
// the channel closed when it next moves.
func (b *Bridge) readUntil() (int64, <-chan struct{}) {
	b.extMu.Lock()
	ch := b.ext
	b.extMu.Unlock()
	return max(b.deadline.Load(), b.sdeadline.Load()), ch
}

// publish sends a batch after each shard poll that read changes (and every
// BatchInterval while there are any), a heartbeat every HeartbeatInterval
// otherwise, until ctx ends; nothing while the lease deadline has passed.
func (b *Bridge) publish(ctx context.Context, epoch uint64, sk *bridgeSink) {
	t := time.NewTicker(b.o.BatchInterval)
	defer t.Stop()
	var (
		seq     uint64
		lastPub time.Time
		prevW   time.Time // the watermark of the last message (zero: none)
		buf     []byte
		paused  bool
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-sk.wake: // a poll read changes: publish them now, not at the next tick
		}
		if b.now() >= b.deadline.Load() {
			// No renewal landed in time: reads are refused until one does
			// (or the lease is lost); the pods' trust lapses meanwhile.
			if !paused {
				paused = true
				b.st.pauses.Add(1)
				b.o.Logger.Warn("fanout: lease renewal late; reading and publishing paused", "epoch", epoch)
			}
			continue
		}
		if paused {
			paused = false
			b.o.Logger.Info("fanout: lease renewed; reading and publishing again", "epoch", epoch)
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
			if b.now() >= b.deadline.Load() {
				// The deadline passed while the batch was split or sent: a
				// deposed leader must not publish. The rest is dropped; its
				// sequence number is skipped, so every pod sees a gap at
				// the next message and flushes.
				b.st.seq.Store(seq)
				break
			}
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
	leaseKey, standbyKey string
	// wake tells the publisher that a poll that drained a shard read
	// changes (signalled from TrustUntil, which follows the poll's
	// Changed calls), so they go out at once, with the watermark it set.
	wake chan struct{}

	discard bool // hot standby: no change is published (pods flush on the next epoch anyway)

	mu    sync.Mutex
	cur   batch
	until time.Time
}

func (s *bridgeSink) Changed(c invalidation.Change) {
	if c.PartitionKey == s.leaseKey || c.PartitionKey == s.standbyKey || l2.IsLeasePartitionKey(c.PartitionKey) {
		return // the bridges' lease renewals, or a cache's fill lease: no cache holds either
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
	if s.discard {
		return
	}
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
// Not on ErrRecovered: the consumer's trust lapsed (a paused lease, a
// stall) but it kept its position, so no change is lost. A pod's trust,
// from the same watermarks (see Pod), ends no earlier than the consumer's:
// a pod whose trust lapsed too flushes by itself before trusting again, and
// one whose trust did not rested on true watermarks throughout.
func (s *bridgeSink) Flush(reason error) {
	if errors.Is(reason, invalidation.ErrRecovered) {
		return
	}
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

// lead makes a hot standby's sink collect from now on.
func (s *bridgeSink) lead() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discard, s.cur = false, batch{}
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

// errNotLeader is what a stream call gets once the lease deadline passed
// (and no renewal moved it while the call waited).
var errNotLeader = errors.New("fanout: not the leader or standby (lease deadline passed)")

// guardedStreams lets the consumer call the stream only while this
// candidate's lease deadline (the leader's or the standby's) has not
// passed, and bounds each call by it. Past it, a call waits (until its
// context ends) for a renewal to move it.
type guardedStreams struct {
	b   *Bridge
	api invalidation.StreamsAPI
}

func (g *guardedStreams) check(ctx context.Context) (context.Context, context.CancelFunc, error) {
	for waited := false; ; waited = true {
		d, moved := g.b.readUntil()
		if d != 0 && g.b.now() < d {
			ctx, cancel := context.WithDeadline(ctx, g.b.at(d))
			return ctx, cancel, nil
		}
		if !waited {
			g.b.st.refused.Add(1)
		}
		if d == 0 {
			return nil, nil, errNotLeader
		}
		select {
		case <-ctx.Done():
			return nil, nil, errNotLeader
		case <-moved:
		}
	}
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
