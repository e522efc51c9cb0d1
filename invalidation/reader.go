package invalidation

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

const (
	// pageLimit is GetRecords' maximum: a page this full may have more behind it.
	pageLimit = 1000
	// drainedBytes: a page whose records add up to less than this was not cut
	// by the 1 MB response limit.
	drainedBytes = 900 << 10
	// trimHorizon is how long AWS keeps stream records.
	trimHorizon = 24 * time.Hour
)

// reader reads one shard. Its fields are owned by its goroutine, except caught
// (read by the monitor) and the fields the coordinator reads after the
// goroutine has ended.
type reader struct {
	id  string
	arn string
	gen int
	wg  *sync.WaitGroup // the generation's readers

	iter    *string
	resume  types.ShardIteratorType // how to get the next iterator when iter is nil
	lastSeq string                  // last record handled; resume after it when set
	// anchor is how the current chain of iterators began (LATEST or
	// TRIM_HORIZON) and anchorAt when: a chain anchored at LATEST less than 24 h
	// ago cannot meet trimmed data on AWS, so TrimmedDataAccessException there is
	// DynamoDB Local's quirk, not a loss.
	anchor   types.ShardIteratorType
	anchorAt time.Time
	delay    time.Duration // wait before the first call (a resumed shard)
	// missedAt is when the shard was last not found; misses counts the
	// restarts since records last came (both set before evMissing is sent).
	missedAt time.Time
	misses   int

	// caught is the start (unix nanos) of the last GetRecords that drained the
	// shard, or of the LATEST GetShardIterator; 0 while the position is unknown.
	caught atomic.Int64
}

// positionAll gets an iterator for every reader that lacks one, in parallel,
// one attempt each; it returns the first error.
func (c *Consumer) positionAll(ctx context.Context, rs []*reader) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 8)
	)
	for _, r := range rs {
		if r.iter != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.getIterator(ctx, r); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// getIterator asks for an iterator at r.resume. ended reports a shard with
// nothing left to read (no iterator returned).
func (c *Consumer) getIterator(ctx context.Context, r *reader) (ended bool, err error) {
	in := &dynamodbstreams.GetShardIteratorInput{
		StreamArn:         aws.String(r.arn),
		ShardId:           aws.String(r.id),
		ShardIteratorType: r.resume,
	}
	if r.resume == types.ShardIteratorTypeAfterSequenceNumber {
		in.SequenceNumber = aws.String(r.lastSeq)
	}
	t0 := c.o.Now()
	cctx, cancel := c.callCtx(ctx)
	out, err := c.o.Streams.GetShardIterator(cctx, in)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.noteErr("GetShardIterator", err)
		}
		return false, err
	}
	if out.ShardIterator == nil {
		return true, nil
	}
	r.iter = out.ShardIterator
	if r.resume == types.ShardIteratorTypeLatest || r.resume == types.ShardIteratorTypeTrimHorizon {
		r.anchor, r.anchorAt = r.resume, t0
	}
	if r.resume == types.ShardIteratorTypeLatest {
		r.caught.Store(c.nanos(t0))
	}
	return false, nil
}

// renew drops the iterator and chooses where the next one starts: after the
// last record handled, else the chain's anchor. A LATEST chain with nothing
// handled cannot be resumed exactly: whatever came between is unknown, so that
// is a loss (Flush) and a fresh LATEST.
func (c *Consumer) renew(r *reader) {
	c.st.renewed.Add(1)
	r.iter = nil
	switch {
	case r.lastSeq != "":
		r.resume = types.ShardIteratorTypeAfterSequenceNumber
	case r.anchor == types.ShardIteratorTypeTrimHorizon:
		r.resume = types.ShardIteratorTypeTrimHorizon
	default:
		c.lose(r, ErrPositionLost)
	}
}

// lose marks r's position unknown, flushes, and restarts it at LATEST.
func (c *Consumer) lose(r *reader, reason error) {
	r.caught.Store(0)
	c.lostTrack(reason, true)
	r.iter, r.lastSeq = nil, ""
	r.resume = types.ShardIteratorTypeLatest
}

// quirkTrimmed reports whether a TrimmedDataAccessException on r cannot be a
// real trim (see reader.anchor); then r resumes without a flush.
//
// Only the case DynamoDB Local shows is excused (nothing handled yet since a
// LATEST iterator); the new chain is anchored at TRIM_HORIZON, so a second
// TrimmedDataAccessException counts as a real loss and quirks cannot loop.
func (c *Consumer) quirkTrimmed(r *reader) bool {
	if r.lastSeq != "" || r.anchor != types.ShardIteratorTypeLatest || c.o.Now().Sub(r.anchorAt) >= trimHorizon {
		return false
	}
	c.st.quirks.Add(1)
	r.iter = nil
	// TRIM_HORIZON is at or before the LATEST position, so nothing is skipped
	// (records before it may come twice).
	r.resume = types.ShardIteratorTypeTrimHorizon
	return true
}

// launch starts r's goroutine. Callers hold c.mu or run on the coordinator.
func (c *Consumer) launch(r *reader) {
	c.hmu.Lock()
	c.followed[r.id] = r
	delete(c.pending, r.id)
	c.hmu.Unlock()
	r.wg.Add(1)
	go c.read(c.co.genCtx, r)
}

// read polls one shard until it ends or ctx is cancelled.
func (c *Consumer) read(ctx context.Context, r *reader) {
	defer r.wg.Done()
	if !sleep(ctx, r.delay) {
		return
	}
	bo := c.newBackoff()
	for ctx.Err() == nil {
		if r.iter == nil {
			ended, err := c.getIterator(ctx, r)
			switch {
			case ctx.Err() != nil:
				return
			case ended:
				c.send(ctx, event{kind: evEnded, r: r})
				return
			case err == nil:
				continue
			}
			switch classify(err) {
			case errTrimmed:
				// AFTER_SEQUENCE_NUMBER of a trimmed record: records were lost.
				// (TRIM_HORIZON racing the trimmer just retries.)
				if r.resume != types.ShardIteratorTypeTrimHorizon && !c.quirkTrimmed(r) {
					c.lose(r, ErrTrimmed)
				}
			case errNotFound:
				// The coordinator checks the table and the listing, then
				// restarts this shard or gives it up.
				r.missedAt = c.o.Now()
				c.send(ctx, event{kind: evMissing, r: r})
				return
			}
			if !sleep(ctx, bo.next()) {
				return
			}
			continue
		}

		t0 := c.o.Now()
		cctx, cancel := c.callCtx(ctx)
		out, err := c.o.Streams.GetRecords(cctx, &dynamodbstreams.GetRecordsInput{
			ShardIterator: r.iter,
			Limit:         aws.Int32(pageLimit),
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.noteErr("GetRecords", err)
			switch classify(err) {
			case errExpired:
				c.renew(r)
				continue
			case errTrimmed:
				if !c.quirkTrimmed(r) {
					c.lose(r, ErrTrimmed)
				}
			case errInvalid:
				// DynamoDB Local: "Invalid ShardId in ShardIterator".
				c.renew(r)
			case errNotFound:
				r.iter = nil
				r.resume = resumeType(r)
				r.missedAt = c.o.Now()
				c.send(ctx, event{kind: evMissing, r: r})
				return
			}
			if !sleep(ctx, bo.next()) {
				return
			}
			continue
		}
		bo.reset()
		r.misses = 0
		c.deliver(r, out.Records)
		if len(out.Records) < pageLimit && pageBytes(out.Records) < drainedBytes {
			// Drained as of t0: every record written before the call is handled.
			r.caught.Store(c.nanos(t0))
			c.refreshTrust()
		}
		if out.NextShardIterator == nil {
			c.send(ctx, event{kind: evEnded, r: r})
			return
		}
		r.iter = out.NextShardIterator
		if len(out.Records) == 0 && !sleep(ctx, c.o.PollInterval) {
			return
		}
	}
}

func resumeType(r *reader) types.ShardIteratorType {
	if r.lastSeq != "" {
		return types.ShardIteratorTypeAfterSequenceNumber
	}
	if r.anchor == "" {
		return r.resume
	}
	return r.anchor
}

func pageBytes(recs []types.Record) int64 {
	var n int64
	for _, rec := range recs {
		if rec.Dynamodb != nil {
			n += aws.ToInt64(rec.Dynamodb.SizeBytes)
		}
	}
	return n
}

// deliver hands a page to the sink, in order, under one lock.
func (c *Consumer) deliver(r *reader, recs []types.Record) {
	if len(recs) == 0 {
		return
	}
	c.st.records.Add(int64(len(recs)))
	c.sinkMu.Lock()
	defer c.sinkMu.Unlock()
	for _, rec := range recs {
		ch, err := c.toChange(rec)
		if err != nil {
			// A change we cannot attribute to a key: drop everything.
			c.st.flushes.Add(1)
			c.o.Sink.Flush(err)
		} else {
			c.st.changes.Add(1)
			c.o.Sink.Changed(ch)
			if !ch.Created.IsZero() {
				c.st.recordLag.Store(int64(c.o.Now().Sub(ch.Created)))
			}
		}
		if rec.Dynamodb != nil && rec.Dynamodb.SequenceNumber != nil {
			r.lastSeq = *rec.Dynamodb.SequenceNumber
		}
	}
}

var errNoKey = errors.New("no partition key")

func (c *Consumer) toChange(rec types.Record) (Change, error) {
	d := rec.Dynamodb
	if d == nil {
		return Change{}, errors.Join(ErrBadRecord, errNoKey)
	}
	var pk string
	switch v := d.Keys[c.o.PartitionKey].(type) {
	case *types.AttributeValueMemberS:
		pk = v.Value
	case *types.AttributeValueMemberN:
		pk = v.Value
	case *types.AttributeValueMemberB:
		pk = string(v.Value)
	default:
		return Change{}, errors.Join(ErrBadRecord, errNoKey)
	}
	ch := Change{
		PartitionKey:   pk,
		EventName:      string(rec.EventName),
		SequenceNumber: aws.ToString(d.SequenceNumber),
		NewImage:       d.NewImage,
	}
	if d.ApproximateCreationDateTime != nil {
		ch.Created = *d.ApproximateCreationDateTime
	}
	if id := rec.UserIdentity; id != nil && aws.ToString(id.Type) == "Service" &&
		aws.ToString(id.PrincipalId) == "dynamodb.amazonaws.com" {
		ch.ByTTL = true
	}
	return ch, nil
}
