package l1

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine (Ristretto's included) outlives
// the tests: every Cache a test makes must be closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTest returns an open Cache closed at the end of the test.
func newTest[V any](tb testing.TB, o Options) *Cache[V] {
	tb.Helper()
	c, err := New[V](o)
	if err != nil {
		tb.Fatalf("New(%+v): %v", o, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
