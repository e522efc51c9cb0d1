package invalidation

import (
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// Change is one stream record: the item with this partition key changed.
type Change struct {
	// PartitionKey is the value of Options.PartitionKey (N as its decimal text,
	// B as its bytes). Empty when the change names its item by KeyHash.
	PartitionKey string
	// KeyHash, when PartitionKey is empty, names the item by a 64-bit hash of
	// its partition key value (l2.PartitionKeyHash): only from a Source that
	// implements HashingSource and reports true. The sink drops every key
	// it holds or is filling whose hash it is (a collision costs another
	// key's eviction, nothing more).
	KeyHash uint64
	// EventName is INSERT, MODIFY or REMOVE.
	EventName string
	// ByTTL is true for a REMOVE made by DynamoDB's TTL sweeper.
	ByTTL bool
	// Created is the record's ApproximateCreationDateTime (AWS rounds it to the
	// second or millisecond depending on the stream).
	Created time.Time
	// SequenceNumber orders records within a shard.
	SequenceNumber string
	// NewImage is nil unless the stream view type includes NEW_IMAGE.
	NewImage map[string]types.AttributeValue
	// Summary, when not nil, stands for the new image where a source
	// carries only a compact one (the fan-out pods; NewImage is then nil).
	// It cannot replace an entry; it lets a node keep the entry it holds
	// when the change is provably that very write of its own.
	Summary *ImageSummary
}

// ImageSummary is the part of a NEW_IMAGE a node needs to recognise its own
// write.
type ImageSummary struct {
	// Version is the item's version (attribute ver); 0 if it has none.
	Version int64
	// Proof is l2.WriteProof of the image's writer mark, value and
	// not-found flag (l2.Item.Proof); 0 for an unmarked image, which
	// proves nothing.
	Proof uint64
}

// Sink receives the consumer's events. Its methods are never called
// concurrently with one another, and must return quickly: a slow sink delays
// every shard.
type Sink interface {
	// Changed reports a change, in stream order per shard.
	Changed(c Change)
	// Flush means the consumer may have missed changes: drop everything cached.
	// reason is one of the Err* sentinels below (possibly wrapped).
	Flush(reason error)
	// TrustUntil says until when cached entries may be served: every change
	// made before until minus StaleAfter has been reported (give or take the
	// stream's own propagation delay). until carries a monotonic clock reading
	// when Options.Now does (time.Now does), so compare it with the sink's own
	// clock reading at the moment of each use, never through a flag: a process
	// frozen past until must not serve on trust granted before the freeze.
	//
	// It is called after each poll that drained a shard, with the oldest
	// caught-up time of all shards plus StaleAfter, so it may move backwards
	// as well as forwards (a shard added or lost); a zero until withdraws trust
	// at once. Start calls it before it returns, so a sink should begin
	// untrusted. When trust is granted after it had been withdrawn or had
	// lapsed, Flush(ErrRecovered) comes first.
	TrustUntil(until time.Time)
}

// Reasons passed to Sink.Flush, and errors from Start.
var (
	// ErrTrimmed: records were trimmed (older than 24 h) before they were read.
	ErrTrimmed = errors.New("invalidation: stream records trimmed before they were read")
	// ErrStreamChanged: the table's LatestStreamArn changed.
	ErrStreamChanged = errors.New("invalidation: the table's stream ARN changed")
	// ErrStreamDisabled: the table has no enabled stream (or, once started, no
	// longer exists; Start on a missing table returns a *StartError instead).
	ErrStreamDisabled = errors.New("invalidation: the table's stream is disabled")
	// ErrPositionLost: an iterator expired or became invalid before any record
	// was handled from it, or a shard vanished before it was read to its end.
	ErrPositionLost = errors.New("invalidation: position in the stream lost")
	// ErrBadRecord: a record without a usable partition key.
	ErrBadRecord = errors.New("invalidation: undecodable stream record")
	// ErrRecovered: the consumer is healthy again after a period of not being
	// trusted (trust withdrawn, or lapsed because no poll completed in time, as
	// when the process was frozen); whatever was cached meanwhile may be stale.
	ErrRecovered = errors.New("invalidation: recovered after being unhealthy")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("invalidation: consumer closed")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("invalidation: consumer already started")
)
