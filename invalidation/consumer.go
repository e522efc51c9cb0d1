package invalidation

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// Consumer follows one table's stream. Create it with New, then Start it.
type Consumer struct {
	o Options

	mu      sync.Mutex // guards started, closed, cancel and goroutine launches
	started bool
	closed  bool
	root    context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // coordinator and monitor

	// sinkMu serialises every Sink call and guards trusted, until and granted.
	sinkMu  sync.Mutex
	trusted bool  // trust was granted and not withdrawn (it may have lapsed: see until)
	until   int64 // the last until given to the sink (c.nanos scale)
	granted bool  // trust was granted at least once

	// base is the origin of every caught-up time (c.nanos): a reading of
	// Options.Now, so that differences use its monotonic clock.
	base time.Time

	events chan event // readers -> coordinator

	// hmu guards the health view shared by the coordinator, the monitor and Stats.
	// Lock order: sinkMu before hmu.
	hmu       sync.Mutex
	streamArn string
	streamOK  bool
	followed  map[string]*reader // shards being read
	pending   map[string]int64   // ended shards whose children are not known yet -> caught-up time

	co coordinator // touched only by the coordinator goroutine (and Start before it runs)

	st     counters
	limits readerLimits
}

type counters struct {
	records, changes, flushes, errors, throttles, renewed, quirks, completed, lost atomic.Int64
	recordLag                                                                      atomic.Int64
	oldest                                                                         atomic.Int64 // oldest caught-up time, 0 if unknown
	readerLimitHits                                                                atomic.Int64
	lastError                                                                      atomic.Pointer[string]
}

// Stats is a snapshot of the consumer's state and counters.
type Stats struct {
	// Healthy: trust holds at the moment Stats is read: the stream is known
	// and every followed shard completed a poll that drained it within
	// StaleAfter (read from the clock now, not from a flag).
	Healthy bool
	// Trusted: trust was granted and not withdrawn. It may have lapsed (no
	// poll completed in time, e.g. the process was frozen); Healthy says
	// whether it holds now.
	Trusted bool
	// StreamArn is the stream being followed ("" when none).
	StreamArn string
	// Lag is the largest time since a followed shard was last drained: every
	// change older than Lag (plus propagation into the stream) has been reported.
	Lag time.Duration
	// RecordLag is handled-time minus ApproximateCreationDateTime of the last
	// record handled. Coarse: AWS rounds the creation time, and DynamoDB Local
	// rounds it down to the minute, so health never depends on it.
	RecordLag time.Duration
	// Shards is the number of shards being read now.
	Shards int
	// ShardsCompleted counts shards read to their end.
	ShardsCompleted int64
	// ShardsLost counts shards given up because they vanished (trimmed, or
	// their stream deleted) before they were read to their end; each one
	// flushed with ErrPositionLost.
	ShardsLost int64
	// Records counts stream records received; Changes the Changed calls.
	Records, Changes int64
	// Flushes counts Flush calls.
	Flushes int64
	// Errors counts failed API calls (throttling included); Throttles only throttling.
	Errors, Throttles int64
	// IteratorsRenewed counts iterators replaced after expiry or rejection.
	IteratorsRenewed int64
	// Quirks counts DynamoDB Local oddities worked around without a flush.
	Quirks int64
	// LastError is the text of the last API error ("" if none).
	LastError string
	// ReaderLimitHits counts calls refused with LimitExceededException: AWS
	// throttles a shard read by more than two processes at once (also in
	// Throttles). ReaderLimited: at least three such refusals within the last
	// minute; the consumer also logs a warning that points to fan-out.
	ReaderLimitHits int64
	ReaderLimited   bool
}

// New validates o and returns a Consumer that does nothing until Start.
func New(o Options) (*Consumer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		o:        o,
		events:   make(chan event, 64),
		followed: map[string]*reader{},
		pending:  map[string]int64{},
		// Every caught-up time is after base, so none is 0 ("unknown").
		base: o.Now().Add(-time.Hour),
	}
	c.co.shards = map[string]*shardState{}
	return c, nil
}

// Start finds the table's stream and puts a LATEST iterator on every open
// shard, so every change made after Start returns is reported. It then calls
// Sink.TrustUntil and starts the background goroutines, which run until
// Close (not until ctx ends: ctx bounds only Start itself).
//
// Transient errors (throttling, 5xx, transport errors, call timeouts) are
// retried until ctx ends. Errors that retrying cannot fix (access denied,
// unrecognised credentials, a table that does not exist, an invalid request)
// end Start at once with a *StartError whose Permanent is true. A table
// without an enabled stream returns ErrStreamDisabled at once. A Consumer is
// started at most once: after a failed Start, Close it and create another.
func (c *Consumer) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.started {
		c.mu.Unlock()
		return ErrStarted
	}
	c.started = true
	c.root, c.cancel = context.WithCancel(context.Background())
	c.mu.Unlock()

	// Close during Start must end Start too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.root, cancel)
	defer stop()

	bo := c.newBackoff()
	var (
		arn         string
		readers     []*reader
		described   bool // arn and readers are set
		redescribed int
		lastOp      string // the last call that failed while ctx was live
		lastErr     error
	)
	for {
		var (
			op  string
			err error
		)
		if !described {
			var enabled bool
			op = "DescribeTable"
			arn, enabled, err = c.describeTable(ctx)
			if err == nil && !enabled {
				return fmt.Errorf("%w (table %q)", ErrStreamDisabled, c.o.Table)
			}
			if err == nil {
				var shards []types.Shard
				op = "DescribeStream"
				if shards, err = c.describeAll(ctx, arn, nil); err == nil {
					readers = c.co.newGeneration(c, arn, shards)
					described = true
				}
			}
		}
		if described {
			op = "GetShardIterator"
			if err = c.positionAll(ctx, readers); err == nil {
				break
			}
		}
		if ctx.Err() == nil {
			lastOp, lastErr = op, err
		}
		switch classifyStart(op, err) {
		case startFatal:
			return &StartError{Op: op, Table: c.o.Table, Permanent: true, Err: err}
		case startRedescribe:
			if redescribed++; redescribed > startRedescribeLimit {
				return &StartError{Op: op, Table: c.o.Table, Permanent: true, Err: err}
			}
			described = false
		}
		if !sleep(ctx, bo.next()) {
			if lastErr == nil {
				return &StartError{Op: op, Table: c.o.Table, Err: context.Cause(ctx)}
			}
			return &StartError{Op: lastOp, Table: c.o.Table, Err: fmt.Errorf("%w (retried until: %w)", lastErr, context.Cause(ctx))}
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.hmu.Lock()
	c.streamArn, c.streamOK = arn, true
	c.hmu.Unlock()
	for _, r := range readers {
		c.launch(r)
	}
	c.refreshTrust() // trust from the positions just taken: Healthy from the start
	c.wg.Add(2)
	go c.coordinate(c.root)
	go c.monitor(c.root)
	return nil
}

// StartError is returned by Start when it gives up: at once (Permanent) on an
// error that retrying cannot fix, or when its ctx ends while the errors were
// transient. Err is the error from the last call as the SDK returned it, so
// errors.As reaches the SDK's types (*smithy.GenericAPIError for
// AccessDeniedException, the dynamodb package's *types.ResourceNotFoundException
// for a missing table, smithy.APIError for any of them); when ctx ended, Err
// wraps ctx's error too.
type StartError struct {
	// Op is the failing call: DescribeTable, DescribeStream or GetShardIterator.
	Op string
	// Table is Options.Table.
	Table string
	// Permanent: Start gave up without waiting for ctx, because retrying would
	// not help (access denied, no such table, an invalid request, or the stream
	// kept vanishing between DescribeTable and the calls that followed).
	Permanent bool
	Err       error
}

func (e *StartError) Error() string {
	how := "failed"
	if e.Permanent {
		how = "failed (not retryable)"
	}
	return fmt.Sprintf("invalidation: start on table %q: %s %s: %v", e.Table, e.Op, how, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// Close stops every goroutine and waits for them. No Sink method is called
// after Close returns. Safe to call twice and concurrently with anything.
func (c *Consumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	return nil
}

// Stats returns a snapshot. Safe at any time.
func (c *Consumer) Stats() Stats {
	c.sinkMu.Lock()
	trusted, until := c.trusted, c.until
	c.sinkMu.Unlock()
	now := c.nanos(c.o.Now())
	var lag int64
	if oldest := c.st.oldest.Load(); oldest != 0 {
		lag = now - oldest
	}
	c.hmu.Lock()
	arn, n := c.streamArn, len(c.followed)
	c.hmu.Unlock()
	s := Stats{
		Healthy:          trusted && now < until,
		Trusted:          trusted,
		StreamArn:        arn,
		Lag:              time.Duration(lag),
		RecordLag:        time.Duration(c.st.recordLag.Load()),
		Shards:           n,
		ShardsCompleted:  c.st.completed.Load(),
		ShardsLost:       c.st.lost.Load(),
		Records:          c.st.records.Load(),
		Changes:          c.st.changes.Load(),
		Flushes:          c.st.flushes.Load(),
		Errors:           c.st.errors.Load(),
		Throttles:        c.st.throttles.Load(),
		IteratorsRenewed: c.st.renewed.Load(),
		Quirks:           c.st.quirks.Load(),
		ReaderLimitHits:  c.st.readerLimitHits.Load(),
		ReaderLimited:    c.limits.pressed(c.o.Now()),
	}
	if p := c.st.lastError.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// lostTrack flushes the sink and, if untrust, stops trusting it. Callers that
// lost a shard's position reset that shard's caught-up time first, so the
// monitor cannot restore trust before the new position is in place.
func (c *Consumer) lostTrack(reason error, untrust bool) {
	c.o.Logger.Warn("invalidation: lost track, flushing", "table", c.o.Table, "reason", reason)
	c.sinkMu.Lock()
	defer c.sinkMu.Unlock()
	c.st.flushes.Add(1)
	c.o.Sink.Flush(reason)
	if untrust {
		c.withdrawTrust()
	}
}

// nanos puts t on the scale of caught-up times: nanoseconds since base
// (monotonic when both carry a monotonic reading).
func (c *Consumer) nanos(t time.Time) int64 { return int64(t.Sub(c.base)) }

// at is the inverse of nanos; the result carries base's monotonic reading.
func (c *Consumer) at(n int64) time.Time { return c.base.Add(time.Duration(n)) }

// noteErr counts an API error and keeps its text for Stats (AWS error messages
// carry no item keys).
func (c *Consumer) noteErr(op string, err error) {
	c.st.errors.Add(1)
	if classify(err) == errThrottle {
		c.st.throttles.Add(1)
	}
	if (op == "GetRecords" || op == "GetShardIterator") && isReaderLimit(err) { // a shard's reader refused
		c.st.readerLimitHits.Add(1)
		if c.limits.note(c.o.Now()) {
			c.o.Logger.Warn("invalidation: DynamoDB Streams refused reads with LimitExceededException "+
				"several times in the last minute: more processes read this table's stream than AWS allows "+
				"(two per shard), so invalidation lags; use fan-out (one stream bridge, pods on NATS: "+
				"see the README, Fan-out)", "table", c.o.Table, "refusals", c.st.readerLimitHits.Load())
		}
	}
	msg := op + ": " + err.Error()
	c.st.lastError.Store(&msg)
	c.o.Logger.Warn("invalidation: call failed", "table", c.o.Table, "op", op, "err", err)
}

func (c *Consumer) newBackoff() backoff {
	return backoff{base: 50 * time.Millisecond, max: c.o.MaxBackoff}
}

func (c *Consumer) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.o.CallTimeout)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
