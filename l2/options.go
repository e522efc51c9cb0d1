package l2

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Defaults for Options.
const (
	DefaultTombstoneTTL = 1 * time.Hour          // how long a Delete's tombstone keeps the version
	DefaultCallTimeout  = 500 * time.Millisecond // longest wait without progress of one data-path call (see Options.CallTimeout)
	DefaultBatchRetries = 5                      // BatchGet retries of UnprocessedKeys before *PartialError
	DefaultBatchBackoff = 10 * time.Millisecond  // first UnprocessedKeys backoff (doubled, full jitter)
	DefaultBatchMaxWait = 200 * time.Millisecond // cap of one UnprocessedKeys backoff
	DefaultStreamView   = types.StreamViewTypeKeysOnly
)

// API is the subset of *dynamodb.Client this package calls, so that tests
// and users can wrap it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

var _ API = (*dynamodb.Client)(nil)

// Options configure a Table. The zero value of every optional field means
// its default.
type Options struct {
	// Client is the DynamoDB client, used as it is (no settings of ours are
	// applied to it; see NewClient for a client with cache-suited settings).
	// Required.
	Client API
	// Table is the table name: 3 to 255 characters of [a-zA-Z0-9_.-]. Required.
	Table string
	// Namespace prefixes every key (pk = Namespace + "#" + key), so that
	// several caches can share a table. May be empty; must be valid UTF-8 and
	// must not contain '#'.
	Namespace string
	// Writer marks every entry this handle stores (attribute w), so that a
	// reader of the item or of its stream record can tell this handle's own
	// writes from any other: give each process its own unguessable Writer.
	// Empty: entries are stored unmarked. At most MaxWriterBytes of valid
	// UTF-8.
	Writer string
	// TombstoneTTL is how long a Delete's tombstone lives (it keeps the key's
	// version growing across a delete). Default DefaultTombstoneTTL.
	TombstoneTTL time.Duration
	// CallTimeout bounds how long a data-path call (Get, BatchGet's pages,
	// writes, leases) may wait without progress: for its response to start
	// (for a BatchGetItem page, one CallTimeout per BatchKeysPerCallTimeout
	// keys requested) and between bytes of the response body. The deadline
	// is re-armed at each attempt and while bytes arrive, and lifted once the
	// body has been read; whatever the progress, a call (retries included)
	// ends after HardTimeoutFactor x CallTimeout. A call that runs out fails
	// with ErrTimeout; so large answers are slow, not failed, while a
	// DynamoDB that does not answer is still told within CallTimeout. The
	// caller's own deadline applies as well. Default DefaultCallTimeout;
	// negative: no deadline of ours. See watchdog.go.
	CallTimeout time.Duration
	// ConsistentRead makes Get and BatchGet strongly consistent reads (twice
	// the read cost). Default false: eventually consistent, which may miss a
	// write acknowledged a few milliseconds earlier by another node.
	ConsistentRead bool
	// BatchRetries is how many times BatchGet retries UnprocessedKeys before
	// giving up with a *PartialError. Default DefaultBatchRetries; negative: none.
	BatchRetries int
	// BatchBackoff is the first UnprocessedKeys backoff; each retry doubles it
	// up to BatchMaxWait and sleeps a uniformly random part of it (full jitter).
	// Defaults DefaultBatchBackoff and DefaultBatchMaxWait.
	BatchBackoff time.Duration
	BatchMaxWait time.Duration
	// StreamView is the stream view type EnsureTable creates, and the least it
	// accepts on an existing table. Default DefaultStreamView (KEYS_ONLY).
	StreamView types.StreamViewType
	// Now is the clock; default time.Now. For tests.
	Now func() time.Time
}

// Table is one cache table. It is safe for concurrent use and holds no
// goroutines: there is nothing to close.
type Table struct {
	o     Options
	c     API
	stats stats

	progress     progressCache
	withProgress []func(*dynamodb.Options) // {progressOpt}, built once: a method value and a variadic slice per call allocate
	tableName    *string                   // &o.Table for read inputs, built once (the SDK does not change inputs)
}

// New checks o and returns a Table. It makes no call to DynamoDB (see
// EnsureTable).
func New(o Options) (*Table, error) {
	if o.Client == nil {
		return nil, &OptionsError{"Client", "required"}
	}
	if err := validTableName(o.Table); err != nil {
		return nil, err
	}
	if strings.Contains(o.Namespace, "#") {
		return nil, &OptionsError{"Namespace", "must not contain '#'"}
	}
	if !validUTF8(o.Namespace) {
		return nil, &OptionsError{"Namespace", "not valid UTF-8"}
	}
	if len(o.Writer) > MaxWriterBytes || !validUTF8(o.Writer) {
		return nil, &OptionsError{"Writer", "must be valid UTF-8 of at most 64 bytes"}
	}
	if len(o.Namespace)+1 >= MaxPartitionKeyBytes {
		return nil, &OptionsError{"Namespace", "too long"}
	}
	switch {
	case o.TombstoneTTL == 0:
		o.TombstoneTTL = DefaultTombstoneTTL
	case o.TombstoneTTL < time.Second:
		return nil, &OptionsError{"TombstoneTTL", "must be at least 1s"}
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.BatchRetries == 0 {
		o.BatchRetries = DefaultBatchRetries
	} else if o.BatchRetries < 0 {
		o.BatchRetries = 0
	}
	if o.BatchBackoff < 0 || o.BatchMaxWait < 0 {
		return nil, &OptionsError{"BatchBackoff", "negative"}
	}
	if o.BatchBackoff == 0 {
		o.BatchBackoff = DefaultBatchBackoff
	}
	if o.BatchMaxWait == 0 {
		o.BatchMaxWait = DefaultBatchMaxWait
	}
	if o.StreamView == "" {
		o.StreamView = DefaultStreamView
	}
	switch o.StreamView {
	case types.StreamViewTypeKeysOnly, types.StreamViewTypeNewImage, types.StreamViewTypeOldImage,
		types.StreamViewTypeNewAndOldImages:
	default:
		return nil, &OptionsError{"StreamView", "unknown stream view type"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Table{o: o, c: o.Client}
	t.withProgress = []func(*dynamodb.Options){t.progressOpt}
	t.tableName = aws.String(o.Table)
	return t, nil
}

func validTableName(name string) error {
	if len(name) < 3 || len(name) > 255 {
		return &OptionsError{"Table", "must be 3 to 255 characters"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return &OptionsError{"Table", "only [a-zA-Z0-9_.-] allowed"}
		}
	}
	return nil
}
