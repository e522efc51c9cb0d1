package tiered

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/singleflight"

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
	breaker  *gobreaker.CircuitBreaker[any]
	flights  singleflight.Group
	outage   chan struct{} // semaphore for loader calls while L2 is unavailable
	owner    string        // this node's identity: in leases, and the writer mark on its entries
	leaseSeq atomic.Uint64

	// loads holds the keys a GetOrLoad flight or a GetMany is loading, so
	// that neither loads a key the other already is (getmany.go).
	loads loadRegistry[V]

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

// stamp records that e's value was known current at at (l1's clock), and
// when refresh-ahead starts for it (jittered, so keys stored together refresh
// apart).
func (c *Cache[V]) stamp(e *entry[V], at int64, l1TTL time.Duration) {
	e.stored = at
	if c.o.RefreshAhead > 0 && l1TTL > 0 {
		soft := float64(l1TTL) * c.o.RefreshAhead * (1 - c.o.TTLJitter*rand.Float64())
		e.refreshAt = c.l1.Now() + int64(soft)
	}
}

// New builds a Cache, checks (or with CreateTable, creates) the table and
// starts following its stream. ctx bounds only the setup.
func New[V any](ctx context.Context, o Options[V]) (*Cache[V], error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	var cfg aws.Config
	if o.testStore == nil && (o.DynamoDB == nil || (o.Streams == nil && !o.DisableInvalidation)) {
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
		halfT:  int64(o.StalenessBound / 2),
		l2:     table,
		outage: make(chan struct{}, o.MaxOutageLoads),
		owner:  owner,
	}
	c.closeCtx, c.cancel = context.WithCancel(context.Background())
	c.breaker = newBreaker(o, &c.stats)
	c.pend.init(max(o.MaxPendingInvalidations, 0))

	if o.DisableInvalidation {
		c.trustedUntil.Store(math.MaxInt64)
	} else {
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
			StaleAfter:   o.StalenessBound / 2,
			Logger:       o.Logger,
			Now:          consumerNow(o.clock),
		})
		if err != nil {
			l1c.Close()
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		if err := consumer.Start(ctx); err != nil {
			consumer.Close()
			l1c.Close()
			return nil, fmt.Errorf("tiered: start stream consumer: %w", err)
		}
		c.consumer = consumer
	}
	go c.runPending()
	return c, nil
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

// l1Jitter is TTLJitter as l1 takes it: l1 reads 0 as its default, so "no
// jitter" (TTLJitter negative, stored as 0) is l1.NoJitter.
func l1Jitter(j float64) float64 {
	if j == 0 {
		return l1.NoJitter
	}
	return j
}

// l1Options is what New asks of L1, from options already defaulted.
func l1Options[V any](o Options[V]) l1.Options {
	return l1.Options{
		MaxBytes: o.L1MaxBytes,
		TTL:      o.L1TTL,
		MaxTTL:   o.L1MaxTTL,
		Jitter:   l1Jitter(o.TTLJitter),
		Clock:    o.clock,
	}
}

func newOwnerID() string {
	var b [12]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close stops the stream consumer, cancels loads in flight, waits for every
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
		if c.consumer != nil {
			_ = c.consumer.Close()
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

// ttls turns the TTL a loader chose (0: none) into the entry's L2 lifetime
// and the L1 lifetime to ask l1TTL for (0: L1TTL). A loader's choice applies
// to both tiers; otherwise L2 keeps the entry L2TTL and L1 for L1TTL. A
// negative entry lives NegativeTTL in both.
func (c *Cache[V]) ttls(chosen time.Duration, notFound bool) (l2TTL, l1Want time.Duration) {
	switch {
	case notFound:
		return c.o.NegativeTTL, c.o.NegativeTTL
	case chosen > 0:
		return chosen, chosen
	}
	return c.o.L2TTL, 0
}

// newer returns the live entry a refused fill found in the table (a write
// that landed while the fill loaded), if it can be decoded: callers of the
// fill get that rather than their older load.
func (c *Cache[V]) newer(err error) (*entry[V], bool) {
	var ce *l2.ConflictError
	if !errors.As(err, &ce) || ce.Current == nil {
		return nil, false
	}
	return c.fromItem(*ce.Current)
}

// l1TTL is the L1 lifetime of an entry whose L2 item expires at exp (zero:
// unknown) and whose preferred TTL is want: never past the L2 item. It is
// <= 0 when exp has passed: such an entry must not be stored.
func (c *Cache[V]) l1TTL(want time.Duration, exp time.Time) time.Duration {
	if want <= 0 {
		want = c.o.L1TTL
	}
	if want > c.o.L1MaxTTL {
		want = c.o.L1MaxTTL
	}
	if !exp.IsZero() {
		if left := time.Until(exp); left < want {
			want = left
		}
	}
	return want
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
