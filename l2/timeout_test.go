package l2_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/l2"
)

// TestWritesCutByCallTimeoutAreErrTimeout: a fill and a lease write
// (UpdateItem) that DynamoDB does not answer within CallTimeout end with
// ErrTimeout and context.DeadlineExceeded, never context.Canceled, though the
// SDK's text inside says "context canceled" (the watchdog ends the call by
// cancelling its context): that text is what a loaded DynamoDB Local shows
// in the demo. They count in Stats.Timeouts; a call whose caller gave up
// counts as an error, not as a timeout.
func TestWritesCutByCallTimeoutAreErrTimeout(t *testing.T) {
	e := newEnv(t, func(o *l2.Options) { o.CallTimeout = 200 * time.Millisecond })
	c := ctx(t)
	e.inj.Add(ddbfault.Rule{Op: "UpdateItem", Latency: time.Minute}) // cut short by the call's context
	_, fillErr := e.tbl.Fill(c, "k", []byte("v"), false, time.Minute, "")
	_, leaseErr := e.tbl.AcquireLeaseAt(c, "k", 0, "owner-1", time.Second)
	for op, err := range map[string]error{"Fill": fillErr, "AcquireLeaseAt": leaseErr} {
		if !errors.Is(err, l2.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Fatalf("%s past CallTimeout = %v; want ErrTimeout and DeadlineExceeded, not Canceled", op, err)
		}
		if !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("%s: %v; want the SDK's text (context canceled) kept inside", op, err)
		}
	}
	gone, cancel := context.WithCancel(c)
	cancel()
	if _, err := e.tbl.Fill(gone, "k", []byte("v"), false, time.Minute, ""); !errors.Is(err, context.Canceled) || errors.Is(err, l2.ErrTimeout) {
		t.Fatalf("Fill of a caller that gave up = %v; want context.Canceled, not ErrTimeout", err)
	}
	if st := e.tbl.Stats(); st.Timeouts != 2 || st.Errors != 3 {
		t.Fatalf("Stats: %d timeouts, %d errors; want 2 timeouts among 3 errors", st.Timeouts, st.Errors)
	}
}
