package tiered

import (
	"errors"
	"fmt"
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
	// outcome is unknown; this node's L1 no longer holds the key.
	ErrL2Unavailable = errors.New("tiered: L2 unavailable")
	// ErrLoaderPanic marks a panic inside a Loader, turned into an error for
	// every caller that was waiting on that load.
	ErrLoaderPanic = errors.New("tiered: loader panicked")
	// ErrStale marks a value served by stale-if-error: the loader failed and
	// the last known value was returned with this error (use errors.As with
	// *StaleError for the loader's error).
	ErrStale = errors.New("tiered: stale value served after loader error")
)

// LoaderPanicError carries the value a Loader panicked with.
type LoaderPanicError struct {
	Value any
}

func (e *LoaderPanicError) Error() string { return fmt.Sprintf("tiered: loader panicked: %v", e.Value) }

// Unwrap makes errors.Is(err, ErrLoaderPanic) true.
func (e *LoaderPanicError) Unwrap() error { return ErrLoaderPanic }

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
