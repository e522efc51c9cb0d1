package l2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// How Options.CallTimeout is applied. The size of an answer is not known in
// advance (a BatchGetItem page may carry 16 MB), so a fixed deadline either
// fails large answers or waits too long on a DynamoDB that is down. The rule
// tells slow from down by progress instead:
//
//   - the wait from sending a request to the first byte of its response is
//     bounded by CallTimeout; for BatchGetItem by one CallTimeout per
//     BatchKeysPerCallTimeout keys requested (DynamoDB reads every item
//     before it answers);
//   - each gap between bytes of the response body is bounded by
//     CallTimeout: the deadline is re-armed while bytes arrive;
//   - once the body has been read (to its end by the SDK for a body of up to
//     streamMax bytes, which it reads whole before decoding; whole by the
//     HTTP client wrapper before the SDK sees it for a larger one or one of
//     unknown size), DynamoDB has answered: decoding is local work, and no
//     progress deadline applies until the next attempt starts;
//   - whatever the progress, a call (its retries included) ends after
//     HardTimeoutFactor x CallTimeout.
//
// A call that runs out of any of these fails with ErrTimeout. The first rule
// is also applied from the moment the call starts, so a client that does
// not honour per-call options (a wrapper of API) still gets a deadline.
const (
	// HardTimeoutFactor: a data-path call never runs longer than
	// HardTimeoutFactor x Options.CallTimeout (10 s with the default), its
	// retries included, however steadily bytes arrive.
	HardTimeoutFactor = 20
	// BatchKeysPerCallTimeout: a BatchGetItem request of n keys may wait
	// ceil(n / BatchKeysPerCallTimeout) x CallTimeout for its response to
	// start (5 s for 100 keys with the default): DynamoDB reads up to 16 MB
	// before it sends a byte. DynamoDB Local on a loaded 2-core machine took
	// 0.3 to over 2 s for a 16 MB page.
	BatchKeysPerCallTimeout = 10
)

// errCallTimeout is the cause of a call context that ran out of CallTimeout.
var errCallTimeout = errors.New("l2: CallTimeout")

type watchdogKey struct{}

// watchdog is the context of one data-path call: the caller's context, which
// it cancels (cause errCallTimeout) when the progress deadline or the hard
// bound passes, the deadline being pushed back as the call makes progress
// (see above). One cancelCtx, this struct and one lazy timer per call: arm
// only moves the deadline, and the timer, when it fires early, sleeps again
// until the current deadline (or the hard bound, while paused).
type watchdog struct {
	context.Context // a cancelCtx of the caller's ctx: children attach to it directly
	cancel          context.CancelCauseFunc
	first, idle     time.Duration
	hard            time.Time // HardTimeoutFactor x CallTimeout after the start
	end             time.Time // Deadline: hard, or the caller's deadline if sooner

	mu       sync.Mutex
	deadline time.Time
	paused   bool // the body was read: no progress deadline until the next arm
	done     bool // fired or closed
	timer    *time.Timer

	bodyUse bool           // the first attempt's body is taken: later attempts allocate their own
	stream  progressBody   // the first attempt's small body
	body    bodyReader     // the first attempt's large body, read already
	reader  progressReader // the large body being read (one at a time: attempts are sequential)
}

// Deadline is the hard bound (or the caller's deadline, if sooner), as a
// context.WithTimeout of it would report.
func (w *watchdog) Deadline() (time.Time, bool) { return w.end, true }

// Value answers watchdogKey with w (for progressClient); other keys are the
// caller's context's.
func (w *watchdog) Value(key any) any {
	if _, ok := key.(watchdogKey); ok {
		return w
	}
	return w.Context.Value(key)
}

// arm sets the deadline to d from now.
func (w *watchdog) arm(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.deadline = time.Now().Add(d)
	if w.paused {
		w.paused = false
		w.timer.Reset(time.Until(w.next()))
	}
}

// pause lifts the progress deadline until the next arm: the response has
// been read. The hard bound still holds.
func (w *watchdog) pause() {
	w.mu.Lock()
	w.paused = true
	w.mu.Unlock()
}

// next is when the call must end as things stand (w.mu held).
func (w *watchdog) next() time.Time {
	if w.paused || w.hard.Before(w.deadline) {
		return w.hard
	}
	return w.deadline
}

func (w *watchdog) fire() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	if left := time.Until(w.next()); left > 0 {
		w.timer.Reset(left)
		w.mu.Unlock()
		return
	}
	w.done = true
	w.mu.Unlock()
	w.cancel(errCallTimeout)
}

// close ends the call: it stops the timer and cancels the context. A nil w
// (no deadline of ours) does nothing.
func (w *watchdog) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(context.Canceled)
}

// callCtx applies Options.CallTimeout to one call; the caller must close the
// watchdog returned (nil when CallTimeout is negative) once the call ends.
func (t *Table) callCtx(ctx context.Context) (context.Context, *watchdog) {
	return t.callCtxFirst(ctx, t.o.CallTimeout)
}

// callCtxFirst is callCtx for a call whose response may wait first before it
// starts.
func (t *Table) callCtxFirst(ctx context.Context, first time.Duration) (context.Context, *watchdog) {
	if t.o.CallTimeout < 0 {
		return ctx, nil
	}
	cctx, cancel := context.WithCancelCause(ctx)
	now := time.Now()
	w := &watchdog{Context: cctx, cancel: cancel, first: first, idle: t.o.CallTimeout}
	w.hard = now.Add(mulSat(t.o.CallTimeout, HardTimeoutFactor))
	w.end = w.hard
	if d, ok := ctx.Deadline(); ok && d.Before(w.end) {
		w.end = d
	}
	w.deadline = now.Add(first)
	w.timer = time.AfterFunc(time.Until(w.next()), w.fire)
	return w, w
}

// batchFirst is how long a BatchGetItem of n keys may wait for its response
// to start.
func (t *Table) batchFirst(n int) time.Duration {
	units := max(1, (n+BatchKeysPerCallTimeout-1)/BatchKeysPerCallTimeout)
	return mulSat(t.o.CallTimeout, units)
}

// mulSat is d x n (d >= 0, n >= 1), saturating instead of overflowing: a
// CallTimeout of years must not wrap into a negative deadline.
func mulSat(d time.Duration, n int) time.Duration {
	if d > math.MaxInt64/time.Duration(n) {
		return math.MaxInt64
	}
	return d * time.Duration(n)
}

// progressOpt is the per-call option every data-path call passes: it wraps
// the client's HTTP client so that the watchdog in the request's context
// (if any) sees the response start and its bytes arrive. Being per call, it
// works for any *dynamodb.Client, not only those NewClient builds. The
// wrapper of the client's own HTTP client is built once and reused
// (progressCache), so a call allocates nothing for it.
func (t *Table) progressOpt(o *dynamodb.Options) {
	if o.HTTPClient != nil {
		o.HTTPClient = t.progress.wrap(o.HTTPClient)
	}
}

// progressCache holds the progressClient of the HTTP client last seen.
type progressCache struct {
	last atomic.Pointer[progressWrapped]
}

type progressWrapped struct {
	next    dynamodb.HTTPClient
	wrapped dynamodb.HTTPClient // progressClient{next}, boxed once
}

func (p *progressCache) wrap(next dynamodb.HTTPClient) dynamodb.HTTPClient {
	// Interface comparison panics only on equal dynamic types that are not
	// comparable: such clients are never cached.
	if l := p.last.Load(); l != nil && l.next == next {
		return l.wrapped
	}
	w := dynamodb.HTTPClient(progressClient{next: next})
	if t := reflect.TypeOf(next); t != nil && t.Comparable() {
		p.last.Store(&progressWrapped{next: next, wrapped: w})
	}
	return w
}

// progressClient is an aws.HTTPClient that reports progress to the watchdog
// of the request's context.
type progressClient struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
}

func (p progressClient) Do(req *http.Request) (*http.Response, error) {
	w, _ := req.Context().Value(watchdogKey{}).(*watchdog)
	if w == nil {
		return p.next.Do(req)
	}
	w.arm(w.first) // a new attempt: wait for its response to start
	resp, err := p.next.Do(req)
	if err != nil || resp == nil {
		return resp, err
	}
	w.arm(w.idle)
	if resp.Body == nil || resp.Body == http.NoBody {
		w.pause()
		return resp, nil
	}
	w.mu.Lock()
	first := !w.bodyUse // the first attempt's body lives in w (no allocation)
	w.bodyUse = true
	w.mu.Unlock()
	if n := resp.ContentLength; n >= 0 && n <= streamMax {
		// A small body: hand it to the SDK as it comes, re-arming as bytes
		// arrive and lifting the deadline at its end (or on Close). The SDK
		// reads the whole body into its buffer before it decodes (smithy-go's
		// deserializers), so only that buffer's growth, microseconds for a
		// body this small, falls between reads.
		b := &w.stream
		if !first {
			b = new(progressBody) // a retry: the first attempt's body may still be referenced
		}
		*b = progressBody{r: resp.Body, w: w}
		resp.Body = b
		return resp, nil
	}
	// A large body (a BatchGetItem page of up to 16 MB) or one of unknown
	// size: read it whole here, re-arming as bytes arrive, then lift the
	// deadline: the SDK's buffer growth and decoding (whose CPU and GC time
	// was long enough under -race on a loaded machine to pass CallTimeout
	// between two reads of a 16 MB page) are not DynamoDB being slow.
	b := &w.body
	if !first {
		b = new(bodyReader)
	}
	w.reader = progressReader{r: resp.Body, w: w}
	buf, err := readBody(&w.reader, resp.ContentLength)
	resp.Body.Close()
	w.pause()
	if err != nil {
		return nil, err
	}
	b.Reset(buf)
	resp.Body = b
	return resp, nil
}

// streamMax is the largest response body progressClient hands to the SDK as
// it arrives rather than reading it first.
const streamMax = 1 << 20

// readBody reads r to its end into one buffer of exactly the body's size
// when the header gives it (n >= 0): no growth, no spare capacity.
func readBody(r io.Reader, n int64) ([]byte, error) {
	const most = 20 << 20 // trust the header only up to a 16 MB BatchGetItem page and some
	if n < 0 || n > most {
		return io.ReadAll(r)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	var one [1]byte
	if m, err := r.Read(one[:]); m > 0 { // longer than announced: read the rest too
		rest, err := io.ReadAll(r)
		return append(append(buf, one[0]), rest...), err
	} else if err != nil && err != io.EOF {
		return nil, err
	}
	return buf, nil
}

// bodyReader is a response body read already.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// progressBody re-arms the watchdog while bytes of a response body arrive,
// and pauses it at the end of the body or when it is closed.
type progressBody struct {
	r io.ReadCloser
	w *watchdog
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case err != nil:
		b.w.pause() // the end of the body, or a failed read: nothing left to wait for
	case n > 0:
		b.w.arm(b.w.idle)
	}
	return n, err
}

func (b *progressBody) Close() error {
	b.w.pause()
	return b.r.Close()
}

// progressReader re-arms the watchdog while bytes arrive.
type progressReader struct {
	r io.Reader
	w *watchdog
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.arm(p.w.idle)
	}
	return n, err
}
