package dynamolocal

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
	sharedMu   sync.Mutex
	tableSeq   atomic.Int64
)

// InCI reports whether CI=true: there, a test that cannot reach DynamoDB Local
// fails instead of skipping.
func InCI() bool { return os.Getenv("CI") == "true" }

// ErrShort is what Start and Shared return in a test binary run with
// -short: -short means "without DynamoDB Local", so no JVM is started.
var ErrShort = errors.New("dynamolocal: DynamoDB Local is not started under -short")

// shortRun reports whether this is a test binary run with -short. It is
// false outside tests (the demo, internal/cmd/ddblocal).
func shortRun() bool { return testing.Testing() && flag.Parsed() && testing.Short() }

// Main is a TestMain body: it runs the tests, stops the shared server (if one
// was started), checks that no goroutine leaked (go.uber.org/goleak) and exits
// with the tests' code.
//
// -short is a developer's choice: the tests that need DynamoDB Local skip
// (ForTest) and no JVM starts. Under CI=true, where nothing may skip, Main
// refuses -short and fails the run. Examples run against DynamoDB Local and
// cannot skip, so under -short Main leaves them out (-test.skip=^Example,
// unless -test.skip is given).
func Main(m *testing.M) {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		if InCI() {
			fmt.Fprintln(os.Stderr, "dynamolocal: -short is refused under CI=true: there every test runs, none skips")
			os.Exit(2)
		}
		if f := flag.Lookup("test.skip"); f != nil && f.Value.String() == "" {
			_ = f.Value.Set("^Example")
		}
	}
	code := m.Run()
	StopShared()
	if code == 0 {
		if err := goleak.Find(LeakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// LeakOptions are the goleak options for code that uses the AWS SDK: idle
// keep-alive connections of its HTTP client are not leaks of ours.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	}
}

// StopShared stops the server ForTest started, if any.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		_ = shared.Stop()
	}
}

// Shared starts (once per process) and returns a server for tests and
// benchmarks; StopShared (called by Main) stops it. It always starts its own
// DynamoDB Local ($TIEREDCACHE_DDBLOCAL_DIR only says where it is installed).
func Shared() (*Server, error) {
	sharedOnce.Do(func() {
		sharedMu.Lock()
		defer sharedMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx)
	})
	return shared, sharedErr
}

// ForTest returns the shared server. If it cannot start, the test fails under
// CI=true and is skipped otherwise. Under -short it skips at once (see
// SkipShort).
func ForTest(tb testing.TB) *Server {
	tb.Helper()
	SkipShort(tb)
	s, err := Shared()
	if err != nil {
		if InCI() {
			tb.Fatalf("DynamoDB Local is required under CI=true: %v", err)
		}
		tb.Skipf("DynamoDB Local unavailable: %v", err)
	}
	return s
}

// SkipShort skips a test that needs DynamoDB Local when run with -short,
// saying so; under CI=true it fails it instead: -short must not make CI
// pass by skipping.
func SkipShort(tb testing.TB) {
	tb.Helper()
	if !testing.Short() {
		return
	}
	if InCI() {
		tb.Fatal("dynamolocal: -short is refused under CI=true: this test needs DynamoDB Local and must run")
	}
	tb.Skip("needs DynamoDB Local (Java): skipped under -short; run without -short (as make test does) for the whole suite")
}

var unsafeTableChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// TableName is a valid table name unique within this process, derived from the
// test's name.
func TableName(tb testing.TB) string {
	name := unsafeTableChars.ReplaceAllString(tb.Name(), "_")
	name = strings.Trim(name, "_")
	if len(name) > 200 {
		name = name[:200]
	}
	return fmt.Sprintf("t%d_%s", tableSeq.Add(1), name)
}
