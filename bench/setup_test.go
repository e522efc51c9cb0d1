package bench

import (
	"context"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/sync/errgroup"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// TestMain starts DynamoDB Local lazily (on the first benchmark that needs
// it), stops it afterwards and checks for leaked goroutines. Under CI=true a
// benchmark that cannot reach DynamoDB Local fails (dynamolocal.ForTest).
func TestMain(m *testing.M) { dynamolocal.Main(m) }

// Knobs, as environment variables so that `make bench` can pass them:
//
//	TC_L1HIT_ROUNDS   raw/tiered pairs of loops per run of BenchmarkL1Hit (default 7)
//	TC_STAMPEDE_G     goroutines per stampede in BenchmarkColdStampede (default 1000)
//	TC_LAG_WRITES     writes measured by BenchmarkInvalidationLag (default 1000)
//	TC_LAG_LANES      concurrent writer lanes in BenchmarkInvalidationLag (default 4)
//	TC_LAG_BUDGET     time bound of BenchmarkInvalidationLag (default 2m)
//	TC_LAG_SAMPLES    file BenchmarkInvalidationLag writes its lags to (ms, one a line)
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// awsConfig points the SDK at the shared DynamoDB Local server.
func awsConfig(tb testing.TB) aws.Config {
	return dynamolocal.AWSConfig(dynamolocal.ForTest(tb).Endpoint())
}

// setupContext bounds setup work (table creation, warm-up writes).
func setupContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// opCounter counts DynamoDB requests by operation through an SDK middleware
// on the client handed to tiered.Options.DynamoDB, so the counts are what
// DynamoDB saw, not what the cache says about itself.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *opCounter) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("bench.count",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			op := middleware.GetOperationName(ctx)
			c.mu.Lock()
			if c.n == nil {
				c.n = map[string]int64{}
			}
			c.n[op]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func (c *opCounter) get(op string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}

// reads is the number of L2 read requests so far.
func (c *opCounter) reads() int64 { return c.get("GetItem") + c.get("BatchGetItem") }

// newNode builds one Cache with its own DynamoDB client, as one process would
// have, on table (created if missing). tweak adjusts the options.
func newNode[V any](tb testing.TB, cfg aws.Config, table string, tweak func(*tiered.Options[V])) (*tiered.Cache[V], *opCounter) {
	tb.Helper()
	ops := &opCounter{}
	ddb := l2.NewClient(cfg, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, ops.add) })
	o := tiered.Options[V]{
		Table:       table,
		CreateTable: true,
		AWS:         &cfg,
		DynamoDB:    ddb,
		// A benchmark measures the cache, not how a loaded machine meets
		// the production deadline; a slow call must not fail it.
		CallTimeout: 5 * time.Second,
	}
	if tweak != nil {
		tweak(&o)
	}
	c, err := tiered.New(setupContext(tb), o)
	if err != nil {
		tb.Fatalf("tiered.New: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c, ops
}

// parallelDo runs fn(i) for i in [0, n) on at most workers goroutines and returns
// the first error.
func parallelDo(n, workers int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(workers)
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	return g.Wait()
}

// median of xs (xs is sorted in place).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// percentile of sorted ds, nearest-rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
