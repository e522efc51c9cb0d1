// Package mono is the process's monotonic clock, in nanoseconds since an
// arbitrary origin taken when the process starts.
//
// One Now costs one read of the monotonic clock (time.Since on a Time that
// carries a monotonic reading reads nothing else): about half the price of
// time.Now, which also reads the wall clock. Wall-clock steps (NTP, an
// operator) never move it. It keeps running while the process is stopped
// (SIGSTOP, a paused container); on Linux it does not count system suspend.
package mono

import "time"

// origin carries a monotonic reading: Since and Sub on it use only that.
var origin = time.Now()

// Now returns the monotonic time in nanoseconds since the origin.
func Now() int64 { return int64(time.Since(origin)) }

// Of converts t to Now's scale. For a t that carries a monotonic reading
// (anything time.Now returned, and Add of it) the result is exact; for a t
// without one (a parsed or constructed time, a fake clock's) it is computed
// from the wall clock.
func Of(t time.Time) int64 { return int64(t.Sub(origin)) }

// Time converts a Now reading back to a time.Time that carries it as its
// monotonic reading.
func Time(n int64) time.Time { return origin.Add(time.Duration(n)) }
