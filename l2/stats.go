package l2

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Stats are cumulative counters since New, for the data path (Get, BatchGet,
// writes, leases; not EnsureTable and the stream helpers). They are plain
// atomics: this is not a hit path.
type Stats struct {
	Calls     int64 // DynamoDB calls made (each BatchGetItem page counts once)
	Errors    int64 // calls that failed (throttles included, condition failures not)
	Throttles int64 // calls that failed with a throttling error
	// Timeouts counts calls that failed because they ran out of
	// Options.CallTimeout (their errors match ErrTimeout; the SDK's text
	// inside them reads "context canceled", the watchdog's way of ending
	// the call), not those whose caller's context ended.
	Timeouts int64
	// CorruptItems counts the items Get and BatchGet read that did not
	// follow the item format: once per item read, the same way for both
	// (the write path's encounters are counted in Repairs instead).
	CorruptItems       int64
	UnprocessedRetries int64 // BatchGetItem calls made only to retry UnprocessedKeys
	ConditionFailures  int64 // conditional writes (Fill, leases) that did not land, and writes that met a corrupt item
	Repairs            int64 // corrupt or foreign items that a write replaced
	// ByOp splits Calls, Errors and Throttles by DynamoDB API operation
	// (GetItem, BatchGetItem, UpdateItem, and any other operation once the
	// data path has called it): the sums over ByOp are Calls, Errors and
	// Throttles. A fresh map on each call of Stats.
	ByOp map[string]OpStats
}

// OpStats counts the calls of one DynamoDB API operation.
type OpStats struct {
	Calls, Errors, Throttles int64
}

// apiOps are the DynamoDB operations ByOp can name. The first three are the
// ones the data path calls today, always reported (zeros included) so that a
// dashboard has their series from the start.
var apiOps = [...]string{"GetItem", "BatchGetItem", "UpdateItem",
	"PutItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems", "Query", "Scan"}

const alwaysReported = 3

// apiOp is the index in apiOps of the operation behind record's op: op
// itself when it is an API name; for a logical name, the operation it
// calls: GetLeased a BatchGetItem, the others (Fill, AcquireLease, ...
// that update passes) an UpdateItem.
func apiOp(op string) int {
	if op == "GetLeased" {
		op = "BatchGetItem"
	}
	for i, name := range apiOps {
		if name == op {
			return i
		}
	}
	return 2
}

type opCounters struct{ calls, errors, throttles atomic.Int64 }

type stats struct {
	calls, errors, throttles, timeouts, corrupt, unprocessed, condFailed, repairs atomic.Int64
	ops                                                                           [len(apiOps)]opCounters
}

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	s := &t.stats
	return Stats{
		Calls:              s.calls.Load(),
		Errors:             s.errors.Load(),
		Throttles:          s.throttles.Load(),
		Timeouts:           s.timeouts.Load(),
		CorruptItems:       s.corrupt.Load(),
		UnprocessedRetries: s.unprocessed.Load(),
		ConditionFailures:  s.condFailed.Load(),
		Repairs:            s.repairs.Load(),
		ByOp:               s.byOp(),
	}
}

func (s *stats) byOp() map[string]OpStats {
	m := make(map[string]OpStats, alwaysReported)
	for i := range s.ops {
		o := OpStats{Calls: s.ops[i].calls.Load(), Errors: s.ops[i].errors.Load(), Throttles: s.ops[i].throttles.Load()}
		if i < alwaysReported || o.Calls > 0 {
			m[apiOps[i]] = o
		}
	}
	return m
}

// record counts one call's outcome and returns its error, wrapped for op.
// Condition failures are answers, not errors: the caller handles them. A
// call that ran out of Options.CallTimeout (cctx's own deadline, not the
// caller's) is marked with ErrTimeout. op is the DynamoDB API operation's
// name, or a logical name (Fill, AcquireLease, GetLeased...):
// Stats.ByOp counts it under the API operation it calls (see apiOp).
func (t *Table) record(cctx context.Context, op string, err error) error {
	oc := &t.stats.ops[apiOp(op)]
	t.stats.calls.Add(1)
	oc.calls.Add(1)
	if err == nil {
		return nil
	}
	if _, ok := conditionFailed(err); ok {
		t.stats.condFailed.Add(1)
		return err
	}
	t.stats.errors.Add(1)
	oc.errors.Add(1)
	if isThrottle(err) {
		t.stats.throttles.Add(1)
		oc.throttles.Add(1)
	}
	if cctx.Err() != nil && context.Cause(cctx) == errCallTimeout {
		// Ours, not the caller's: the SDK's error (a context.Canceled when
		// the watchdog cut the call) is kept as text only, so that nothing
		// takes it for the caller giving up; DeadlineExceeded is what it is.
		t.stats.timeouts.Add(1)
		return fmt.Errorf("l2: %s: %w: %w (%v)", op, ErrTimeout, context.DeadlineExceeded, err)
	}
	return callError(op, err)
}
