package tiered

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/sony/gobreaker/v2"

	"github.com/tieredcache/tieredcache/internal/mono"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l1"
	"github.com/tieredcache/tieredcache/l2"
)

// Cache is a two-tier cache of values of type V. See the package doc for what
// it guarantees. Create one with New; the zero value is not usable.
type Cache[V any] struct {
	// The L1-hit path reads these three only: keep them on one cache line,
	// away from anything written often.
	l1 *l1.Cache[*entry[V]]
	// trustedUntil is when trust in L1 lapses, on l1's clock (internal/mono):
	// the stream consumer moves it forward after each complete poll of every
	// shard (Sink.TrustUntil). A hit compares it with its own clock reading,
	// so a process that was frozen, and whose consumer has not polled since,
	// never serves an old entry on the strength of trust granted before the
	// freeze. MaxInt64 with DisableInvalidation.
	trustedUntil atomic.Int64
	// halfT is StalenessBound/2 in nanoseconds: the trust window, and the
	// age below which an entry is served while trust has lapsed.
	halfT int64

	o        Options[V]
	l2       store // *l2.Table, but in tests (store.go)
	consumer *invalidation.Consumer
	source   invalidation.Source // Options.Invalidation, started (nil otherwise)
	breaker  *gobreaker.CircuitBreaker[any]
	outage   chan struct{} // semaphore for loader calls while L2 is unavailable
	owner    string        // this node's identity: in leases, and the writer mark on its entries
	leaseSeq atomic.Uint64
	// keys indexes keys by hash for a Source that sends key hashes
	// (keyindex.go); nil otherwise.
	keys *keyIndex

	// flights is the in-flight registry: one fill per key at a time
	// (flights.go).
	flights flights[V]
	ttl     ttlPolicy    // lifetimes (ttl.go)
	live    liveFills[V] // fills in flight, for Close (loadctx.go)

	stats counters
	// trusting is the trust state the sink last saw (for the log and
	// degraded episodes only; the hit path reads trustedUntil).
	trusting atomic.Bool
	pend     pendingSet // failed invalidations retried in the background (pending.go)

	life     sync.RWMutex // guards closed + wg.Add against Close
	closed   bool
	wg       sync.WaitGroup
	closeCtx context.Context
	cancel   context.CancelFunc
	isClosed atomic.Bool
	once     sync.Once
}

// entry is what L1 stores: immutable once stored, but for refreshing.
type entry[V any] struct {
	value    V
	version  int64
	notFound bool
	// fromSource: the value came from a loader call, not from the table.
	fromSource bool
	// sum is valueSum of the encoded value as it is (or was written) in the
	// table: with the writer mark and the version, it proves a stream image
	// is this entry's own write coming back (sink.replace).
	sum uint64
	// stored is when the value was known current, on l1's clock: when the
	// fill that read it began (its fence was taken), so never later than the
	// L2 read or load it came from.
	stored int64
	// refreshAt is when a hit starts a refresh-ahead (l1's clock; 0:
	// never). refreshing makes that happen once per entry.
	refreshAt  int64
	refreshing atomic.Bool
	// err is set only on entries handed to callers, never stored: a stale
	// value served with a *StaleError.
	err error
}

// valueSum is a 64-bit hash of an encoded value (nil: a negative entry):
// l2.ValueSum, the same in every process, so that a fan-out bridge's proof
// of a write (l2.WriteProof) can be checked against it.
func valueSum(enc []byte) uint64 { return l2.ValueSum(enc) }

// stamp records that e's value was known current at stored (l1's clock)
// and will live ttl in L1, and when refresh-ahead starts for it (ttl.go).
func (c *Cache[V]) stamp(e *entry[V], stored int64, ttl time.Duration) {
	e.stored = stored
	e.refreshAt = c.ttl.refreshAt(stored, ttl)
}

// New builds a Cache, checks (or with CreateTable, creates) the table and
// starts following its stream. ctx bounds only the setup.
func New[V any](ctx context.Context, o Options[V]) (*Cache[V], error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	var cfg aws.Config
	if o.testStore == nil && (o.DynamoDB == nil || (o.Streams == nil && !o.DisableInvalidation && o.Invalidation == nil)) {
		if o.AWS != nil {
			cfg = *o.AWS
		} else {
			var err error
			if cfg, err = config.LoadDefaultConfig(ctx); err != nil {
				return nil, fmt.Errorf("tiered: load AWS config: %w", err)
			}
		}
	}
	ddb := o.DynamoDB
	if ddb == nil {
		// The SDK's own log lines go to Options.Logger, never to stderr.
		ddb = l2.NewClient(cfg, l2.WithLogger(o.Logger))
	}
	view := l2.DefaultStreamView
	if o.ReplaceOnChange {
		view = types.StreamViewTypeNewImage
	}
	owner := newOwnerID()
	var table store
	if o.testStore != nil {
		table = o.testStore(owner, consumerNow(o.clock))
	} else {
		t, err := l2.New(l2.Options{Client: ddb, Table: o.Table, Namespace: o.Namespace, StreamView: view,
			Writer:         owner, // entries this node stores carry it: the sink tells its own writes by it
			ConsistentRead: !o.EventuallyConsistentReads, CallTimeout: o.CallTimeout})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		if err := ensureTable(ctx, t, o); err != nil {
			return nil, err
		}
		table = t
	}
	l1c, err := l1.New[*entry[V]](l1Options(o))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c := &Cache[V]{
		o:      o,
		l1:     l1c,
		halfT:  int64(o.trustWindow()),
		ttl:    newTTLPolicy(&o),
		l2:     table,
		outage: make(chan struct{}, o.MaxOutageLoads),
		owner:  owner,
	}
	if hs, ok := o.Invalidation.(invalidation.HashingSource); ok && hs.SendsKeyHashes() && !o.DisableInvalidation {
		c.keys = newKeyIndex(o.Namespace, o.L1MaxTTL, l1c.Now)
	}
	c.flights.init()
	c.live.m = make(map[*fill[V]]context.CancelFunc)
	c.closeCtx, c.cancel = context.WithCancel(context.Background())
	c.breaker = newBreaker(o, &c.stats)
	c.pend.init(max(o.MaxPendingInvalidations, 0))

	if o.DisableInvalidation {
		c.trustedUntil.Store(math.MaxInt64)
	} else if o.Invalidation != nil {
		if err := startSource(ctx, c); err != nil {
			l1c.Close()
			return nil, err
		}
	} else if c.consumer, err = startConsumer(ctx, c, cfg, ddb); err != nil {
		l1c.Close()
		return nil, err
	}
	go c.runPending()
	return c, nil
}

// startConsumer starts following the table's stream for c.
func startConsumer[V any](ctx context.Context, c *Cache[V], cfg aws.Config, ddb *dynamodb.Client) (*invalidation.Consumer, error) {
	o := c.o
	streams := o.Streams
	if streams == nil {
		// No SDK retries: the consumer retries every call itself (see
		// invalidation.NewStreamsClient).
		streams = invalidation.NewStreamsClient(cfg, invalidation.WithLogger(o.Logger))
	}
	consumer, err := invalidation.New(invalidation.Options{
		Streams:      streams,
		Tables:       ddb,
		Table:        o.Table,
		PartitionKey: l2.PartitionKeyAttr,
		Sink:         sink[V]{c},
		PollInterval: o.PollInterval,
		StaleAfter:   o.trustWindow(),
		Logger:       o.Logger,
		Now:          consumerNow(o.clock),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if err := consumer.Start(ctx); err != nil {
		consumer.Close()
		return nil, fmt.Errorf("tiered: start stream consumer: %w", err)
	}
	return consumer, nil
}

// startSource starts Options.Invalidation in place of the stream consumer.
// On failure it is closed, so that nothing it started outlives New.
func startSource[V any](ctx context.Context, c *Cache[V]) error {
	now := consumerNow(c.o.clock)
	if now == nil {
		now = time.Now
	}
	src := c.o.Invalidation
	err := src.Start(ctx, invalidation.SourceConfig{
		Sink: sink[V]{c}, StaleAfter: c.o.trustWindow(), Now: now, Logger: c.o.Logger,
	})
	if err != nil {
		_ = src.Close()
		return fmt.Errorf("tiered: start invalidation source: %w", err)
	}
	c.source = src
	return nil
}

// consumerNow is the stream consumer's clock: nil (time.Now) unless a test
// installed one, which the consumer then shares, so that the trust deadlines
// it sets are on the scale the hit path reads.
func consumerNow(clock func() int64) func() time.Time {
	if clock == nil {
		return nil
	}
	return func() time.Time { return mono.Time(clock()) }
}

// l1Options is what New asks of L1, from options already defaulted.
func l1Options[V any](o Options[V]) l1.Options {
	return l1.Options{
		MaxBytes: o.L1MaxBytes,
		TTL:      o.L1TTL,
		MaxTTL:   o.L1MaxTTL,
		Jitter:   l1.NoJitter, // tiered jitters, once (ttl.go), and passes l1 exact TTLs
		Clock:    o.clock,
	}
}

func newOwnerID() string {
	var b [12]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close stops the stream consumer (or closes Options.Invalidation), cancels loads in flight, waits for every
// goroutine the cache started and releases L1. It is safe to call twice and
// concurrently with any other method; those return ErrClosed afterwards.
func (c *Cache[V]) Close() error {
	c.once.Do(func() {
		c.life.Lock()
		c.closed = true
		c.isClosed.Store(true)
		c.life.Unlock()
		// Writes are refused from here on: retry what is pending (within
		// PendingDrainTimeout) before cancelling anything.
		close(c.pend.stop)
		<-c.pend.done
		c.cancel()
		c.live.cancelAll()
		if c.consumer != nil {
			_ = c.consumer.Close()
		}
		if c.source != nil {
			_ = c.source.Close()
		}
		c.wg.Wait()
		_ = c.l1.Close()
	})
	return nil
}

// track registers a goroutine or call that Close must wait for.
func (c *Cache[V]) track() bool {
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// ensureTable creates (CreateTable) or checks the table; a table that does
// not fit is a *l2.TableMismatchError wrapped in ErrInvalidOptions.
func ensureTable[V any](ctx context.Context, t *l2.Table, o Options[V]) error {
	var err error
	if o.CreateTable {
		err = t.EnsureTable(ctx)
	} else {
		err = t.CheckTable(ctx)
	}
	if errors.Is(err, l2.ErrTableMismatch) {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if err != nil {
		return fmt.Errorf("tiered: table setup: %w", err)
	}
	return nil
}
