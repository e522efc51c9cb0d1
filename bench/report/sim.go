package main

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/tieredcache/tieredcache/l1"
)

// hitPoint is the L1 hit ratio measured with one L1 budget.
type hitPoint struct {
	MaxBytes int64
	HitRatio float64
}

// hitSeries is one Zipf exponent's curve.
type hitSeries struct {
	S      float64
	Points []hitPoint
}

// simConfig sizes the hit-ratio simulation.
type simConfig struct {
	Keys      int       // distinct keys
	ValueSize int       // bytes per value
	Requests  int       // measured requests per budget (as many again warm the cache first)
	Exponents []float64 // Zipf exponents (> 1), one curve each
	Budgets   []int64   // L1MaxBytes values
}

// simulateHitRatio runs a cache-aside workload against tiered's L1 (package
// l1, with the options tiered gives it by default except MaxBytes: the same
// Ristretto configuration, per-item overhead and admission policy) and
// returns the hit ratio per budget and exponent. A miss fills the key as
// tiered does after an L2 read (BeginFill, then Fill). One goroutine: the
// curve is about the policy, not about contention.
func simulateHitRatio(cfg simConfig) ([]hitSeries, error) {
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("sim/key/%07d", i)
	}
	value := make([]byte, cfg.ValueSize)
	var out []hitSeries
	for _, s := range cfg.Exponents {
		series := hitSeries{S: s}
		for _, budget := range cfg.Budgets {
			start := time.Now()
			c, err := l1.New[[]byte](l1.Options{MaxBytes: budget, TTL: time.Hour, MaxTTL: time.Hour, Jitter: l1.NoJitter})
			if err != nil {
				return nil, err
			}
			z := rand.NewZipf(rand.New(rand.NewSource(1)), s, 1, uint64(cfg.Keys-1))
			hits := 0
			for i := range 2 * cfg.Requests {
				k := keys[z.Uint64()]
				if _, ok := c.Get(k); ok {
					if i >= cfg.Requests {
						hits++
					}
					continue
				}
				f := c.BeginFill(k)
				c.Fill(k, f, value, int64(len(value)), 0)
			}
			_ = c.Close()
			p := hitPoint{MaxBytes: budget, HitRatio: float64(hits) / float64(cfg.Requests)}
			series.Points = append(series.Points, p)
			logf("  hit ratio s=%.2f L1MaxBytes=%s: %.3f (%v)", s, mib(budget), p.HitRatio, time.Since(start).Round(time.Millisecond))
		}
		out = append(out, series)
	}
	return out, nil
}

// mib formats a byte count in MiB.
func mib(n int64) string {
	switch m := float64(n) / (1 << 20); {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case m >= 10:
		return fmt.Sprintf("%.0f MiB", m)
	default:
		return fmt.Sprintf("%.2f MiB", m)
	}
}
