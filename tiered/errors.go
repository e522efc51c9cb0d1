package tiered

import (
	"errors"
	"fmt"

	"github.com/sony/gobreaker/v2"

	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
)

var (
	// ErrNotFound is returned by Get when no tier has the key, and by a
	// Loader to say the key does not exist in the source (a result that is
	// cached for NegativeTTL).
	ErrNotFound = errors.New("tiered: not found")
	// ErrNilLoader is returned by GetOrLoad (on a miss) and GetMany when the
	// loader is nil.
	ErrNilLoader = errors.New("tiered: nil loader")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("tiered: cache closed")
	// ErrInvalidOptions wraps every problem New finds in Options.
	ErrInvalidOptions = errors.New("tiered: invalid options")
	// ErrL2Unavailable marks a write that could not reach DynamoDB (circuit
	// open, throttled, timed out or failed). The write did not happen, or its
	// outcome is unknown (a timed-out write may still have landed); this
	// node's L1 no longer holds the key, and this node keeps retrying the
	// invalidation in the background (a pending invalidation; see
	// Options.MaxPendingInvalidations and the README).
	ErrL2Unavailable = errors.New("tiered: L2 unavailable")
	// ErrLoaderPanic marks a panic inside a Loader, turned into an error for
	// every caller that was waiting on that load.
	ErrLoaderPanic = errors.New("tiered: loader panicked")
	// ErrLoaderGoexit marks a Loader (or BatchLoader) that called
	// runtime.Goexit instead of returning: every caller waiting on that load
	// gets this error (a *LoaderPanicError with Goexit set).
	ErrLoaderGoexit = errors.New("tiered: loader called runtime.Goexit")
	// ErrCodecPanic marks a Codec that panicked (see *CodecPanicError).
	ErrCodecPanic = errors.New("tiered: codec panicked")
	// ErrLoadTimeout marks a shared load that ran past Options.LoadTimeout
	// (a Get's miss, bounded by CallTimeout, gives ErrTimeout instead).
	// The error also matches context.DeadlineExceeded; a caller's own ctx
	// ending gives ctx's error alone, without ErrLoadTimeout.
	ErrLoadTimeout = errors.New("tiered: load ran past LoadTimeout")
	// ErrTableMissing marks a write to a table that does not exist (deleted
	// under a running cache): DynamoDB's ResourceNotFoundException. See
	// *TableMissingError. It is not an outage: it neither matches
	// ErrL2Unavailable nor opens the circuit breaker.
	ErrTableMissing = errors.New("tiered: table missing")
	// ErrInvalidTTL is returned by SetWithTTL for a negative TTL. It is
	// l2.ErrInvalidTTL.
	ErrInvalidTTL = l2.ErrInvalidTTL
	// ErrEmptyKey, ErrInvalidKey (not valid UTF-8) and ErrKeyTooLong (see
	// *KeyTooLongError) reject a key before any tier is consulted. They
	// are l2's sentinels.
	ErrEmptyKey   = l2.ErrEmptyKey
	ErrInvalidKey = l2.ErrInvalidKey
	ErrKeyTooLong = l2.ErrKeyTooLong
	// ErrValueTooLarge: an encoded value does not fit in one item (see
	// *ValueTooLargeError); nothing was written. It is l2.ErrValueTooLarge.
	ErrValueTooLarge = l2.ErrValueTooLarge
	// ErrTimeout marks a DynamoDB call that ran out of Options.CallTimeout,
	// ErrThrottled one DynamoDB throttled after the SDK's retries. Both come
	// wrapped in ErrL2Unavailable (or a *BatchError). They are l2's.
	ErrTimeout   = l2.ErrTimeout
	ErrThrottled = l2.ErrThrottled
	// ErrInvalidRequest: DynamoDB rejected a Set or Delete as invalid (a
	// ValidationException, or another 4xx but throttling; see *RequestError
	// for its code). An answer, not an outage: never ErrL2Unavailable, never
	// counted by the breaker. It is l2.ErrInvalidRequest.
	ErrInvalidRequest = l2.ErrInvalidRequest
	// ErrTableMismatch: the table exists but does not fit (see
	// *TableMismatchError); New returns it wrapped in ErrInvalidOptions. It
	// is l2.ErrTableMismatch.
	ErrTableMismatch = l2.ErrTableMismatch
	// ErrBreakerOpen marks a DynamoDB call the circuit breaker refused
	// without making it: the breaker is open, or half-open with its one
	// probe call in flight. It comes wrapped in ErrL2Unavailable, and
	// gobreaker's own error (ErrOpenState, ErrTooManyRequests) stays
	// reachable with errors.Is.
	ErrBreakerOpen = errors.New("tiered: circuit breaker open")
	// ErrStale marks a value served by stale-if-error: the loader failed and
	// the last known value was returned with this error (use errors.As with
	// *StaleError for the loader's error).
	ErrStale = errors.New("tiered: stale value served after loader error")
)

// LoaderPanicError carries the value a Loader panicked with, or, with
// Goexit set, says it called runtime.Goexit (Value is then nil).
type LoaderPanicError struct {
	Value  any
	Goexit bool
}

func (e *LoaderPanicError) Error() string {
	if e.Goexit {
		return "tiered: loader called runtime.Goexit"
	}
	return fmt.Sprintf("tiered: loader panicked: %v", e.Value)
}

// Unwrap makes errors.Is(err, ErrLoaderPanic) true, and with Goexit
// errors.Is(err, ErrLoaderGoexit) too.
func (e *LoaderPanicError) Unwrap() []error {
	if e.Goexit {
		return []error{ErrLoaderPanic, ErrLoaderGoexit}
	}
	return []error{ErrLoaderPanic}
}

// TableMissingError says DynamoDB has no table Table (ResourceNotFoundException)
// for operation Op: it was deleted, or the cache points at the wrong region or
// account. errors.Is(err, ErrTableMissing); the SDK's error stays reachable.
type TableMissingError struct {
	Table string
	Op    string
	Err   error
}

func (e *TableMissingError) Error() string {
	return "tiered: " + e.Op + ": table " + e.Table + " does not exist (deleted, or wrong region/account): " + e.Err.Error()
}

// Unwrap returns both ErrTableMissing and the underlying error.
func (e *TableMissingError) Unwrap() []error { return []error{ErrTableMissing, e.Err} }

// StaleError is returned alongside a stale value when StaleIfError is on and
// the loader failed.
type StaleError struct {
	Err error // the loader's error
}

func (e *StaleError) Error() string { return "tiered: serving stale value: " + e.Err.Error() }

// Unwrap returns both ErrStale and the loader's error.
func (e *StaleError) Unwrap() []error { return []error{ErrStale, e.Err} }

// L2Error wraps a DynamoDB failure on a write with the operation's name.
type L2Error struct {
	Op  string
	Err error
}

func (e *L2Error) Error() string { return "tiered: " + e.Op + ": L2 unavailable: " + e.Err.Error() }

// Unwrap returns both ErrL2Unavailable and the underlying error.
func (e *L2Error) Unwrap() []error { return []error{ErrL2Unavailable, e.Err} }

// EncodeError says the Codec could not encode a value; nothing was written.
type EncodeError struct {
	Err error
}

func (e *EncodeError) Error() string { return "tiered: encode value: " + e.Err.Error() }
func (e *EncodeError) Unwrap() error { return e.Err }

// KeyTooLongError reports a key whose partition key value (namespace + "#" +
// key) would be over DynamoDB's limit. errors.Is(err, ErrKeyTooLong).
type KeyTooLongError = l2.KeyTooLongError

// ValueTooLargeError reports a value too large for one item next to its
// key. errors.Is(err, ErrValueTooLarge).
type ValueTooLargeError = l2.ValueTooLargeError

// TableMismatchError lists every way an existing table differs from what the
// cache needs (New wraps it in ErrInvalidOptions). errors.Is(err,
// ErrTableMismatch).
type TableMismatchError = l2.TableMismatchError

// RequestError is l2's *RequestError: a request DynamoDB rejected as invalid,
// with its error code (errors.Is(err, ErrInvalidRequest)).
type RequestError = l2.RequestError

// StartError is returned (wrapped) by New when the stream consumer could not
// start: at once on a permanent error (Permanent set: a missing IAM
// permission, no such table), else when New's ctx ended while it retried.
type StartError = invalidation.StartError

// breakerError marks an error of the circuit breaker (a call it refused) with
// ErrBreakerOpen, keeping gobreaker's error reachable; others pass unchanged.
func breakerError(err error) error {
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%w: %w", ErrBreakerOpen, err)
	}
	return err
}
