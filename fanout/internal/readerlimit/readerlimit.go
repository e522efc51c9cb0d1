// Package readerlimit enforces, in tests, the DynamoDB Streams limit that
// DynamoDB Local does not: at most two concurrent readers of one shard. It is
// a smithy middleware installed on dynamodbstreams clients (Guard.Options);
// a GetRecords call from a third distinct reader of a shard is refused with
// an error shaped as AWS's (smithy.GenericAPIError, Code
// "LimitExceededException"), which the consumer classifies as a throttle.
//
// A reader is a client instance: every client built with Guard.Options gets
// its own id. Readers are concurrent when their admitted GetRecords calls on
// the same shard fall within Window of each other: a call is admitted if its
// client had a call admitted on that shard within the last Window, or if
// fewer than Limit other clients did. Refused calls do not count. GetRecords
// names no shard, so the guard learns each iterator's shard from the
// GetShardIterator and GetRecords answers that return it.
//
// Guard.Proxy makes the same decisions for readers in several processes: an
// HTTP proxy in front of the endpoint, each reader named by a header
// (Named) instead of told apart by client instance.
package readerlimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// Defaults: AWS's limit, and a window that makes a reader polling at least
// once a second count as concurrent.
const (
	DefaultLimit  = 2
	DefaultWindow = time.Second
)

// Guard counts readers per shard; one Guard stands for one DynamoDB
// Streams endpoint, shared by every client that should count together.
// It is safe for concurrent use.
type Guard struct {
	limit  int
	window time.Duration

	mu       sync.Mutex
	next     int
	iters    map[string]string            // iterator -> shard; kept after use: two readers at one position may get the same iterator
	readers  map[string]map[int]time.Time // shard -> reader -> last admitted call
	st       Stats
	byReader map[int]*ReaderStats
	byShard  map[string]*ShardStats
	names    map[string]int // Proxy: reader name -> id
}

// Stats are a Guard's counters.
type Stats struct {
	// Admitted and Refused count GetRecords calls; Unknown those whose
	// iterator the guard never saw returned (passed through, uncounted).
	Admitted, Refused, Unknown int
	// MaxReaders is the largest number of readers admitted on one shard
	// within one window.
	MaxReaders int
}

// ReaderStats are one client's counters.
type ReaderStats struct{ Admitted, Refused int }

// ShardStats are one shard's counters: GetRecords calls admitted and
// refused, and the readers admitted within the last window (as of its last
// call).
type ShardStats struct{ Admitted, Refused, Readers int }

// New returns a Guard admitting limit readers per shard within window
// (zero: the defaults). A longer window counts more readers as concurrent:
// stricter, and less dependent on how often readers poll.
func New(limit int, window time.Duration) *Guard {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if window <= 0 {
		window = DefaultWindow
	}
	return &Guard{limit: limit, window: window, iters: map[string]string{},
		readers: map[string]map[int]time.Time{}, byReader: map[int]*ReaderStats{},
		byShard: map[string]*ShardStats{}, names: map[string]int{}}
}

// Options makes a client a new reader behind the guard: pass it to
// dynamodbstreams.NewFromConfig (or invalidation.NewStreamsClient). It
// returns nothing: use Reader to learn a client's id.
func (g *Guard) Options(o *dynamodbstreams.Options) {
	g.mu.Lock()
	id := g.newReader()
	g.mu.Unlock()
	o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("readerlimit",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				return g.handle(ctx, id, in, next)
			}), middleware.After)
	})
}

// newReader returns a new reader's id; g.mu is held.
func (g *Guard) newReader() int {
	g.next++
	g.byReader[g.next] = &ReaderStats{}
	return g.next
}

// Shards returns the counters of every shard a GetRecords call was decided
// on, by "stream ARN|shard id".
func (g *Guard) Shards() map[string]ShardStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]ShardStats, len(g.byShard))
	for k, v := range g.byShard {
		out[k] = *v
	}
	return out
}

// Readers returns how many clients were built with Options.
func (g *Guard) Readers() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.next
}

// Reader returns the counters of the reader with id (1 for the first client
// built with Options, and so on).
func (g *Guard) Reader(id int) ReaderStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.byReader[id]; r != nil {
		return *r
	}
	return ReaderStats{}
}

// Stats returns the guard's counters.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.st
}

func (g *Guard) handle(ctx context.Context, id int, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	switch p := in.Parameters.(type) {
	case *dynamodbstreams.GetShardIteratorInput:
		out, md, err := next.HandleInitialize(ctx, in)
		if r, ok := out.Result.(*dynamodbstreams.GetShardIteratorOutput); ok && err == nil && r.ShardIterator != nil {
			g.mu.Lock()
			g.iters[*r.ShardIterator] = aws.ToString(p.StreamArn) + "|" + aws.ToString(p.ShardId)
			g.mu.Unlock()
		}
		return out, md, err
	case *dynamodbstreams.GetRecordsInput:
		iter := aws.ToString(p.ShardIterator)
		shard, err := g.admit(id, iter)
		if err != nil {
			return middleware.InitializeOutput{}, middleware.Metadata{}, err
		}
		out, md, err := next.HandleInitialize(ctx, in)
		if r, ok := out.Result.(*dynamodbstreams.GetRecordsOutput); ok && err == nil && shard != "" {
			g.mu.Lock()
			if r.NextShardIterator != nil {
				g.iters[*r.NextShardIterator] = shard
			}
			g.mu.Unlock()
		}
		return out, md, err
	}
	return next.HandleInitialize(ctx, in)
}

// admit decides one GetRecords call; it returns the iterator's shard ("" if
// unknown).
func (g *Guard) admit(id int, iter string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	shard, ok := g.iters[iter]
	if !ok {
		g.st.Unknown++
		return "", nil
	}
	now := time.Now()
	rs := g.readers[shard]
	if rs == nil {
		rs = map[int]time.Time{}
		g.readers[shard] = rs
	}
	for r, at := range rs {
		if now.Sub(at) > g.window {
			delete(rs, r)
		}
	}
	ss := g.byShard[shard]
	if ss == nil {
		ss = &ShardStats{}
		g.byShard[shard] = ss
	}
	ss.Readers = len(rs)
	if _, known := rs[id]; !known && len(rs) >= g.limit {
		g.st.Refused++
		g.byReader[id].Refused++
		ss.Refused++
		return "", &smithy.GenericAPIError{Code: "LimitExceededException", Fault: smithy.FaultClient,
			Message: fmt.Sprintf("readerlimit: %d readers of shard %s within %v already; reader %d refused", len(rs), shard, g.window, id)}
	}
	rs[id] = now
	g.st.Admitted++
	g.byReader[id].Admitted++
	ss.Admitted++
	ss.Readers = len(rs)
	g.st.MaxReaders = max(g.st.MaxReaders, len(rs))
	return shard, nil
}
