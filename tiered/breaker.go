package tiered

import (
	"context"
	"errors"

	"github.com/sony/gobreaker/v2"

	"github.com/tieredcache/tieredcache/l2"
)

// newBreaker builds the circuit breaker around DynamoDB. Answers that prove
// DynamoDB works (not found, a failed condition, bad input) count as
// successes; timeouts, throttling and transport errors as failures.
func newBreaker[V any](o Options[V], st *counters) *gobreaker.CircuitBreaker[any] {
	return gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "dynamodb",
		MaxRequests: 1,
		Timeout:     o.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= o.BreakerFailures
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				st.breakerOpens.Add(1)
			}
			o.Logger.Warn("tieredcache: DynamoDB circuit breaker", "from", from.String(), "to", to.String())
		},
		IsSuccessful: func(err error) bool {
			return err == nil || isDefinite(err)
		},
		// A caller giving up (its cancel, or its own deadline: Set and
		// Delete run on the caller's ctx) says nothing about DynamoDB; a call
		// that ran out of l2's CallTimeout (l2.ErrTimeout) does.
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) ||
				errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, l2.ErrTimeout)
		},
	})
}

// isDefinite reports errors that are DynamoDB's own, valid answers. A
// request DynamoDB rejected as invalid (l2.ErrInvalidRequest: a
// ValidationException or another 4xx but throttling) is one: DynamoDB
// answered, so it never counts against the breaker and is never reported as
// ErrL2Unavailable.
func isDefinite(err error) bool {
	return errors.Is(err, l2.ErrNotFound) || errors.Is(err, l2.ErrConflict) ||
		errors.Is(err, l2.ErrLeaseLost) || isBadInput(err) || errors.Is(err, l2.ErrCorruptItem) ||
		isTableMissing(err) || // a deleted table: see tablemissing.go
		errors.Is(err, l2.ErrInvalidRequest)
}

func isBadInput(err error) bool {
	return errors.Is(err, l2.ErrEmptyKey) || errors.Is(err, l2.ErrInvalidKey) ||
		errors.Is(err, l2.ErrKeyTooLong) || errors.Is(err, l2.ErrValueTooLarge)
}

// l2Call runs fn through the breaker. The requests fn makes are counted by
// l2 itself (every page and retry of a BatchGet too); calls the breaker
// refuses reach no DynamoDB and are counted nowhere.
func l2Call[V, T any](c *Cache[V], fn func() (T, error)) (T, error) {
	var t T // set by the closure, not returned through any: boxing an l2.Item allocates
	_, err := c.breaker.Execute(func() (any, error) {
		var err error
		t, err = fn()
		return nil, err
	})
	return t, breakerError(err)
}

// l2Store is l2Call for a write of the encoded value enc to key: a value
// too large for an item is refused with l2.ErrValueTooLarge before the
// breaker is consulted, so also while it is open, and without taking the
// half-open probe.
func l2Store[V, T any](c *Cache[V], key string, enc []byte, fn func() (T, error)) (T, error) {
	if err := c.l2.CheckValue(key, enc); err != nil {
		var zero T
		return zero, err
	}
	return l2Call(c, fn)
}

// l2Down reports whether err means DynamoDB could not answer (as opposed to a
// definite answer such as not found).
func l2Down(err error) bool {
	return err != nil && !isDefinite(err)
}
