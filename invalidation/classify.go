package invalidation

import (
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"
)

// errClass is what the consumer does about an API error.
type errClass int

const (
	errOther    errClass = iota // back off and retry
	errThrottle                 // LimitExceeded and friends: back off longer
	errExpired                  // iterator expired: renew from the last record handled
	errTrimmed                  // records gone: lost track
	errInvalid                  // iterator rejected ("Invalid ShardId in ShardIterator"): renew
	errNotFound                 // stream or shard unknown
)

func classify(err error) errClass {
	var (
		expired  *types.ExpiredIteratorException
		trimmed  *types.TrimmedDataAccessException
		limit    *types.LimitExceededException
		notFound *types.ResourceNotFoundException
	)
	switch {
	case errors.As(err, &expired):
		return errExpired
	case errors.As(err, &trimmed):
		return errTrimmed
	case errors.As(err, &limit):
		return errThrottle
	case errors.As(err, &notFound):
		return errNotFound
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
			"LimitExceededException", "TooManyRequestsException":
			return errThrottle
		case "ExpiredIteratorException":
			return errExpired
		case "TrimmedDataAccessException":
			return errTrimmed
		case "ResourceNotFoundException":
			return errNotFound
		case "ValidationException":
			return errInvalid
		}
	}
	return errOther
}

// isReaderLimit reports AWS's answer to a third process reading one shard
// at once (LimitExceededException).
func isReaderLimit(err error) bool {
	var limit *types.LimitExceededException
	var api smithy.APIError
	return errors.As(err, &limit) || errors.As(err, &api) && api.ErrorCode() == "LimitExceededException"
}

// readerLimitWindow and readerLimitWarn: a consumer refused with
// LimitExceededException readerLimitWarn times within readerLimitWindow says
// so (Stats.ReaderLimited, a warning in the log at most once a window).
const (
	readerLimitWindow = time.Minute
	readerLimitWarn   = 3
)

// readerLimits remembers when the last readerLimitWarn refusals happened.
type readerLimits struct {
	mu       sync.Mutex
	at       [readerLimitWarn]time.Time // a ring of the last refusals
	next     int
	lastWarn time.Time
}

// note records a refusal at now; it reports whether to warn now.
func (r *readerLimits) note(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at[r.next] = now
	r.next = (r.next + 1) % readerLimitWarn
	if !r.pressedAt(now) || now.Sub(r.lastWarn) < readerLimitWindow && !r.lastWarn.IsZero() {
		return false
	}
	r.lastWarn = now
	return true
}

// pressed reports whether readerLimitWarn refusals happened within the last
// readerLimitWindow before now.
func (r *readerLimits) pressed(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pressedAt(now)
}

func (r *readerLimits) pressedAt(now time.Time) bool {
	oldest := r.at[r.next] // the ring's oldest slot
	return !oldest.IsZero() && now.Sub(oldest) < readerLimitWindow
}

// backoff is capped exponential backoff with "equal jitter": the wait is
// uniform in [d/2, d], so many processes throttled together spread out while
// each still waits at least half the step.
type backoff struct {
	base, max time.Duration
	n         int
}

func (b *backoff) next() time.Duration {
	d := b.base << min(b.n, 20)
	if d <= 0 || d > b.max {
		d = b.max
	}
	b.n++
	half := d / 2
	return half + rand.N(d-half+1)
}

func (b *backoff) reset() { b.n = 0 }

// startClass is what Start does about an error.
type startClass int

const (
	startRetry      startClass = iota // transient (throttling, 5xx, transport, timeouts): retry until ctx ends
	startRedescribe                   // possibly transient, possibly not: describe again, a few times at most
	startFatal                        // retrying cannot fix it: return at once
)

// startRedescribeLimit bounds the startRedescribe errors one Start accepts:
// with the default MaxBackoff they span at least about 10 s, ample for
// DescribeStream to catch up with a stream just created; an error that
// persists longer (say, a Streams client for another region) is reported.
const startRedescribeLimit = 10

// fatalCodes are 4xx error codes that no retry fixes. Anything 4xx not listed
// in transientCodes is fatal too; this list only matters when the status code
// is unknown (a StreamsAPI or TableAPI that is not an SDK client).
var fatalCodes = map[string]bool{
	"AccessDeniedException":        true,
	"UnrecognizedClientException":  true,
	"InvalidSignatureException":    true,
	"IncompleteSignature":          true,
	"IncompleteSignatureException": true,
	"MissingAuthenticationToken":   true,
	"InvalidClientTokenId":         true,
	"ValidationException":          true,
	"SerializationException":       true,
	"UnknownOperationException":    true,
}

// transientCodes are error codes worth retrying whatever their HTTP status
// (beyond the SDK's throttling and timeout codes).
var transientCodes = map[string]bool{
	"InternalServerError":          true,
	"InternalFailure":              true,
	"ServiceUnavailable":           true,
	"ServiceUnavailableException":  true,
	"InternalServerErrorException": true,
}

// classifyStart tells Start what to do about err from op (DescribeTable,
// DescribeStream or GetShardIterator).
func classifyStart(op string, err error) startClass {
	var api smithy.APIError
	if !errors.As(err, &api) {
		// Transport errors, timeouts (CallTimeout), credential retrieval: the
		// request got no answer from the service.
		return startRetry
	}
	code := api.ErrorCode()
	_, throttle := retry.DefaultThrottleErrorCodes[code]
	_, timeout := retry.DefaultRetryableErrorCodes[code]
	var ise *types.InternalServerError
	switch {
	case throttle, timeout, transientCodes[code], classify(err) == errThrottle, errors.As(err, &ise):
		return startRetry
	case code == "ResourceNotFoundException":
		if op == "DescribeTable" {
			return startFatal // no such table
		}
		// The stream or a shard is unknown although DescribeTable just named
		// it: the stream may have been replaced meanwhile (or DescribeStream
		// lags behind): describe again.
		return startRedescribe
	case code == "ExpiredTokenException" || code == "ExpiredToken":
		// Refreshable credentials may be renewed before the next attempt.
		return startRedescribe
	case code == "ValidationException" && op == "GetShardIterator":
		// A shard that closed or rolled (DynamoDB Local) between the listing and
		// the iterator: describe again.
		return startRedescribe
	}
	if fatalCodes[code] {
		return startFatal
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		if s := status.HTTPStatusCode(); s >= 500 {
			return startRetry
		} else if s >= 400 {
			return startFatal
		}
	}
	if api.ErrorFault() == smithy.FaultClient {
		return startFatal
	}
	return startRetry
}
