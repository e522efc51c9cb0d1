package peers

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/viccon/sturdyc"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/internal/rawristretto"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// The workload is BenchmarkL1Hit's (bench/l1hit_test.go): 4096 keys of 128
// bytes, all resident in every cache, read with Zipf-distributed keys.
const (
	numKeys   = 4096
	valueSize = 128
	zipfS     = 1.1
	seqLen    = 1 << 16
)

// entryTTL is every contender's entry lifetime: tiered's default L1 maximum,
// long enough that nothing expires during the run. Every contender checks it
// on its hit path, as tiered does.
const entryTTL = tiered.DefaultL1MaxTTL

// maxNonHitFrac is the largest fraction of Gets that may be something else
// than a local hit.
const maxNonHitFrac = 1e-4

var (
	redisOnce sync.Once
	redisSrv  *redisServer
	redisErr  error
)

// TestMain stops what the benchmark started: redis-server and DynamoDB
// Local. (No goleak here: the Redis clients keep background goroutines that
// are theirs to manage.)
func TestMain(m *testing.M) {
	code := m.Run()
	if redisSrv != nil {
		if err := redisSrv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	dynamolocal.StopShared()
	os.Exit(code)
}

// redisAddr starts redis-server once per process and returns its address.
func redisAddr(b *testing.B) string {
	redisOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		redisSrv, redisErr = startRedis(ctx)
	})
	if redisErr != nil {
		b.Fatal(redisErr)
	}
	return redisSrv.addr
}

// contender is one cache under test. get reads key and reports whether the
// value came from the process's own memory (a hit of the local tier).
type contender struct {
	name string
	get  func(key string) bool
	// misses, if set, returns the contender's own count of local misses so
	// far (for clients whose get cannot tell a local hit from a round trip).
	misses func() uint64
}

// BenchmarkPeers measures, in one run, the L1-hit path of tieredcache
// (Cache.Get, DisableInvalidation, DynamoDB Local behind it) and of the
// caches users would pick instead, on the same keys, values and Zipf
// sequences, under b.RunParallel (GOMAXPROCS goroutines):
//
//	tiered     tiered.Cache[[]byte].Get, every key in L1
//	ristretto  raw Ristretto v2 Get, configured as tiered's L1, entries with a TTL
//	sturdyc    sturdyc.Client[[]byte].Get (github.com/viccon/sturdyc)
//	rueidis    rueidis DoCache(GET) served from its client-side cache (RESP3 tracking)
//	goredis    go-redis v9 Get with ClientSideCacheConfig (RESP3 tracking, experimental in v9.23)
//
// Each run interleaves TC_PEERS_ROUNDS (default 5) rounds of one b.RunParallel
// loop of b.N Gets per contender, in an order that rotates per round, each
// timed on its own after a GC (as BenchmarkL1Hit does: noise on a shared
// machine then lands on every side alike). Reported, as medians over rounds:
//
//	ns/op                tiered
//	<name>-ns/op         each contender
//	<name>-ratio         median of per-round <name> ns/op / tiered ns/op:
//	                     above 1, the peer's hit costs more than tiered's
//
//	<name>-nonhits       Gets that were not local hits (a miss, or a round
//	                     trip to Redis) over all rounds
//
// More than one non-hit in 10,000 Gets fails the benchmark: the figures must
// be the hit path.
func BenchmarkPeers(b *testing.B) {
	rounds := envInt("TC_PEERS_ROUNDS", 5)
	keys := make([]string, numKeys)
	values := make([][]byte, numKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("peers/key/%06d", i)
		values[i] = make([]byte, valueSize)
		for j := range values[i] {
			values[i][j] = byte(i + j)
		}
	}
	addr := redisAddr(b)
	// Seeded once for both Redis clients: a later SET would invalidate
	// what the first one tracks.
	seedRedis(b, addr, keys, values)
	contenders := []contender{
		newTiered(b, keys, values),
		newRistretto(b, keys, values),
		newSturdyc(b, keys, values),
		newRueidis(b, addr, keys),
		newGoRedis(b, addr, keys),
	}

	seqs := zipfSequences(16, numKeys, seqLen, zipfS)
	mask := seqLen - 1
	missed := make([]atomic.Int64, len(contenders))
	loop := func(ci int) func(*testing.B) {
		get := contenders[ci].get
		return func(b *testing.B) {
			var next atomic.Uint32
			b.RunParallel(func(pb *testing.PB) {
				seq := seqs[int(next.Add(1))%len(seqs)]
				i, miss := 0, 0
				for pb.Next() {
					if !get(keys[seq[i&mask]]) {
						miss++
					}
					i++
				}
				missed[ci].Add(int64(miss))
			})
		}
	}

	b.Run("zipf", func(b *testing.B) {
		ns := make([][]float64, len(contenders))
		ratios := make([][]float64, len(contenders))
		before := make([]uint64, len(contenders))
		for ci, c := range contenders {
			if c.misses != nil {
				before[ci] = c.misses()
			}
		}
		for r := range rounds {
			cost := make([]float64, len(contenders))
			for j := range contenders {
				ci := (j + r) % len(contenders)
				cost[ci] = timeLoop(b, loop(ci))
			}
			for ci := range contenders {
				ns[ci] = append(ns[ci], cost[ci])
				ratios[ci] = append(ratios[ci], cost[ci]/cost[0])
			}
		}
		gets := float64(rounds) * float64(b.N)
		b.ReportMetric(median(ns[0]), "ns/op")
		for ci, c := range contenders {
			m := missed[ci].Load()
			if c.misses != nil {
				m += int64(c.misses() - before[ci])
			}
			if frac := float64(m) / gets; frac > maxNonHitFrac {
				b.Fatalf("%s: %d of %.0f Gets were not local hits: the figures would not be the hit path", c.name, m, gets)
			}
			b.ReportMetric(median(ns[ci]), c.name+"-ns/op")
			if ci > 0 {
				b.ReportMetric(median(ratios[ci]), c.name+"-ratio")
			}
			b.ReportMetric(float64(m), c.name+"-nonhits")
		}
	})
}

// timeLoop runs loop (one b.RunParallel over b.N Gets) after a GC and
// returns its ns per Get.
func timeLoop(b *testing.B, loop func(*testing.B)) float64 {
	runtime.GC()
	start := time.Now()
	loop(b)
	return float64(time.Since(start).Nanoseconds()) / float64(b.N)
}

// newTiered builds a tiered Cache on DynamoDB Local with every key in L1,
// as BenchmarkL1Hit does: DisableInvalidation (the hit path is the same code
// either way; the consumer would evict keys at moments we do not control).
func newTiered(b *testing.B, keys []string, values [][]byte) contender {
	srv, err := dynamolocal.Shared()
	if err != nil {
		b.Fatalf("DynamoDB Local: %v", err)
	}
	cfg := dynamolocal.AWSConfig(srv.Endpoint())
	var reads atomic.Int64
	count := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("peers.reads",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if op := middleware.GetOperationName(ctx); op == "GetItem" || op == "BatchGetItem" {
					reads.Add(1)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := tiered.New(ctx, tiered.Options[[]byte]{
		Table:               "peers_" + strconv.FormatInt(time.Now().UnixNano(), 36),
		CreateTable:         true,
		AWS:                 &cfg,
		DynamoDB:            l2.NewClient(cfg, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, count) }),
		CallTimeout:         5 * time.Second,
		DisableInvalidation: true,
		L1TTL:               entryTTL,
		L1MaxTTL:            entryTTL,
	})
	if err != nil {
		b.Fatalf("tiered.New: %v", err)
	}
	b.Cleanup(func() { _ = c.Close() })
	for i, k := range keys {
		if err := c.Set(ctx, k, values[i]); err != nil {
			b.Fatalf("tiered Set: %v", err)
		}
	}
	// Set stores into L1 asynchronously; a Get that misses fills it.
	for attempt := 0; ; attempt++ {
		r0 := reads.Load()
		for _, k := range keys {
			if _, err := c.Get(ctx, k); err != nil {
				b.Fatalf("tiered Get: %v", err)
			}
		}
		if reads.Load() == r0 {
			break
		}
		if attempt == 10 {
			b.Fatal("tiered: keys still read from DynamoDB after 10 passes")
		}
	}
	bg := context.Background()
	return contender{name: "tiered", get: func(k string) bool {
		_, err := c.Get(bg, k)
		return err == nil
	}}
}

// newRistretto is raw Ristretto configured as tiered's L1 is by default
// (rawristretto.Resident), every entry stored with Ristretto's own TTL.
func newRistretto(b *testing.B, keys []string, values [][]byte) contender {
	c, err := rawristretto.Resident(keys, values, entryTTL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return contender{name: "ristretto", get: func(k string) bool {
		_, ok := c.Get(k)
		return ok
	}}
}

// newSturdyc builds a sturdyc client large enough for every key, with the
// same TTL.
func newSturdyc(b *testing.B, keys []string, values [][]byte) contender {
	c := sturdyc.New[[]byte](4*len(keys), 16, entryTTL, 10)
	for i, k := range keys {
		c.Set(k, values[i])
	}
	for _, k := range keys {
		if _, ok := c.Get(k); !ok {
			b.Fatalf("sturdyc: %s not resident", k)
		}
	}
	return contender{name: "sturdyc", get: func(k string) bool {
		_, ok := c.Get(k)
		return ok
	}}
}

// seedRedis writes every key with a plain client (no tracking).
func seedRedis(b *testing.B, addr string, keys []string, values [][]byte) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	p := c.Pipeline()
	for i, k := range keys {
		p.Set(ctx, k, values[i], 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		b.Fatalf("seeding redis: %v", err)
	}
}

// newRueidis builds a rueidis client with client-side caching (its default:
// RESP3 CLIENT TRACKING) and reads every key through DoCache until each
// read is a cache hit.
func newRueidis(b *testing.B, addr string, keys []string) contender {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		b.Fatalf("rueidis: %v", err)
	}
	b.Cleanup(c.Close)
	ctx := context.Background()
	get := func(k string) rueidis.RedisResult { return c.DoCache(ctx, c.B().Get().Key(k).Cache(), entryTTL) }
	for attempt := 0; ; attempt++ {
		missing := 0
		for _, k := range keys {
			r := get(k)
			if err := r.Error(); err != nil {
				b.Fatalf("rueidis GET: %v", err)
			}
			if !r.IsCacheHit() {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if attempt == 10 {
			b.Fatalf("rueidis: %d keys still not served from its cache", missing)
		}
	}
	return contender{name: "rueidis", get: func(k string) bool {
		r := get(k)
		_, err := r.ToString()
		return err == nil && r.IsCacheHit()
	}}
}

// newGoRedis builds a go-redis v9 client with its built-in client-side cache
// (RESP3, ClientSideCacheConfig; MaxStaleness = the same TTL) and reads every
// key until a pass makes no cache miss.
func newGoRedis(b *testing.B, addr string, keys []string) contender {
	c := redis.NewClient(&redis.Options{
		Addr:     addr,
		Protocol: 3,
		ClientSideCacheConfig: &redis.ClientSideCacheConfig{
			MaxEntries:   4 * len(keys),
			MaxStaleness: entryTTL,
		},
	})
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		m0 := c.CSCStats().Misses
		for _, k := range keys {
			if err := c.Get(ctx, k).Err(); err != nil {
				b.Fatalf("go-redis GET: %v", err)
			}
		}
		if attempt > 0 && c.CSCStats().Misses == m0 {
			break
		}
		if attempt == 10 {
			b.Fatal("go-redis: keys still missing its client-side cache after 10 passes")
		}
	}
	if c.CSCStats().Hits == 0 {
		b.Fatal("go-redis: client-side cache never hit: CSC is not active")
	}
	return contender{
		name: "goredis",
		get: func(k string) bool {
			_, err := c.Get(ctx, k).Result()
			return err == nil
		},
		misses: func() uint64 { return c.CSCStats().Misses },
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// zipfSequences returns one Zipf sequence of indices in [0, n) per
// goroutine, each of length count (a power of two), from distinct seeds, as
// bench.ZipfSequences does (copied: this module does not import bench).
func zipfSequences(goroutines, n, count int, s float64) [][]int32 {
	seqs := make([][]int32, goroutines)
	for g := range seqs {
		z := rand.NewZipf(rand.New(rand.NewSource(int64(g)+1)), s, 1, uint64(n-1))
		seqs[g] = make([]int32, count)
		for i := range seqs[g] {
			seqs[g][i] = int32(z.Uint64())
		}
	}
	return seqs
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
