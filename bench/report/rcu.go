package main

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/sync/errgroup"

	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// rcuPoint is one run of the read-units measurement.
type rcuPoint struct {
	L1MaxBytes  int64
	HitRatio    float64 // L1 hit ratio, from the cache's Stats
	Reads       int64   // GetItem + BatchGetItem requests DynamoDB saw
	Units       float64 // read capacity units DynamoDB reported consumed
	UnitsPer1k  float64 // Units per 1,000 Gets
	ModelPer1k  float64 // (1 - HitRatio) * 1000 * units per read by item size
	UnitsPerGet float64 // units per L2 read (Units / Reads)
}

// rcuSeries is one value size's points.
type rcuSeries struct {
	ValueSize    int
	Keys         int
	UnitsPerRead float64 // ceil(item size / 4 KB): a strongly consistent read (tiered's default)
	Measured     bool    // Units are DynamoDB's ConsumedCapacity; false: Reads * UnitsPerRead
	Points       []rcuPoint
}

// rcuConfig sizes the read-units measurement.
type rcuConfig struct {
	ValueSizes []int
	Keys       []int     // distinct keys, per value size
	Fractions  []float64 // L1MaxBytes as fractions of the working set's L1 cost
	Requests   int       // measured Gets per point (as many again warm L1 first)
	S          float64   // Zipf exponent
}

// readUnits counts DynamoDB read requests and the capacity units DynamoDB
// reports for them: an SDK middleware asks every GetItem and BatchGetItem
// for ReturnConsumedCapacity=TOTAL and adds up what comes back.
type readUnits struct {
	mu    sync.Mutex
	reads int64
	units float64
}

func (r *readUnits) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("benchreport.rcu",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			switch p := in.Parameters.(type) {
			case *dynamodb.GetItemInput:
				p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
			case *dynamodb.BatchGetItemInput:
				p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
			default:
				return next.HandleInitialize(ctx, in)
			}
			out, md, err := next.HandleInitialize(ctx, in)
			var units float64
			switch o := out.Result.(type) {
			case *dynamodb.GetItemOutput:
				if o.ConsumedCapacity != nil {
					units += aws.ToFloat64(o.ConsumedCapacity.CapacityUnits)
				}
			case *dynamodb.BatchGetItemOutput:
				for _, c := range o.ConsumedCapacity {
					units += aws.ToFloat64(c.CapacityUnits)
				}
			}
			r.mu.Lock()
			r.reads++
			r.units += units
			r.mu.Unlock()
			return out, md, err
		}), middleware.After)
}

func (r *readUnits) snapshot() (int64, float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, r.units
}

// l1Counts is the only place the report reads tiered.Stats: L1 hits and
// misses (Stats' layout is being regrouped; keep this the one function to
// adapt).
func l1Counts(c *tiered.Cache[[]byte]) (hits, misses uint64) {
	st := c.Stats()
	return st.L1.Hits, st.L1.Misses
}

// measureReadUnits stores the keys once, then for each L1 budget builds a
// fresh node (DisableInvalidation: nothing else writes the table), warms its
// L1 with cfg.Requests Zipf Gets and measures cfg.Requests more, serially (no
// two Gets collapse into one read): the L1 hit ratio from Stats, and the
// reads and units DynamoDB reports. Units per read by item size are the
// model: 1 unit per 4 KB of item for a strongly consistent read.
func measureReadUnits(ctx context.Context, awsCfg aws.Config, cfg rcuConfig) ([]rcuSeries, error) {
	var out []rcuSeries
	for si, size := range cfg.ValueSizes {
		nkeys := cfg.Keys[si]
		table := "benchreport_rcu_" + strconv.Itoa(size) + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		keys := make([]string, nkeys)
		for i := range keys {
			keys[i] = fmt.Sprintf("rcu/key/%06d", i)
		}
		value := make([]byte, size)
		for i := range value {
			value[i] = byte('a' + i%26)
		}
		writer, err := newReportNode(ctx, awsCfg, table, 0, nil)
		if err != nil {
			return nil, err
		}
		if err := parallel(nkeys, 16, func(i int) error { return writer.Set(ctx, keys[i], value) }); err != nil {
			_ = writer.Close()
			return nil, fmt.Errorf("storing keys: %w", err)
		}
		_ = writer.Close()

		// Every item has the same size; the L1 cost of one entry is
		// key + value + the default per-item overhead.
		itemCost := int64(len(keys[0]) + size + 256)
		series := rcuSeries{ValueSize: size, Keys: nkeys}
		for _, frac := range cfg.Fractions {
			budget := int64(frac * float64(itemCost) * float64(nkeys))
			ru := &readUnits{}
			c, err := newReportNode(ctx, awsCfg, table, budget, ru)
			if err != nil {
				return nil, err
			}
			z := rand.NewZipf(rand.New(rand.NewSource(7)), cfg.S, 1, uint64(nkeys-1))
			get := func(n int) error {
				for range n {
					if _, err := c.Get(ctx, keys[z.Uint64()]); err != nil {
						return err
					}
				}
				return nil
			}
			if err := get(cfg.Requests); err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("warm-up Get: %w", err)
			}
			h0, m0 := l1Counts(c)
			r0, u0 := ru.snapshot()
			if err := get(cfg.Requests); err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("measured Gets: %w", err)
			}
			h1, m1 := l1Counts(c)
			r1, u1 := ru.snapshot()
			_ = c.Close()
			p := rcuPoint{
				L1MaxBytes: budget,
				HitRatio:   float64(h1-h0) / float64((h1-h0)+(m1-m0)),
				Reads:      r1 - r0,
				Units:      u1 - u0,
			}
			p.UnitsPer1k = 1000 * p.Units / float64(cfg.Requests)
			if p.Reads > 0 {
				p.UnitsPerGet = p.Units / float64(p.Reads)
			}
			series.Points = append(series.Points, p)
			logf("  read units %d B values, L1MaxBytes=%s: L1 hit ratio %.3f, %d reads, %.1f units, %.1f units/1k Gets",
				size, mib(budget), p.HitRatio, p.Reads, p.Units, p.UnitsPer1k)
		}
		// The item DynamoDB stores is the value plus the key and tiered's
		// attributes; its units per read are what DynamoDB reported per
		// read, which the model line uses.
		series.UnitsPerRead = unitsPerRead(series.Points, size)
		series.Measured = true
		for _, p := range series.Points {
			if p.Reads > 0 && p.Units == 0 {
				series.Measured = false // the server reported no consumed capacity
			}
		}
		for i := range series.Points {
			p := &series.Points[i]
			if !series.Measured {
				p.Units = float64(p.Reads) * series.UnitsPerRead
				p.UnitsPer1k = 1000 * p.Units / float64(cfg.Requests)
			}
			p.ModelPer1k = (1 - p.HitRatio) * 1000 * series.UnitsPerRead
		}
		out = append(out, series)
	}
	return out, nil
}

// unitsPerRead is ceil(item size / 4 KB) for a strongly consistent read. The
// item is a little larger than the value (key, version, expiry attributes);
// DynamoDB rounds up per 4 KB, so the value size decides unless it sits just
// under a 4 KB boundary. Cross-checked against the measured units per read.
func unitsPerRead(points []rcuPoint, valueSize int) float64 {
	model := math.Ceil(float64(valueSize+100) / 4096)
	for _, p := range points {
		if p.Reads > 0 && p.UnitsPerGet > 0 && math.Abs(p.UnitsPerGet-model) > 1e-9 {
			logf("  note: %d B values: DynamoDB reported %.2f units per read, model %.0f", valueSize, p.UnitsPerGet, model)
		}
	}
	return model
}

// newReportNode builds a Cache on table with L1 budget maxBytes (0: default),
// counting read units with ru when set.
func newReportNode(ctx context.Context, awsCfg aws.Config, table string, maxBytes int64, ru *readUnits) (*tiered.Cache[[]byte], error) {
	var opts []func(*dynamodb.Options)
	if ru != nil {
		opts = append(opts, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, ru.add) })
	}
	return tiered.New(ctx, tiered.Options[[]byte]{
		Table:               table,
		CreateTable:         true,
		AWS:                 &awsCfg,
		DynamoDB:            l2.NewClient(awsCfg, opts...),
		CallTimeout:         5 * time.Second,
		DisableInvalidation: true,
		L1MaxBytes:          maxBytes,
	})
}

// parallel runs fn(i) for i in [0, n) on at most workers goroutines and returns
// the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(workers)
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	return g.Wait()
}
