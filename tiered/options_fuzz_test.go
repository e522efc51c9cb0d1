package tiered

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/l1"
)

// FuzzOptions feeds arbitrary option values to the validation New runs. It
// must never panic; it either refuses them with an error matching
// ErrInvalidOptions, or accepts values that every later step can use: l1
// accepts them, TTLs fit under their caps, a refresh point comes before every
// jittered expiry, and the poll interval fits inside the trust window.
func FuzzOptions(f *testing.F) {
	f.Add(int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), 0.0, 0.0, 0)
	f.Add(int64(64<<20), int64(time.Minute), int64(5*time.Minute), int64(time.Hour), int64(-1), int64(2*time.Second), int64(50*time.Millisecond), 0.1, 0.8, 64)
	f.Add(int64(0), int64(0), int64(30*time.Second), int64(0), int64(0), int64(0), int64(0), 0.0, 0.0, 0)
	f.Add(int64(1), int64(-1), int64(0), int64(0), int64(0), int64(time.Millisecond), int64(0), math.NaN(), math.NaN(), -1)
	f.Add(int64(-5), int64(time.Hour), int64(time.Second), int64(0), int64(0), int64(0), int64(0), -0.5, 0.95, 0)
	f.Fuzz(func(t *testing.T, maxBytes, l1TTL, l1MaxTTL, l2TTL, negTTL, bound, poll int64, jitter, refresh float64, outage int) {
		o := Options[string]{
			Table:          "fuzz-table",
			L1MaxBytes:     maxBytes,
			L1TTL:          time.Duration(l1TTL),
			L1MaxTTL:       time.Duration(l1MaxTTL),
			L2TTL:          time.Duration(l2TTL),
			NegativeTTL:    time.Duration(negTTL),
			StalenessBound: time.Duration(bound),
			PollInterval:   time.Duration(poll),
			TTLJitter:      jitter,
			RefreshAhead:   refresh,
			MaxOutageLoads: outage,
		}
		err := o.setDefaults()
		if err != nil {
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("refused with %v, which does not match ErrInvalidOptions", err)
			}
			return
		}
		switch {
		case o.L1TTL <= 0 || o.L1MaxTTL <= 0 || o.L1TTL > o.L1MaxTTL:
			t.Fatalf("accepted L1TTL %v, L1MaxTTL %v", o.L1TTL, o.L1MaxTTL)
		case o.L2TTL <= 0 || o.StalenessBound <= 0 || o.PollInterval <= 0 || o.PollInterval >= o.StalenessBound/2:
			t.Fatalf("accepted L2TTL %v, StalenessBound %v, PollInterval %v", o.L2TTL, o.StalenessBound, o.PollInterval)
		case !(o.TTLJitter >= 0 && o.TTLJitter < 1):
			t.Fatalf("accepted TTLJitter %v", o.TTLJitter)
		case !(o.RefreshAhead >= 0 && o.RefreshAhead < 1) || o.RefreshAhead > 0 && o.RefreshAhead >= 1-o.TTLJitter:
			t.Fatalf("accepted RefreshAhead %v with TTLJitter %v", o.RefreshAhead, o.TTLJitter)
		case o.L1MaxBytes <= 0 || o.MaxOutageLoads <= 0:
			t.Fatalf("accepted L1MaxBytes %d, MaxOutageLoads %d", o.L1MaxBytes, o.MaxOutageLoads)
		}
		// What New hands l1 must be accepted by it (checked without
		// starting a Ristretto: l1 validates before it builds one).
		if err := l1.CheckOptions(l1Options(o)); err != nil {
			t.Fatalf("tiered accepted options l1 refuses: %v", err)
		}
	})
}
