package l2

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Sentinel errors. Every error this package returns for one of these
// conditions satisfies errors.Is with the sentinel; the typed errors below
// carry the details.
var (
	// ErrInvalidOptions: Options are missing or malformed (see *OptionsError).
	ErrInvalidOptions = errors.New("l2: invalid options")
	// ErrEmptyKey: the key is the empty string.
	ErrEmptyKey = errors.New("l2: empty key")
	// ErrInvalidKey: the key is not valid UTF-8 (DynamoDB S attributes must be).
	ErrInvalidKey = errors.New("l2: invalid key")
	// ErrKeyTooLong: namespace + "#" + key exceeds the 2048-byte partition key
	// limit (see *KeyTooLongError).
	ErrKeyTooLong = errors.New("l2: key too long")
	// ErrValueTooLarge: the value cannot fit in a 400 KB item next to its key
	// and the other attributes (see *ValueTooLargeError).
	ErrValueTooLarge = errors.New("l2: value too large")
	// ErrInvalidTTL: a TTL (entry, tombstone or lease) is not positive.
	ErrInvalidTTL = errors.New("l2: invalid TTL")
	// ErrInvalidLease: a lease owner is empty or not valid UTF-8.
	ErrInvalidLease = errors.New("l2: invalid lease owner")
	// ErrNotFound: the key has no live item: absent, deleted (tombstone),
	// expired, or only leased (being filled).
	ErrNotFound = errors.New("l2: not found")
	// ErrCorruptItem: an item in the table does not follow the item format
	// (see *CorruptItemError). Counted in Stats.CorruptItems.
	ErrCorruptItem = errors.New("l2: corrupt item")
	// ErrConflict: a conditional write (Fill, Refresh, DeleteIfVersion) found
	// the item not vacant, at another version, or leased by an older release
	// (see *ConflictError).
	ErrConflict = errors.New("l2: conflict")
	// ErrLeaseLost: a Fill with a lease found the key moved past the version
	// the lease is bound to (a Put, Delete or other fill landed), or a
	// ReleaseLease found the lease gone (released, or expired and taken).
	// A *ConflictError with LeaseLost set; errors.Is(err, ErrConflict) holds too.
	ErrLeaseLost = errors.New("l2: lease lost")
	// ErrThrottled: DynamoDB throttled the call (ProvisionedThroughputExceeded,
	// ThrottlingException, RequestLimitExceeded) after the client's retries.
	// The SDK's own error stays reachable with errors.As.
	ErrThrottled = errors.New("l2: throttled")
	// ErrTimeout: the call ran out of Options.CallTimeout (DynamoDB, or the
	// way to it, made no progress for that long), or of HardTimeoutFactor x
	// CallTimeout in all. A call cut short by the caller's own context is
	// not marked: that says nothing about DynamoDB. The context error stays
	// reachable (errors.Is(err, context.DeadlineExceeded)).
	ErrTimeout = errors.New("l2: call timed out")
	// ErrInvalidRequest: DynamoDB rejected the request as invalid
	// (ValidationException, or any other client error but throttling and a
	// failed condition, e.g. ResourceNotFoundException for a missing table,
	// AccessDeniedException): DynamoDB answered, so this says nothing about
	// its health; retrying the same request gets the same answer (see
	// *RequestError).
	ErrInvalidRequest = errors.New("l2: request rejected as invalid")
	// ErrPartial: BatchGet could not read every key (see *PartialError).
	ErrPartial = errors.New("l2: batch partially read")
	// ErrTableMismatch: an existing table does not fit the item format or the
	// options (see *TableMismatchError).
	ErrTableMismatch = errors.New("l2: table mismatch")
)

// OptionsError says which option is wrong. errors.Is(err, ErrInvalidOptions).
type OptionsError struct {
	Field  string
	Reason string
}

func (e *OptionsError) Error() string {
	return "l2: invalid options: " + e.Field + ": " + e.Reason
}

func (e *OptionsError) Unwrap() error { return ErrInvalidOptions }

// KeyTooLongError reports a key whose partition key value (namespace + "#" +
// key) would be Len bytes, over Max. errors.Is(err, ErrKeyTooLong).
type KeyTooLongError struct {
	Len int // bytes of the encoded partition key
	Max int // MaxPartitionKeyBytes
}

func (e *KeyTooLongError) Error() string {
	return fmt.Sprintf("l2: key too long: partition key would be %d bytes, max %d", e.Len, e.Max)
}

func (e *KeyTooLongError) Unwrap() error { return ErrKeyTooLong }

// ValueTooLargeError reports a value of Size bytes where at most Max fit for
// this key. errors.Is(err, ErrValueTooLarge).
type ValueTooLargeError struct {
	Size int // bytes of the encoded value
	Max  int // the largest value that fits for this key: MaxItemBytes - key - ItemOverheadBytes
}

func (e *ValueTooLargeError) Error() string {
	return fmt.Sprintf("l2: value too large: %d bytes, max %d for this key", e.Size, e.Max)
}

func (e *ValueTooLargeError) Unwrap() error { return ErrValueTooLarge }

// CorruptItemError reports an item that does not follow the item format:
// Attr names the attribute, Reason what is wrong with it. It never contains
// the key or the value. errors.Is(err, ErrCorruptItem).
type CorruptItemError struct {
	Attr   string
	Reason string
}

func (e *CorruptItemError) Error() string {
	return "l2: corrupt item: attribute " + e.Attr + ": " + e.Reason
}

func (e *CorruptItemError) Unwrap() error { return ErrCorruptItem }

// ConflictError reports a conditional write that did not land.
// errors.Is(err, ErrConflict) always holds; errors.Is(err, ErrLeaseLost) holds
// when LeaseLost is set.
type ConflictError struct {
	// Current is the live item found in the table (a value or a negative
	// entry, not expired), read at no extra cost from the failed write; nil
	// when the item is vacant or corrupt (for instance leased by someone else).
	Current *Item
	// LeaseLost: the write carried a lease and the table no longer holds it.
	LeaseLost bool
	// HolderExpires is when a live lease held by someone else expires; zero
	// when there is none.
	HolderExpires time.Time
}

func (e *ConflictError) Error() string {
	switch {
	case e.LeaseLost:
		return "l2: lease lost: the key was written, deleted or leased by another owner"
	case e.Current != nil:
		return "l2: conflict: the key holds a live entry"
	case !e.HolderExpires.IsZero():
		return "l2: conflict: the key is leased by another owner"
	}
	return "l2: conflict: the item changed"
}

func (e *ConflictError) Is(target error) bool {
	return target == ErrConflict || (e.LeaseLost && target == ErrLeaseLost)
}

// PartialError reports keys BatchGet could not read: UnprocessedKeys still
// left after Options.BatchRetries retries, or a failed call (Err). The keys
// it lists may exist in the table. errors.Is(err, ErrPartial), and
// errors.Is/As reach Err too.
type PartialError struct {
	Keys []string // keys not read, in no particular order
	Err  error    // the call error that stopped the batch; nil when retries ran out
}

func (e *PartialError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("l2: batch partially read: %d keys not read: %v", len(e.Keys), e.Err)
	}
	return fmt.Sprintf("l2: batch partially read: %d keys still unprocessed after retries", len(e.Keys))
}

func (e *PartialError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrPartial, e.Err}
	}
	return []error{ErrPartial}
}

// RequestError reports a request DynamoDB rejected as invalid: Op is the
// operation ("Put", "GetItem", ...), Code DynamoDB's error code
// ("ValidationException", ...), Err the SDK's error. Its message holds only
// Op and Code: DynamoDB's own message may quote attribute names or request
// details, so it is reachable only through Err (errors.As). errors.Is(err,
// ErrInvalidRequest).
type RequestError struct {
	Op   string
	Code string
	Err  error
}

func (e *RequestError) Error() string {
	return "l2: " + e.Op + ": request rejected as invalid: " + e.Code
}

// Unwrap returns ErrInvalidRequest and the SDK's error.
func (e *RequestError) Unwrap() []error { return []error{ErrInvalidRequest, e.Err} }

// TableMismatchError lists every way an existing table differs from what
// this package needs. errors.Is(err, ErrTableMismatch).
type TableMismatchError struct {
	Table    string
	Problems []string // one line each, e.g. `stream disabled`
}

func (e *TableMismatchError) Error() string {
	return "l2: table " + e.Table + " does not fit: " + strings.Join(e.Problems, "; ")
}

func (e *TableMismatchError) Unwrap() error { return ErrTableMismatch }

// throttleCodes are the error codes DynamoDB uses for throttling.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
	"Throttling":                             true,
}

// isThrottle reports whether err is a DynamoDB throttling error.
func isThrottle(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && throttleCodes[api.ErrorCode()]
}

// invalidRequest reports whether err is DynamoDB rejecting the request as
// invalid, and its error code: an API error that is the client's fault (a
// modeled error marked so, or any HTTP 4xx: the SDK leaves the fault of
// unmodeled codes such as ValidationException unknown), other than
// throttling (a 400 too, but a sign of load) and a failed condition (an
// answer, handled by the caller).
func invalidRequest(err error) (string, bool) {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return "", false
	}
	code := api.ErrorCode()
	if throttleCodes[code] || code == "ConditionalCheckFailedException" {
		return "", false
	}
	if api.ErrorFault() == smithy.FaultClient {
		return code, true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		if s := re.HTTPStatusCode(); s >= 400 && s < 500 {
			return code, true
		}
	}
	return "", false
}

// callError wraps an SDK error from op, marking throttling with ErrThrottled
// and a rejected request as a *RequestError.
func callError(op string, err error) error {
	if isThrottle(err) {
		return fmt.Errorf("l2: %s: %w: %w", op, ErrThrottled, err)
	}
	if code, ok := invalidRequest(err); ok {
		return &RequestError{Op: op, Code: code, Err: err}
	}
	return fmt.Errorf("l2: %s: %w", op, err)
}

// conditionFailed returns the ConditionalCheckFailedException in err, if any.
func conditionFailed(err error) (*types.ConditionalCheckFailedException, bool) {
	var ccf *types.ConditionalCheckFailedException
	ok := errors.As(err, &ccf)
	return ccf, ok
}
