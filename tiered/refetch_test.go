package tiered_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// holdFirstGetItem returns an SDK option whose middleware holds the first
// GetItem's answer (already read from DynamoDB) until release is closed,
// telling held when it has it: what a process frozen between its L2 read and
// the end of its flight, or a very slow answer, looks like to the flight.
func holdFirstGetItem(held chan<- struct{}, release <-chan struct{}) func(*dynamodb.Options) {
	var once atomic.Bool
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("tieredtest.hold",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleInitialize(ctx, in)
					if middleware.GetOperationName(ctx) == "GetItem" && once.CompareAndSwap(false, true) {
						held <- struct{}{}
						<-release
					}
					return out, md, err
				}), middleware.After)
		})
	}
}

// TestFlightOlderThanHalfTReadsAgain: a flight whose L2 read was answered,
// then held (a freeze, or a very slow answer) past T/2 while another node
// wrote the key must not hand the value it read to its callers, some of
// whom may have joined after the write: it reads again, once.
func TestFlightOlderThanHalfTReadsAgain(t *testing.T) {
	const bound = time.Second
	cfg := awsConfig(t)
	table := dynamolocal.TableName(t)
	held, release := make(chan struct{}), make(chan struct{})
	a := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.StalenessBound = bound
		o.DynamoDB = l2.NewClient(cfg, holdFirstGetItem(held, release))
	})
	b := newNode(t, table, nil)
	ctx := testContext(t)
	if err := b.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}

	got := make(chan string, 1)
	go func() {
		v, err := a.Get(ctx, "k")
		if err != nil {
			v = "error: " + err.Error()
		}
		got <- v
	}()
	<-held // a's flight has read "old" and is held
	if err := b.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	// The flight must outlive T/2 after it began: time itself is the condition.
	time.Sleep(bound/2 + 50*time.Millisecond)
	close(release)
	if v := <-got; v != "new" {
		t.Fatalf("a flight held past T/2 returned %q, want the value written meanwhile", v)
	}
	if st := a.Stats(); st.Loads.Refetches != 1 {
		t.Fatalf("Refetches = %d, want 1", st.Loads.Refetches)
	}
}
