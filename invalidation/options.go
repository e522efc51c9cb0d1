package invalidation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
)

// StreamsAPI is the part of *dynamodbstreams.Client the consumer uses.
type StreamsAPI interface {
	DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

// TableAPI is the part of *dynamodb.Client the consumer uses.
type TableAPI interface {
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// Defaults for Options.
const (
	// DefaultPartitionKey is the partition key attribute tieredcache's table uses.
	DefaultPartitionKey = "pk"
	// DefaultPollInterval: Lambda polls 4 times a second and KCL once; 50 ms keeps
	// the invalidation lag well under 100 ms at 20 calls a second per shard.
	DefaultPollInterval = 50 * time.Millisecond
	// DefaultStaleAfter is T/2 for tieredcache's default staleness bound T = 2s.
	DefaultStaleAfter = time.Second
	// DefaultDescribeInterval is how often DescribeTable checks the stream ARN
	// and that the stream is enabled.
	DefaultDescribeInterval = time.Second
	// DefaultShardListInterval is how often the full shard listing is refreshed
	// (closed shards trigger a listing of their children at once anyway).
	DefaultShardListInterval = 10 * time.Second
	// DefaultMaxBackoff caps the exponential backoff after errors and throttling.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultCallTimeout bounds every API call.
	DefaultCallTimeout = 3 * time.Second
)

// Options configures a Consumer. Zero fields take the Default* values.
type Options struct {
	// Streams reads the stream. Required; usually NewStreamsClient(cfg).
	Streams StreamsAPI
	// Tables looks up the table's current stream. Required; a *dynamodb.Client.
	Tables TableAPI
	// Table is the table name. Required.
	Table string
	// PartitionKey is the name of the table's partition key attribute, whose
	// value (S, N or B) becomes Change.PartitionKey. Default DefaultPartitionKey.
	PartitionKey string
	// Sink receives the events. Required.
	Sink Sink
	// PollInterval is the pause between GetRecords calls on a shard when the
	// previous call returned no records. Default DefaultPollInterval.
	PollInterval time.Duration
	// StaleAfter is the trust window: trust lasts until StaleAfter after the
	// start of the oldest of the shards' last draining polls (Sink.TrustUntil). Default DefaultStaleAfter.
	StaleAfter time.Duration
	// DescribeInterval is the DescribeTable period. Default DefaultDescribeInterval.
	DescribeInterval time.Duration
	// ShardListInterval is the full DescribeStream listing period.
	// Default DefaultShardListInterval.
	ShardListInterval time.Duration
	// MaxBackoff caps the backoff after errors. Default DefaultMaxBackoff.
	MaxBackoff time.Duration
	// CallTimeout bounds each API call. Default DefaultCallTimeout.
	CallTimeout time.Duration
	// Logger gets warnings about errors (never keys or values). Default: discard.
	Logger *slog.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// ErrInvalidOptions is returned (wrapped in an *OptionsError) by New.
var ErrInvalidOptions = errors.New("invalidation: invalid options")

// OptionsError names the offending field.
type OptionsError struct {
	Field  string
	Reason string
}

func (e *OptionsError) Error() string {
	return fmt.Sprintf("invalidation: invalid options: %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidOptions) true.
func (e *OptionsError) Is(target error) bool { return target == ErrInvalidOptions }

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Streams == nil:
		return o, &OptionsError{"Streams", "required"}
	case o.Tables == nil:
		return o, &OptionsError{"Tables", "required"}
	case o.Table == "":
		return o, &OptionsError{"Table", "required"}
	case o.Sink == nil:
		return o, &OptionsError{"Sink", "required"}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"PollInterval", &o.PollInterval, DefaultPollInterval},
		{"StaleAfter", &o.StaleAfter, DefaultStaleAfter},
		{"DescribeInterval", &o.DescribeInterval, DefaultDescribeInterval},
		{"ShardListInterval", &o.ShardListInterval, DefaultShardListInterval},
		{"MaxBackoff", &o.MaxBackoff, DefaultMaxBackoff},
		{"CallTimeout", &o.CallTimeout, DefaultCallTimeout},
	} {
		if *d.v < 0 {
			return o, &OptionsError{d.name, "negative"}
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.PartitionKey == "" {
		o.PartitionKey = DefaultPartitionKey
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}
