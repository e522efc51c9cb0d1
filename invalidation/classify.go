package invalidation

import (
	"errors"
	"math/rand/v2"
	"time"

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
