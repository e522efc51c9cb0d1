package l1

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	r, err := Options{}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := resolved{
		maxBytes:     DefaultMaxBytes,
		ttl:          DefaultTTL,
		maxTTL:       DefaultMaxTTL,
		jitter:       DefaultJitter,
		itemOverhead: DefaultItemOverhead,
		numCounters:  10 * DefaultMaxBytes / AssumedItemSize,
		bufferItems:  DefaultBufferItems,
	}
	if r != want {
		t.Fatalf("zero Options resolved to %+v, want %+v", r, want)
	}
}

func TestOptionsDerived(t *testing.T) {
	// A MaxTTL below DefaultTTL lowers the default TTL instead of failing.
	r, err := Options{MaxTTL: 10 * time.Second}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.ttl != 10*time.Second {
		t.Errorf("TTL with MaxTTL=10s: got %v, want 10s", r.ttl)
	}
	r, err = Options{Jitter: NoJitter, MaxBytes: 100}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.jitter != 0 {
		t.Errorf("Jitter NoJitter resolved to %v, want 0", r.jitter)
	}
	if r.numCounters != 10 {
		t.Errorf("NumCounters for a tiny budget: got %d, want 10", r.numCounters)
	}
}

func TestOptionsInvalid(t *testing.T) {
	cases := []struct {
		field string
		o     Options
	}{
		{"MaxBytes", Options{MaxBytes: -1}},
		{"TTL", Options{TTL: -time.Second}},
		{"TTL", Options{TTL: 10 * time.Minute}}, // > DefaultMaxTTL
		{"TTL", Options{TTL: 2 * time.Second, MaxTTL: time.Second}},
		{"MaxTTL", Options{MaxTTL: -time.Second}},
		{"Jitter", Options{Jitter: 1}},
		{"Jitter", Options{Jitter: 1.5}},
		{"Jitter", Options{Jitter: math.NaN()}},
		{"ItemOverhead", Options{ItemOverhead: -1}},
		{"NumCounters", Options{NumCounters: -1}},
		{"BufferItems", Options{BufferItems: -1}},
	}
	for _, tc := range cases {
		c, err := New[int](tc.o)
		if err == nil {
			_ = c.Close()
			t.Errorf("New(%+v): no error, want one for %s", tc.o, tc.field)
			continue
		}
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%+v): %v is not ErrInvalidOptions", tc.o, err)
		}
		var oe *OptionsError
		if !errors.As(err, &oe) {
			t.Errorf("New(%+v): %T is not an *OptionsError", tc.o, err)
			continue
		}
		if oe.Field != tc.field {
			t.Errorf("New(%+v): field %q, want %q (%v)", tc.o, oe.Field, tc.field, err)
		}
	}
}
