package sdklog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/smithy-go/logging"
)

const noise = "failed to close HTTP response body, this may affect connection reuse: %v"

func TestSlogLowersTheKnownWarning(t *testing.T) {
	var buf bytes.Buffer
	l := Slog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Logf(logging.Warn, noise, "response did not match expected checksum, 0, 1")
	l.Logf(logging.Warn, "something else: %d", 7)
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "expected checksum") {
		t.Errorf("the #3545 warning not at debug: %q", out)
	}
	if !strings.Contains(out, `level=WARN msg="aws-sdk: something else: 7"`) {
		t.Errorf("another warning not kept at warn: %q", out)
	}
	// Nil loggers drop everything, without panicking.
	Slog(nil).Logf(logging.Warn, "x")
	Filter(nil).Logf(logging.Warn, "x")
}

func TestFilterDropsOnlyTheKnownWarning(t *testing.T) {
	var buf bytes.Buffer
	l := Filter(logging.NewStandardLogger(&buf))
	l.Logf(logging.Warn, noise, "response did not match expected checksum, 0, 1")
	if buf.Len() != 0 {
		t.Fatalf("the #3545 warning got through: %q", buf.String())
	}
	l.Logf(logging.Warn, noise, "connection reset") // not the checksum: a real problem
	l.Logf(logging.Debug, "debug line")
	if out := buf.String(); !strings.Contains(out, "connection reset") || !strings.Contains(out, "debug line") {
		t.Fatalf("other lines dropped: %q", out)
	}
}
