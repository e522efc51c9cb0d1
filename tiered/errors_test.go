package tiered_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

// The tests in this file import no package of this module but tiered (and
// the test fixtures): every error a caller may need to tell apart must be
// reachable with errors.Is / errors.As on tiered's own names.

func TestErrorsMatchThroughTieredAlone(t *testing.T) {
	n := newNode(t, dynamolocal.TableName(t), nil)
	ctx := testContext(t)

	for _, tc := range []struct {
		name string
		key  string
		want error
	}{
		{"empty key", "", tiered.ErrEmptyKey},
		{"invalid key", "bad\xffkey", tiered.ErrInvalidKey},
		{"key too long", strings.Repeat("k", 4096), tiered.ErrKeyTooLong},
	} {
		if _, err := n.Get(ctx, tc.key); !errors.Is(err, tc.want) {
			t.Errorf("%s: Get = %v, want %v", tc.name, err, tc.want)
		}
	}
	_, err := n.GetOrLoad(ctx, strings.Repeat("k", 4096), constLoader("v"))
	var long *tiered.KeyTooLongError
	if !errors.As(err, &long) || long.Len <= long.Max {
		t.Errorf("GetOrLoad of a long key = %v, want a *tiered.KeyTooLongError", err)
	}

	err = n.Set(ctx, "big", strings.Repeat("v", 500<<10))
	var large *tiered.ValueTooLargeError
	if !errors.Is(err, tiered.ErrValueTooLarge) || !errors.As(err, &large) || large.Size <= large.Max {
		t.Errorf("Set of a 500 KB value = %v, want ErrValueTooLarge and a *tiered.ValueTooLargeError", err)
	}
	if err := n.SetWithTTL(ctx, "k", "v", -time.Second); !errors.Is(err, tiered.ErrInvalidTTL) {
		t.Errorf("SetWithTTL(-1s) = %v, want ErrInvalidTTL", err)
	}

	cfg := awsConfig(t)
	_, err = tiered.New(ctx, tiered.Options[string]{Table: dynamolocal.TableName(t), AWS: &cfg})
	var mismatch *tiered.TableMismatchError
	if !errors.Is(err, tiered.ErrTableMismatch) || !errors.As(err, &mismatch) || len(mismatch.Problems) == 0 {
		t.Errorf("New on a missing table = %v, want ErrTableMismatch and a *tiered.TableMismatchError", err)
	}
}

// TestStartErrorMatchesThroughTiered: a stream that cannot be followed
// (access denied on DescribeStream, injected in the Streams client) fails New
// at once with a *tiered.StartError naming the operation.
func TestStartErrorMatchesThroughTiered(t *testing.T) {
	cfg := awsConfig(t)
	denied := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("tieredtest.deny",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if middleware.GetOperationName(ctx) == "DescribeStream" {
					return middleware.InitializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "injected"}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
	streams := dynamodbstreams.NewFromConfig(cfg, func(o *dynamodbstreams.Options) {
		o.APIOptions = append(o.APIOptions, denied)
	})
	c, err := tiered.New(testContext(t), tiered.Options[string]{
		Table: dynamolocal.TableName(t), CreateTable: true, AWS: &cfg, Streams: streams, CallTimeout: testCallTimeout,
	})
	if err == nil {
		_ = c.Close()
		t.Fatal("New succeeded although DescribeStream is denied")
	}
	var se *tiered.StartError
	if !errors.As(err, &se) || !se.Permanent || se.Op != "DescribeStream" {
		t.Fatalf("New = %v, want a permanent *tiered.StartError on DescribeStream", err)
	}
}

// TestOutageErrorsMatchThroughTiered: throttling, a call timeout and an open
// breaker each match both ErrL2Unavailable and their own tiered sentinel.
func TestOutageErrorsMatchThroughTiered(t *testing.T) {
	ctx := testContext(t)
	faulty := func(t *testing.T, rule ddbfault.Rule, tweak func(*tiered.Options[string])) *node {
		inj := ddbfault.New()
		inj.Add(rule)
		return faultNodeWith(t, dynamolocal.TableName(t), inj, tweak)
	}
	t.Run("throttled", func(t *testing.T) {
		n := faulty(t, ddbfault.Rule{Op: "GetItem", Throttle: true}, nil)
		_, err := n.Get(ctx, "k")
		if !errors.Is(err, tiered.ErrL2Unavailable) || !errors.Is(err, tiered.ErrThrottled) {
			t.Fatalf("Get while throttled = %v, want ErrL2Unavailable and ErrThrottled", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		n := faulty(t, ddbfault.Rule{Op: "GetItem", Latency: time.Minute}, func(o *tiered.Options[string]) {
			o.CallTimeout = 100 * time.Millisecond
		})
		_, err := n.Get(ctx, "k")
		if !errors.Is(err, tiered.ErrL2Unavailable) || !errors.Is(err, tiered.ErrTimeout) {
			t.Fatalf("Get of a slow DynamoDB = %v, want ErrL2Unavailable and ErrTimeout", err)
		}
		if st := n.Stats().L2; st.Timeouts != 1 || st.Errors != 1 {
			t.Fatalf("L2 stats: %d timeouts, %d errors; want the one timeout", st.Timeouts, st.Errors)
		}
	})
	t.Run("breaker open", func(t *testing.T) {
		n := faulty(t, ddbfault.Rule{Op: "UpdateItem", Err: errNetwork}, func(o *tiered.Options[string]) {
			o.BreakerFailures = 1
			o.BreakerCooldown = time.Hour
		})
		if err := n.Set(ctx, "k", "v"); !errors.Is(err, tiered.ErrL2Unavailable) || errors.Is(err, tiered.ErrBreakerOpen) {
			t.Fatalf("first Set = %v, want ErrL2Unavailable from DynamoDB itself, not ErrBreakerOpen", err)
		}
		err := n.Set(ctx, "k", "v")
		if !errors.Is(err, tiered.ErrL2Unavailable) || !errors.Is(err, tiered.ErrBreakerOpen) {
			t.Fatalf("Set with the breaker open = %v, want ErrL2Unavailable and ErrBreakerOpen", err)
		}
		if st := n.Stats(); st.Breaker.State != "open" || st.Breaker.Opens != 1 {
			t.Fatalf("breaker %+v, want open once", st.Breaker)
		}
	})
}
