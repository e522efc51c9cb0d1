package invalidation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"
)

// describeStreamGap keeps this process under DescribeStream's 10 calls a
// second (an account-wide limit, so other processes share it).
const describeStreamGap = 100 * time.Millisecond

type evKind int

const (
	evEnded   evKind = iota // the reader's shard has no more records
	evMissing               // the reader met ResourceNotFound and stopped: re-check table and listing
)

type event struct {
	kind evKind
	r    *reader
}

type shardStatus int

const (
	waiting shardStatus = iota // known, not started (parents not done)
	reading
	done // read to its end, or closed before we started
)

type shardState struct {
	id, parent string
	// extra holds more parents learnt from CHILD_SHARDS listings (a merged
	// child lists one ParentShardId but is a child of both).
	extra        map[string]bool
	closed       bool // a listing showed an EndingSequenceNumber
	status       shardStatus
	caughtAtEnd  int64
	endedAt      time.Time
	needChildren bool
	r            *reader
	// missingSince is the start of the first full listing that did not show
	// this shard since one last did (zero while listed); missingLists counts
	// those listings. A shard not found by GetShardIterator or GetRecords is
	// given up only once both show it gone for a while: DescribeStream is
	// eventually consistent, and a brand-new child may not be listed yet.
	missingSince time.Time
	missingLists int
	// lost: the shard vanished before it was read to its end (see shardMissing).
	lost bool
	// unknownStart: when started, its position is unknown until it is first
	// drained (a child of a lost shard, or a lost shard listed again).
	unknownStart bool
}

// coordinator is the state of the goroutine that lists shards, checks the
// table and starts readers in lineage order.
type coordinator struct {
	gen       int
	genCtx    context.Context
	genCancel context.CancelFunc
	genWG     *sync.WaitGroup
	arn       string
	shards    map[string]*shardState

	lastList          time.Time // start of the last full listing
	lastDescribe      time.Time
	lastTable         time.Time // start of the last successful DescribeTable in checkTable
	filterUnsupported bool
}

// newGeneration replaces the shard map for stream arn: open shards get
// readers starting at LATEST (returned, not launched), closed ones are done.
func (co *coordinator) newGeneration(c *Consumer, arn string, shards []types.Shard) []*reader {
	co.gen++
	if co.genCancel != nil {
		co.genCancel() // nothing runs in it: callers stopped it, or it was never launched
	}
	co.genCtx, co.genCancel = context.WithCancel(c.root)
	co.genWG = &sync.WaitGroup{}
	co.arn = arn
	co.shards = map[string]*shardState{}
	co.lastList = c.o.Now()
	var rs []*reader
	for _, s := range shards {
		st := co.upsert(s)
		if st.closed {
			st.status = done
			continue
		}
		st.status = reading
		st.r = co.newReader(st.id, types.ShardIteratorTypeLatest)
		rs = append(rs, st.r)
	}
	return rs
}

func (co *coordinator) newReader(id string, start types.ShardIteratorType) *reader {
	return &reader{id: id, arn: co.arn, gen: co.gen, wg: co.genWG, resume: start}
}

func (co *coordinator) upsert(s types.Shard) *shardState {
	id := aws.ToString(s.ShardId)
	st := co.shards[id]
	if st == nil {
		st = &shardState{id: id, parent: aws.ToString(s.ParentShardId), status: waiting}
		co.shards[id] = st
	}
	if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
		st.closed = true
	}
	return st
}

// send hands ev to the coordinator unless ctx ends first.
func (c *Consumer) send(ctx context.Context, ev event) {
	select {
	case c.events <- ev:
	case <-ctx.Done():
	}
}

func (c *Consumer) coordinate(ctx context.Context) {
	defer c.wg.Done()
	defer func() {
		c.co.genCancel()
		c.co.genWG.Wait()
	}()
	tableTick := time.NewTicker(c.o.DescribeInterval)
	defer tableTick.Stop()
	listTick := time.NewTicker(c.o.ShardListInterval)
	defer listTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-c.events:
			if ev.r.gen != c.co.gen {
				continue
			}
			switch ev.kind {
			case evEnded:
				c.shardEnded(ctx, ev.r)
			case evMissing:
				c.shardMissing(ctx, ev.r)
			}
		case <-tableTick.C:
			c.checkTable(ctx)
			if c.streamKnown() {
				c.retryChildren(ctx)
				if c.readingCount() == 0 {
					c.listAll(ctx)
				}
				c.schedule()
			}
		case <-listTick.C:
			if c.streamKnown() {
				c.listAll(ctx)
				c.schedule()
			}
		}
	}
}

func (c *Consumer) streamKnown() bool {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	return c.streamOK
}

func (c *Consumer) readingCount() int {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	return len(c.followed)
}

// checkTable follows the table's LatestStreamArn: a disabled stream or a new
// ARN is a loss of track; a (new) enabled stream is set up from LATEST.
func (c *Consumer) checkTable(ctx context.Context) {
	t0 := c.o.Now()
	arn, enabled, err := c.describeTable(ctx)
	if err != nil {
		var nf *ddbtypes.ResourceNotFoundException
		if !errors.As(err, &nf) {
			return // transient: the readers carry on; health tells the rest
		}
		enabled = false
	}
	c.co.lastTable = t0
	known := c.streamKnown()
	switch {
	case !enabled:
		if known {
			c.dropStream(ErrStreamDisabled)
		}
	case arn != c.co.arn || !known:
		if known {
			c.dropStream(ErrStreamChanged)
		}
		c.setupStream(ctx, arn)
	}
}

// dropStream stops following the current stream: flush, untrust, stop readers.
func (c *Consumer) dropStream(reason error) {
	c.hmu.Lock()
	c.streamOK = false
	c.hmu.Unlock()
	c.lostTrack(reason, true)
	c.co.genCancel()
	c.co.genWG.Wait()
	c.hmu.Lock()
	clear(c.followed)
	clear(c.pending)
	c.hmu.Unlock()
}

// setupStream starts following arn from LATEST on its open shards. Trust comes
// back through refreshTrust (Flush, then TrustUntil) once the iterators
// are in place.
func (c *Consumer) setupStream(ctx context.Context, arn string) {
	shards, err := c.describeAll(ctx, arn, nil)
	if err != nil {
		return
	}
	c.co.genCancel()
	c.co.genWG.Wait()
	rs := c.co.newGeneration(c, arn, shards)
	_ = c.positionAll(ctx, rs) // readers retry whatever failed
	c.hmu.Lock()
	clear(c.followed)
	clear(c.pending)
	c.streamArn, c.streamOK = arn, true
	c.hmu.Unlock()
	for _, r := range rs {
		c.launch(r)
	}
}

// shardEnded: the shard was read to its end. Find its children, then start
// whatever lineage now allows.
func (c *Consumer) shardEnded(ctx context.Context, r *reader) {
	st := c.co.shards[r.id]
	if st == nil || st.r != r {
		return
	}
	st.status, st.r = done, nil
	st.caughtAtEnd = r.caught.Load()
	st.endedAt = c.o.Now()
	st.needChildren = true
	c.hmu.Lock()
	delete(c.followed, r.id)
	c.pending[r.id] = st.caughtAtEnd
	c.hmu.Unlock()

	kids, err := c.children(ctx, st)
	if err == nil {
		st.needChildren = false
		// A full listing newer than this end shows which other shards are closed
		// too: their children may be merges that must wait for them.
		if c.co.lastList.Before(st.endedAt) {
			c.listAll(ctx)
		}
		if len(kids) == 0 && !st.closed {
			// DynamoDB Local: no NextShardIterator on a shard that is still open.
			c.resumeOpen(st, r)
			return
		}
		c.st.completed.Add(1)
		c.hmu.Lock()
		delete(c.pending, r.id)
		c.hmu.Unlock()
	}
	c.schedule()
	if err == nil && len(kids) == 0 {
		c.checkTable(ctx) // a shard closing without children: stream disabled?
	}
}

// resumeOpen restarts the reader of a shard that claimed to end but is open.
func (c *Consumer) resumeOpen(st *shardState, old *reader) {
	c.st.quirks.Add(1)
	r := c.co.newReader(st.id, resumeType(old))
	r.lastSeq, r.anchor, r.anchorAt = old.lastSeq, old.anchor, old.anchorAt
	if r.resume == types.ShardIteratorTypeLatest {
		// Nothing handled since LATEST: restart at TRIM_HORIZON so nothing is skipped.
		r.resume = types.ShardIteratorTypeTrimHorizon
	}
	r.caught.Store(old.caught.Load())
	r.delay = c.o.PollInterval
	st.status, st.r = reading, r
	c.launch(r)
}

// retryChildren lists children of ended shards whose listing failed before.
func (c *Consumer) retryChildren(ctx context.Context) {
	for _, st := range c.co.shards {
		if st.status != done || !st.needChildren {
			continue
		}
		if _, err := c.children(ctx, st); err != nil {
			return
		}
		st.needChildren = false
		c.hmu.Lock()
		delete(c.pending, st.id)
		c.hmu.Unlock()
	}
}

// children lists st's children with ShardFilter CHILD_SHARDS, falling back to
// the full listing when the filter is rejected or ignored.
func (c *Consumer) children(ctx context.Context, st *shardState) ([]string, error) {
	if !c.co.filterUnsupported {
		shards, err := c.describeAll(ctx, c.co.arn, &types.ShardFilter{
			Type:    types.ShardFilterTypeChildShards,
			ShardId: aws.String(st.id),
		})
		switch {
		case err == nil:
			ignored := false
			for _, s := range shards {
				if aws.ToString(s.ShardId) == st.id {
					ignored = true // the server listed everything
				}
			}
			if !ignored {
				var kids []string
				for _, s := range shards {
					k := c.co.upsert(s)
					if k.parent != st.id {
						if k.extra == nil {
							k.extra = map[string]bool{}
						}
						k.extra[st.id] = true
					}
					kids = append(kids, k.id)
				}
				return kids, nil
			}
			c.co.filterUnsupported = true
			c.o.Logger.Info("invalidation: DescribeStream ShardFilter ignored, using full listings", "table", c.o.Table)
		case classify(err) == errNotFound:
			// The shard itself may be gone (trimmed): the full listing below
			// shows what remains, and fails too if the stream is gone.
		case !filterRejected(err):
			return nil, err
		default:
			c.co.filterUnsupported = true
			c.o.Logger.Info("invalidation: DescribeStream ShardFilter unsupported, using full listings", "table", c.o.Table)
		}
	}
	if err := c.listAll(ctx); err != nil {
		return nil, err
	}
	var kids []string
	for _, k := range c.co.shards {
		if k.parent == st.id {
			kids = append(kids, k.id)
		}
	}
	return kids, nil
}

// filterRejected: the service does not understand ShardFilter.
func filterRejected(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch classify(err) {
	case errThrottle, errNotFound:
		return false
	}
	var ise *types.InternalServerError
	return !errors.As(err, &ise)
}

// listAll refreshes the full shard listing and forgets finished shards the
// stream no longer lists (trimmed after 24 h).
func (c *Consumer) listAll(ctx context.Context) error {
	t0 := c.o.Now()
	shards, err := c.describeAll(ctx, c.co.arn, nil)
	if err != nil {
		return err
	}
	c.co.lastList = t0
	seen := make(map[string]bool, len(shards))
	for _, s := range shards {
		st := c.co.upsert(s)
		seen[st.id] = true
		st.missingSince, st.missingLists = time.Time{}, 0
		if st.lost {
			// Given up as vanished, yet listed again: read it again from
			// TRIM_HORIZON, untrusted until drained (the flush when it was
			// given up covered the loss; lineage order is broken for its
			// children, which started already).
			c.o.Logger.Warn("invalidation: a shard given up as vanished is listed again", "table", c.o.Table, "shard", st.id)
			st.lost, st.status, st.unknownStart = false, waiting, true
		}
	}
	for id, st := range c.co.shards {
		if seen[id] {
			continue
		}
		switch {
		case st.status == done && !st.needChildren && !st.lost:
			delete(c.co.shards, id)
		case st.status == reading:
			if st.missingSince.IsZero() {
				st.missingSince = t0
			}
			st.missingLists++
		}
	}
	return nil
}

// shardMissing handles a reader that stopped on ResourceNotFoundException.
// The table is checked first (a disabled or replaced stream is handled there,
// with ErrStreamDisabled or ErrStreamChanged). If the stream is the same, the
// shard is given up only when it has been missing from at least two full
// listings spanning ShardListInterval (DescribeStream is eventually
// consistent: a brand-new shard may not be listed yet); until then, and
// whenever the table or the listing cannot be checked, the reader restarts
// after a backoff from where it was.
func (c *Consumer) shardMissing(ctx context.Context, r *reader) {
	st := c.co.shards[r.id]
	if st == nil || st.r != r {
		return
	}
	// One DescribeTable and one listing newer than the error serve every
	// reader that met it (several shards may vanish together).
	if c.co.lastTable.Before(r.missedAt) {
		c.checkTable(ctx)
	}
	if r.gen != c.co.gen || !c.streamKnown() {
		return // the stream was dropped or replaced, and its readers with it
	}
	if !c.co.lastTable.Before(r.missedAt) {
		if c.co.lastList.Before(r.missedAt) {
			_ = c.listAll(ctx)
		}
		if !c.co.lastList.Before(r.missedAt) && st.missingLists >= 2 &&
			c.co.lastList.Sub(st.missingSince) >= c.o.ShardListInterval {
			c.shardLost(st, r)
			return
		}
	}
	c.relaunch(st, r)
}

// shardLost gives up a shard that vanished before it was read to its end:
// flush and untrust (its unread records are gone), then go on with whatever
// the listing shows, its children first. Trust comes back through the monitor
// once every shard followed now has been drained.
func (c *Consumer) shardLost(st *shardState, r *reader) {
	c.st.lost.Add(1)
	r.caught.Store(0) // still followed: unhealthy until the children are in place
	c.lostTrack(fmt.Errorf("%w: shard %s vanished before it was read to its end", ErrPositionLost, st.id), true)
	st.status, st.r, st.lost = done, nil, true
	st.caughtAtEnd, st.needChildren = 0, false
	c.schedule()
	c.hmu.Lock()
	if c.followed[st.id] == r {
		delete(c.followed, st.id)
	}
	delete(c.pending, st.id)
	c.hmu.Unlock()
}

// relaunch restarts the reader of a shard not found (yet), after a backoff,
// from where the old one was.
func (c *Consumer) relaunch(st *shardState, old *reader) {
	r := c.co.newReader(st.id, old.resume)
	r.lastSeq, r.anchor, r.anchorAt = old.lastSeq, old.anchor, old.anchorAt
	r.misses = old.misses + 1
	bo := c.newBackoff()
	bo.n = old.misses
	r.delay = bo.next()
	r.caught.Store(old.caught.Load())
	if r.resume == types.ShardIteratorTypeLatest && r.caught.Load() != 0 {
		// Nothing handled since a LATEST iterator whose chain broke: a fresh
		// LATEST could skip what came meanwhile, and TRIM_HORIZON could mean
		// up to 24 h of records to replay. As renew does: a loss.
		old.caught.Store(0) // still followed until launch replaces it
		c.lose(r, ErrPositionLost)
	}
	st.r = r
	c.launch(r)
}

// schedule starts every waiting shard whose parents are all done. A shard
// also waits while any shard being read is already closed: that shard may turn
// out (through its CHILD_SHARDS listing) to be another parent, as in a merge.
func (c *Consumer) schedule() {
	closing := false
	for _, st := range c.co.shards {
		if st.status == reading && st.closed {
			closing = true
		}
	}
	if closing {
		return
	}
	for _, st := range c.co.shards {
		if st.status != waiting {
			continue
		}
		var caught int64
		ready, unknown := true, st.unknownStart
		for _, p := range st.parents() {
			ps := c.co.shards[p]
			if ps == nil {
				continue // trimmed long ago, or never part of what we follow
			}
			if ps.status != done {
				ready = false
				break
			}
			if ps.lost {
				unknown = true
			}
			if ps.caughtAtEnd != 0 && (caught == 0 || ps.caughtAtEnd < caught) {
				caught = ps.caughtAtEnd
			}
		}
		if !ready {
			continue
		}
		switch {
		case unknown:
			caught = 0 // its backlog is unknown: healthy once it is drained
		case caught == 0:
			caught = c.nanos(c.o.Now())
		}
		st.unknownStart = false
		r := c.co.newReader(st.id, types.ShardIteratorTypeTrimHorizon)
		r.caught.Store(caught)
		st.status, st.r = reading, r
		c.launch(r)
	}
}

func (st *shardState) parents() []string {
	var ps []string
	if st.parent != "" {
		ps = append(ps, st.parent)
	}
	for p := range st.extra {
		if p != st.parent {
			ps = append(ps, p)
		}
	}
	return ps
}

// describeAll pages through DescribeStream.
func (c *Consumer) describeAll(ctx context.Context, arn string, filter *types.ShardFilter) ([]types.Shard, error) {
	var (
		all   []types.Shard
		start *string
	)
	for page := 0; page < 10000; page++ {
		if gap := describeStreamGap - c.o.Now().Sub(c.co.lastDescribe); gap > 0 && !sleep(ctx, gap) {
			return nil, ctx.Err()
		}
		c.co.lastDescribe = c.o.Now()
		cctx, cancel := c.callCtx(ctx)
		out, err := c.o.Streams.DescribeStream(cctx, &dynamodbstreams.DescribeStreamInput{
			StreamArn:             aws.String(arn),
			ExclusiveStartShardId: start,
			ShardFilter:           filter,
		})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.noteErr("DescribeStream", err)
			}
			return nil, err
		}
		d := out.StreamDescription
		if d == nil {
			return all, nil
		}
		all = append(all, d.Shards...)
		next := d.LastEvaluatedShardId
		if next == nil || *next == "" || (start != nil && *next == *start) {
			return all, nil
		}
		start = next
	}
	return all, nil
}

// describeTable returns the table's latest stream ARN and whether it is enabled.
func (c *Consumer) describeTable(ctx context.Context) (arn string, enabled bool, err error) {
	cctx, cancel := c.callCtx(ctx)
	out, err := c.o.Tables.DescribeTable(cctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.o.Table)})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.noteErr("DescribeTable", err)
		}
		return "", false, err
	}
	t := out.Table
	if t == nil {
		return "", false, nil
	}
	arn = aws.ToString(t.LatestStreamArn)
	enabled = arn != "" && t.StreamSpecification != nil && aws.ToBool(t.StreamSpecification.StreamEnabled)
	return arn, enabled, nil
}
