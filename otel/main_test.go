package tieredotel_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/l2"
	tieredotel "github.com/tieredcache/tieredcache/otel"
	"github.com/tieredcache/tieredcache/otel/internal/ddbserve"
	"github.com/tieredcache/tieredcache/tiered"
)

var (
	ddbOnce   sync.Once
	ddb       *ddbserve.Server
	ddbErr    error
	tableSeq  atomic.Int64
	unsafeRun = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)
)

// TestMain stops DynamoDB Local (if a test started it) and checks that no
// goroutine leaked.
func TestMain(m *testing.M) {
	code := m.Run()
	if ddb != nil {
		_ = ddb.Stop()
	}
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// awsConfig is the config of the DynamoDB Local all tests share (started on
// first use). A test that cannot have it fails: it never skips, in CI or not.
func awsConfig(t testing.TB) aws.Config {
	t.Helper()
	ddbOnce.Do(func() { ddb, ddbErr = ddbserve.Start(context.Background()) })
	if ddbErr != nil {
		t.Fatalf("DynamoDB Local: %v", ddbErr)
	}
	return ddbserve.AWSConfig(ddb.Endpoint)
}

func tableName(t testing.TB) string {
	return fmt.Sprintf("otel%d_%s", tableSeq.Add(1), unsafeRun.ReplaceAllString(t.Name(), "_"))
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newCache opens a Cache on a fresh table whose DynamoDB client carries the
// extra client options and, when opts is not nil, InstrumentDynamoDB(opts).
func newCache(t testing.TB, tweak func(*tiered.Options[string]), opts []tieredotel.Option, clientOpts ...func(*dynamodb.Options)) *tiered.Cache[string] {
	t.Helper()
	cfg := awsConfig(t)
	o := tiered.Options[string]{
		Table:       tableName(t),
		CreateTable: true,
		AWS:         &cfg,
		CallTimeout: 5 * time.Second, // DynamoDB Local on a busy machine
	}
	if opts != nil {
		clientOpts = append(clientOpts, tieredotel.InstrumentDynamoDB(opts...))
	}
	o.DynamoDB = l2.NewClient(cfg, clientOpts...)
	if tweak != nil {
		tweak(&o)
	}
	c, err := tiered.New(testContext(t), o)
	if err != nil {
		t.Fatalf("tiered.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls cond (states that change on the cache's own goroutines have
// no event to await) until it holds, or fails after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
