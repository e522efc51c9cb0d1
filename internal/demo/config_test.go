package demo

import (
	"io"
	"testing"
	"time"
)

// TestManyNodesScaleTheDefaults: above 3 nodes the defaults of -rate and
// -workers are shares of fixed totals, the rate ramps up and -call-timeout
// is manyNodesCallTimeout, so that many node processes still run on a small
// machine with one DynamoDB Local; up to 3 nodes, and for flags given
// explicitly, nothing changes. The node processes get the values.
func TestManyNodesScaleTheDefaults(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		rate, workers int
		ramp, call    time.Duration
	}{
		{args: nil, rate: 2000, workers: 8},
		{args: []string{"-nodes", "3"}, rate: 2000, workers: 8},
		{args: []string{"-nodes", "20"}, rate: 100, workers: 1, ramp: manyNodesRampUp, call: manyNodesCallTimeout},
		{args: []string{"-nodes", "4"}, rate: 500, workers: 4, ramp: manyNodesRampUp, call: manyNodesCallTimeout},
		{args: []string{"-nodes", "20", "-rate", "400", "-workers", "3", "-call-timeout", "300ms"},
			rate: 400, workers: 3, ramp: manyNodesRampUp, call: 300 * time.Millisecond},
	} {
		c, err := parseFlags(tc.args, io.Discard, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if c.Rate != tc.rate || c.Workers != tc.workers || c.RampUp != tc.ramp || c.CallTimeout != tc.call {
			t.Errorf("%q: rate %d, workers %d, ramp-up %v, call timeout %v; want %d, %d, %v, %v",
				tc.args, c.Rate, c.Workers, c.RampUp, c.CallTimeout, tc.rate, tc.workers, tc.ramp, tc.call)
		}
		c.Table, c.SourceTable = "t", "s"
		child, err := parseFlags(c.childArgs("n1"), io.Discard, nil)
		if err != nil {
			t.Fatalf("%q: child: %v", tc.args, err)
		}
		if child.Rate != c.Rate || child.Workers != c.Workers || child.RampUp != c.RampUp || child.CallTimeout != c.CallTimeout {
			t.Errorf("%q: the node gets rate %d, workers %d, ramp-up %v, call timeout %v; want the parent's %d, %d, %v, %v",
				tc.args, child.Rate, child.Workers, child.RampUp, child.CallTimeout, c.Rate, c.Workers, c.RampUp, c.CallTimeout)
		}
	}
}
