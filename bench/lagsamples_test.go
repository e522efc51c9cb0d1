package bench

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dumpLagSamples writes every measured ack -> evict lag, in milliseconds,
// one per line, to the file named by $TC_LAG_SAMPLES (when it is set), for
// the report tool (bench/report) to plot the CDF from.
func dumpLagSamples(b *testing.B, lags []time.Duration) {
	path := os.Getenv("TC_LAG_SAMPLES")
	if path == "" {
		return
	}
	var sb strings.Builder
	for _, d := range lags {
		sb.WriteString(strconv.FormatFloat(ms(d), 'f', 3, 64))
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Errorf("TC_LAG_SAMPLES: %v", err)
	}
}
