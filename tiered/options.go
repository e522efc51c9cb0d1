package tiered

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/tieredcache/tieredcache/invalidation"
)

// Defaults for Options. A zero field means its default.
const (
	DefaultL1MaxBytes      = 64 << 20         // 64 MiB of keys, values and per-item overhead
	DefaultL1TTL           = 1 * time.Minute  // how long an L1 entry lives unless the loader says otherwise
	DefaultL1MaxTTL        = 5 * time.Minute  // hard cap on every L1 entry: the last net if invalidation fails
	DefaultL2TTL           = 1 * time.Hour    // how long an L2 item lives (DynamoDB TTL + read-side filter)
	DefaultNegativeTTL     = 10 * time.Second // how long a "not found" from the loader is cached
	DefaultTTLJitter       = 0.1              // L1 TTLs are spread over [ttl*(1-j), ttl]
	DefaultLoadTimeout     = 10 * time.Second // bound on one shared load (L2 read + loader + L2 write)
	DefaultStalenessBound  = 2 * time.Second  // T: see the package doc
	DefaultPollInterval    = 50 * time.Millisecond
	DefaultLeaseTTL        = 5 * time.Second // how long a fill lease blocks other nodes' loaders
	DefaultLeaseWait       = 5 * time.Second // how long a node waits for another node's lease before loading itself
	DefaultMaxOutageLoads  = 64              // loader calls at once while L2 is unavailable
	DefaultBreakerFailures = 5               // consecutive L2 failures that open the breaker
	DefaultBreakerCooldown = 2 * time.Second // open -> half-open
	DefaultMaxStale        = 1 * time.Hour   // StaleIfError serves nothing that expired longer ago

	DefaultMaxPendingInvalidations = 10000           // failed invalidations kept for retry
	DefaultPendingDrainTimeout     = 2 * time.Second // how long Close retries them
)

// MissInfo describes one fill for Options.OnMiss.
type MissInfo struct {
	Op   string // "get" (Get), "load" (GetOrLoad, GetMany) or "refresh" (refresh-ahead)
	Keys int    // keys it fills: 1, or a GetMany's missing keys
}

// Options configures a Cache. The zero value of every field but Table is
// useful.
type Options[V any] struct {
	// Table is the DynamoDB table shared by every node. Required.
	Table string
	// Namespace prefixes every key in the table so several caches can share
	// one table. It must not contain '#'. Default "".
	Namespace string
	// CreateTable makes New create the table when it is missing (on-demand
	// billing, TTL and stream enabled). An existing table is always checked and
	// New fails with a precise error when it does not fit.
	CreateTable bool

	// AWS is the SDK configuration used to build clients when DynamoDB or
	// Streams is nil. Nil means config.LoadDefaultConfig (environment,
	// shared files, IAM role; AWS_ENDPOINT_URL is honoured).
	AWS *aws.Config
	// DynamoDB is used as it is when set (no settings of ours applied).
	DynamoDB *dynamodb.Client
	// Streams is used as it is when set; nil means
	// invalidation.NewStreamsClient(AWS config): no SDK retries, as the
	// consumer retries every call itself with its own backoff.
	Streams *dynamodbstreams.Client

	// Codec encodes values for L2. Nil: BytesCodec for []byte, StringCodec for
	// string, JSONCodec otherwise.
	Codec Codec[V]

	// EventuallyConsistentReads makes L2 reads eventually consistent (half
	// the read cost). Off by default, and off is what the guarantees assume:
	// the read that refills L1 after an invalidation must see the write that
	// caused it, or the older value it returns stays in L1 until L1TTL (no
	// stream record is left to evict it). Turn it on only if that is
	// acceptable. (DynamoDB Local's reads are consistent either way.)
	EventuallyConsistentReads bool

	// L1MaxBytes is the L1 budget: key + encoded value size + a fixed
	// per-item overhead, summed. Default DefaultL1MaxBytes.
	L1MaxBytes int64
	// L1TTL is how long an entry stays in L1. Default DefaultL1TTL, or
	// L1MaxTTL when that is shorter.
	L1TTL time.Duration
	// L1MaxTTL caps every L1 entry, including TTLs chosen by loaders: the
	// hard maximum age of a value served from L1 when invalidation fails.
	// Default DefaultL1MaxTTL.
	L1MaxTTL time.Duration
	// L2TTL is how long items live in DynamoDB. Default DefaultL2TTL. An L1
	// entry never outlives its L2 item.
	L2TTL time.Duration
	// NegativeTTL is how long a loader's ErrNotFound is cached in both tiers.
	// Default DefaultNegativeTTL; negative means do not cache not-found.
	NegativeTTL time.Duration
	// TTLJitter spreads L1 expiries so keys filled together do not expire
	// together. Default DefaultTTLJitter; negative means none.
	TTLJitter float64
	// LoadTimeout bounds one shared load: the fill of a GetOrLoad's or
	// GetMany's miss, or a refresh, from its L2 read to its L2 write.
	// Default DefaultLoadTimeout. A Get's miss calls no loader: it is
	// bounded by CallTimeout instead (its L2 reads, at most two, each end
	// within l2.HardTimeoutFactor x CallTimeout), and by LoadTimeout only
	// when CallTimeout is negative. Close ends either at once.
	LoadTimeout time.Duration
	// CallTimeout bounds how long one DynamoDB call may wait for DynamoDB to
	// answer (see l2.Options.CallTimeout for how large answers are timed).
	// Default l2.DefaultCallTimeout; negative: no deadline of ours.
	CallTimeout time.Duration

	// StalenessBound is T, the promise of the package doc. Default
	// DefaultStalenessBound.
	StalenessBound time.Duration
	// PollInterval is how often each stream shard is polled when idle.
	// Default DefaultPollInterval. Each poll is a billed GetRecords call.
	PollInterval time.Duration
	// DisableInvalidation turns the stream consumer off: only for a single
	// node, or tests. Other nodes' writes then reach this L1 only by expiry.
	DisableInvalidation bool
	// Invalidation, when set, replaces the built-in stream consumer: the
	// cache then reads no stream, and Invalidation delivers "key changed",
	// "flush" and trust deadlines to the cache (for example the fan-out
	// module's pod source, github.com/tieredcache/tieredcache/fanout). New
	// starts it (after the table check) and Close closes it; it must not be
	// shared between caches. Streams and PollInterval are then unused. Nil:
	// the built-in consumer. Ignored with DisableInvalidation.
	Invalidation invalidation.Source
	// ReplaceOnChange, for a table whose stream view includes NEW_IMAGE,
	// replaces an L1 entry in place with the stream's newer version instead of
	// dropping it, so a hot key does not send every node to DynamoDB at once.
	// With CreateTable the stream is created with NEW_IMAGE.
	ReplaceOnChange bool

	// DisableLeases turns off cross-node fill leases: every node that misses
	// L2 then calls its loader.
	DisableLeases bool
	// LeaseTTL is how long a lease holds. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// LeaseWait bounds how long a node waits on another node's lease.
	// Default DefaultLeaseWait.
	LeaseWait time.Duration

	// RefreshAhead, in (0, 1-TTLJitter), is the fraction of an entry's L1
	// TTL after which a hit returns the value and refreshes it once in the
	// background. It must be below 1-TTLJitter so that every entry, however
	// short the jitter made it, reaches its refresh point before it expires.
	// 0 (default) turns it off.
	RefreshAhead float64
	// StaleIfError serves the last known value, with a *StaleError (errors.Is
	// ErrStale), when the loader fails and one is known: an L1 entry not
	// served because the stream is unhealthy, or an expired L2 item the TTL
	// sweeper has not deleted yet. A failed refresh-ahead keeps serving the
	// current entry until its TTL whether or not this is set.
	StaleIfError bool
	// MaxStale bounds StaleIfError: an L2 item that expired longer ago than
	// this is not served. Default DefaultMaxStale.
	MaxStale time.Duration

	// MaxOutageLoads caps concurrent loader calls while L2 is unavailable.
	// Default DefaultMaxOutageLoads.
	MaxOutageLoads int
	// BreakerFailures is how many L2 failures in a row open the breaker.
	// Default DefaultBreakerFailures.
	BreakerFailures uint32
	// BreakerCooldown is how long the breaker stays open before it tries
	// DynamoDB again. Default DefaultBreakerCooldown.
	BreakerCooldown time.Duration

	// MaxPendingInvalidations bounds the invalidations this node keeps
	// retrying after a Set or Delete failed with ErrL2Unavailable (see the
	// README, "A failed write is not forgotten"). Default
	// DefaultMaxPendingInvalidations; negative: none kept (overflow at once).
	MaxPendingInvalidations int
	// PendingDrainTimeout bounds how long Close keeps retrying pending
	// invalidations before it gives up on them. Default
	// DefaultPendingDrainTimeout.
	PendingDrainTimeout time.Duration

	// Logger receives operational events (never keys, values or
	// credentials). Default: discard.
	Logger *slog.Logger
	// OnMiss, if set, is called once per fill (the shared work of a miss: a
	// Get or GetOrLoad flight, a GetMany's batch, a refresh-ahead), on the
	// goroutine that runs it, with the context it runs on (the caller's
	// values, not its cancellation). The context it returns is the one the
	// fill's DynamoDB calls and loader calls get; end is called with the
	// fill's first error (nil: none) when it is over. For tracing (a span per
	// miss: the otel module's tieredotel.TraceMisses): nothing calls it on an
	// L1 hit.
	OnMiss func(ctx context.Context, miss MissInfo) (_ context.Context, end func(error))
	// OnInvalidate, if set, is called after the stream made this node drop or
	// replace a key, with the record's approximate creation time. It runs on
	// the consumer's goroutine: keep it short.
	OnInvalidate func(key string, created time.Time)

	// clock, when set (only by tests, through export_test.go), replaces the
	// process's monotonic clock (internal/mono) for L1 (expiry), the hit
	// path (trust), stamps and refresh-ahead, and the stream consumer (whose
	// polls set the trust deadline the hit path compares with). Nil costs
	// nothing: l1 reads internal/mono directly.
	clock func() int64
	// testStore, when set (only by tests, through export_test.go), builds
	// the table the cache uses instead of an *l2.Table on DynamoDB, given
	// this node's writer mark and its wall clock (nil: time.Now; from the
	// test clock when one is set); New then makes no AWS call. Only with
	// DisableInvalidation: there is no stream to follow.
	testStore func(writer string, now func() time.Time) store
}

// trustWindow is T/2, StalenessBound/2: how long a poll that drained every
// shard keeps L1 trusted, the age below which an entry is served while
// trust has lapsed, and the age past which a fill's L2 answer is read again.
func (o *Options[V]) trustWindow() time.Duration { return o.StalenessBound / 2 }

func (o *Options[V]) setDefaults() error {
	if o.Table == "" {
		return fmt.Errorf("%w: Table is required", ErrInvalidOptions)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.L1MaxBytes == 0 {
		o.L1MaxBytes = DefaultL1MaxBytes
	}
	def(&o.L1MaxTTL, DefaultL1MaxTTL)
	def(&o.L1TTL, min(DefaultL1TTL, max(o.L1MaxTTL, 0))) // an unset L1TTL never exceeds L1MaxTTL
	def(&o.L2TTL, DefaultL2TTL)
	def(&o.NegativeTTL, DefaultNegativeTTL)
	def(&o.LoadTimeout, DefaultLoadTimeout)
	def(&o.StalenessBound, DefaultStalenessBound)
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.LeaseTTL, DefaultLeaseTTL)
	def(&o.LeaseWait, DefaultLeaseWait)
	def(&o.BreakerCooldown, DefaultBreakerCooldown)
	def(&o.MaxStale, DefaultMaxStale)
	if o.TTLJitter == 0 {
		o.TTLJitter = DefaultTTLJitter
	} else if o.TTLJitter < 0 {
		o.TTLJitter = 0
	}
	if o.MaxOutageLoads == 0 {
		o.MaxOutageLoads = DefaultMaxOutageLoads
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = DefaultBreakerFailures
	}
	if o.Codec == nil {
		o.Codec = defaultCodec[V]()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxPendingInvalidations == 0 {
		o.MaxPendingInvalidations = DefaultMaxPendingInvalidations
	}
	def(&o.PendingDrainTimeout, DefaultPendingDrainTimeout)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"L1TTL", o.L1TTL}, {"L1MaxTTL", o.L1MaxTTL}, {"L2TTL", o.L2TTL}, {"LoadTimeout", o.LoadTimeout},
		{"StalenessBound", o.StalenessBound}, {"PollInterval", o.PollInterval}, {"LeaseTTL", o.LeaseTTL},
		{"LeaseWait", o.LeaseWait}, {"BreakerCooldown", o.BreakerCooldown}, {"MaxStale", o.MaxStale},
		{"PendingDrainTimeout", o.PendingDrainTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v must not be negative", ErrInvalidOptions, d.name, d.v)
		}
	}
	switch {
	case o.L1MaxBytes < 0:
		return fmt.Errorf("%w: L1MaxBytes %d < 0", ErrInvalidOptions, o.L1MaxBytes)
	case o.L1TTL > o.L1MaxTTL:
		return fmt.Errorf("%w: L1TTL %v exceeds L1MaxTTL %v", ErrInvalidOptions, o.L1TTL, o.L1MaxTTL)
	case o.TTLJitter != o.TTLJitter || o.TTLJitter >= 1: // NaN, or too large
		return fmt.Errorf("%w: TTLJitter %v must be a number below 1", ErrInvalidOptions, o.TTLJitter)
	case o.RefreshAhead != o.RefreshAhead || o.RefreshAhead < 0 || o.RefreshAhead >= 1: // NaN is refused too
		return fmt.Errorf("%w: RefreshAhead %v must be in [0,1)", ErrInvalidOptions, o.RefreshAhead)
	case o.RefreshAhead > 0 && o.RefreshAhead >= 1-o.TTLJitter:
		// An entry's L1 TTL is jittered down to as little as (1-TTLJitter)
		// of it; a refresh point at or past that is never reached by some
		// entries, which then expire instead of refreshing.
		return fmt.Errorf("%w: RefreshAhead %v must be below 1-TTLJitter (%v): entries jittered short would expire before their refresh point",
			ErrInvalidOptions, o.RefreshAhead, 1-o.TTLJitter)
	case o.PollInterval >= o.trustWindow():
		return fmt.Errorf("%w: PollInterval %v must be well below StalenessBound/2 (%v)", ErrInvalidOptions, o.PollInterval, o.trustWindow())
	case o.MaxOutageLoads < 0:
		return fmt.Errorf("%w: MaxOutageLoads %d < 0", ErrInvalidOptions, o.MaxOutageLoads)
	}
	return nil
}
