package invalidation_test

import (
	"context"
	"errors"
	"testing"
	"time"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/tieredcache/tieredcache/invalidation"
)

// startBackground runs Start with context.Background(), as tiered.New often
// does, and fails the test (instead of hanging) if it does not return within
// limit. Close ends a Start still running, so nothing leaks either way.
func startBackground(t *testing.T, c *invalidation.Consumer, limit time.Duration) (time.Duration, error) {
	t.Helper()
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- c.Start(context.Background()) }()
	select {
	case err := <-done:
		return time.Since(t0), err
	case <-time.After(limit):
		_ = c.Close()
		<-done
		t.Fatalf("Start(context.Background()) still running after %v", limit)
		return 0, nil
	}
}

func TestStartFailsFastOnPermanentErrors(t *testing.T) {
	cases := []struct {
		name   string
		script func(f *fakeStreams, o *invalidation.Options)
		op     string
		code   string
		check  func(t *testing.T, err error)
	}{
		{
			name: "AccessDeniedOnDescribeTable",
			script: func(f *fakeStreams, _ *invalidation.Options) {
				f.inject("DescribeTable", "", "AccessDeniedException", 1000)
			},
			op: "DescribeTable", code: "AccessDeniedException",
			check: func(t *testing.T, err error) {
				var ge *smithy.GenericAPIError
				if !errors.As(err, &ge) || ge.Code != "AccessDeniedException" {
					t.Errorf("errors.As(*smithy.GenericAPIError) failed on %v", err)
				}
			},
		},
		{
			name:   "NoSuchTable",
			script: func(_ *fakeStreams, o *invalidation.Options) { o.Table = "no-such-table" },
			op:     "DescribeTable", code: "ResourceNotFoundException",
			check: func(t *testing.T, err error) {
				var nf *ddbtypes.ResourceNotFoundException
				if !errors.As(err, &nf) {
					t.Errorf("errors.As(*dynamodb types.ResourceNotFoundException) failed on %v", err)
				}
				if errors.Is(err, invalidation.ErrStreamDisabled) {
					t.Errorf("a missing table is not a disabled stream: %v", err)
				}
			},
		},
		{
			name: "UnrecognizedClientOnDescribeStream",
			script: func(f *fakeStreams, _ *invalidation.Options) {
				f.inject("DescribeStream", "", "UnrecognizedClientException", 1000)
			},
			op: "DescribeStream", code: "UnrecognizedClientException",
		},
		{
			name: "ValidationOnDescribeTable",
			script: func(f *fakeStreams, _ *invalidation.Options) {
				f.inject("DescribeTable", "", "ValidationException", 1000)
			},
			op: "DescribeTable", code: "ValidationException",
		},
		{
			name: "AccessDeniedOnGetShardIterator",
			script: func(f *fakeStreams, _ *invalidation.Options) {
				f.inject("GetShardIterator", "", "AccessDeniedException", 1000)
			},
			op: "GetShardIterator", code: "AccessDeniedException",
		},
		{
			// Not found again and again although DescribeTable names the
			// stream: re-described a few times, then given up.
			name: "ShardNeverFound",
			script: func(f *fakeStreams, _ *invalidation.Options) {
				f.inject("GetShardIterator", "", "ResourceNotFoundException", 1000)
			},
			op: "GetShardIterator", code: "ResourceNotFoundException",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.addShard("S", "", false)
			sink := newSink(t)
			o := testOptions(f, sink)
			tc.script(f, &o)
			c, err := invalidation.New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			d, err := startBackground(t, c, wait)
			t.Logf("Start returned after %v: %v", d, err)
			var se *invalidation.StartError
			if !errors.As(err, &se) {
				t.Fatalf("want a *StartError, got %T %v", err, err)
			}
			if se.Op != tc.op || !se.Permanent || se.Table != o.Table {
				t.Errorf("StartError %+v: want Op %s, Permanent, Table %q", se, tc.op, o.Table)
			}
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != tc.code {
				t.Errorf("want smithy.APIError %s reachable, got %v", tc.code, err)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
			if tc.name != "ShardNeverFound" && f.callCount(tc.op) != 1 {
				t.Errorf("a permanent error was retried: %d %s calls", f.callCount(tc.op), tc.op)
			}
			if d > 2*time.Second {
				t.Errorf("Start took %v to give up", d)
			}
			if evs := sink.events(); len(evs) != 0 {
				t.Errorf("sink called by a failed Start: %v", summary(evs))
			}
		})
	}
}

func TestStartRetriesTransientErrors(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	f.inject("DescribeTable", "", "ThrottlingException", 2)
	f.inject("DescribeStream", "", "LimitExceededException", 3)
	f.inject("GetShardIterator", "", "InternalServerError", 1)       // 500
	f.inject("GetShardIterator", "", "ServiceUnavailable", 1)        // 503, a code the SDK does not model
	f.inject("GetShardIterator", "", "ResourceNotFoundException", 1) // describe again
	sink := newSink(t)
	c, err := invalidation.New(testOptions(f, sink))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := startBackground(t, c, wait)
	if err != nil {
		t.Fatalf("Start after transient errors: %v", err)
	}
	t.Logf("Start succeeded after %v", d)
	// DescribeTable: 2 throttled, then once before each of the 4 DescribeStream
	// attempts (3 throttled), then once more after the shard was not found.
	if n := f.callCount("DescribeTable"); n != 7 {
		t.Errorf("want 7 DescribeTable calls, got %d", n)
	}
	if n := f.callCount("DescribeStream"); n != 5 {
		t.Errorf("want 5 DescribeStream calls, got %d", n)
	}
	if n := f.callCount("GetShardIterator"); n != 4 {
		t.Errorf("want 4 GetShardIterator calls, got %d", n)
	}
	if evs := sink.events(); len(evs) != 1 || evs[0].kind != evTrusted {
		t.Errorf("after Start want exactly [trusted], got %v", summary(evs))
	}
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1")
	if st := c.Stats(); st.Throttles != 5 {
		t.Errorf("want 5 throttles counted: %+v", st)
	}
}

func TestStartGivesUpWhenContextEnds(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	f.inject("DescribeStream", "", "LimitExceededException", 1000)
	c, err := invalidation.New(testOptions(f, newSink(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Long enough for several retries (backoff ≤ MaxBackoff, 100 ms) even
	// on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = c.Start(ctx)
	var se *invalidation.StartError
	if !errors.As(err, &se) || se.Permanent || se.Op != "DescribeStream" {
		t.Fatalf("want a transient *StartError on DescribeStream, got %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want context.DeadlineExceeded reachable: %v", err)
	}
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "LimitExceededException" {
		t.Errorf("want the last API error reachable: %v", err)
	}
	if n := f.callCount("DescribeStream"); n < 2 {
		t.Errorf("throttling was not retried: %d calls", n)
	}
}
