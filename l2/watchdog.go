package l2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"sync"
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
//   - once the body has been read (the HTTP client wrapper reads it whole
//     before the SDK decodes it), DynamoDB has answered: decoding is local
//     work, and no deadline of ours applies until the next attempt starts;
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

// watchdog cancels a call's context when its deadline passes, the deadline
// being pushed back as the call makes progress (see above). The timer is
// lazy: arm only moves the deadline, and the timer, when it fires early,
// sleeps again until the current deadline.
type watchdog struct {
	first, idle time.Duration
	cancel      context.CancelCauseFunc

	mu       sync.Mutex
	deadline time.Time
	paused   bool // the body was read: no deadline until the next arm
	done     bool // fired or closed
	timer    *time.Timer
}

func newWatchdog(first, idle time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{first: first, idle: idle, cancel: cancel, deadline: time.Now().Add(first)}
	w.timer = time.AfterFunc(first, w.fire)
	return w
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
		w.timer.Reset(d)
	}
}

// pause lifts the deadline until the next arm: the response has been read.
func (w *watchdog) pause() {
	w.mu.Lock()
	w.paused = true
	w.mu.Unlock()
}

func (w *watchdog) fire() {
	w.mu.Lock()
	if w.done || w.paused {
		w.mu.Unlock()
		return
	}
	if left := time.Until(w.deadline); left > 0 {
		w.timer.Reset(left)
		w.mu.Unlock()
		return
	}
	w.done = true
	w.mu.Unlock()
	w.cancel(errCallTimeout)
}

func (w *watchdog) close() {
	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	w.mu.Unlock()
}

// callCtx applies Options.CallTimeout to one call whose response may wait
// first before it starts.
func (t *Table) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return t.callCtxFirst(ctx, t.o.CallTimeout)
}

func (t *Table) callCtxFirst(ctx context.Context, first time.Duration) (context.Context, context.CancelFunc) {
	if t.o.CallTimeout < 0 {
		return ctx, func() {}
	}
	hard, hcancel := context.WithTimeoutCause(ctx, mulSat(t.o.CallTimeout, HardTimeoutFactor), errCallTimeout)
	cctx, ccancel := context.WithCancelCause(hard)
	w := newWatchdog(first, t.o.CallTimeout, ccancel)
	return context.WithValue(cctx, watchdogKey{}, w), func() {
		w.close()
		ccancel(context.Canceled)
		hcancel()
	}
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

// withProgress is the per-call option every data-path call passes: it wraps
// the client's HTTP client so that the watchdog in the request's context
// (if any) sees the response start and its bytes arrive. Being per call, it
// works for any *dynamodb.Client, not only those NewClient builds.
func withProgress(o *dynamodb.Options) {
	if o.HTTPClient != nil {
		o.HTTPClient = progressClient{next: o.HTTPClient}
	}
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
	if resp.Body == nil {
		w.pause()
		return resp, nil
	}
	// Read the whole body here, re-arming as bytes arrive, then lift the
	// deadline: the SDK decodes while it reads, and its CPU time between
	// reads (large under load or the race detector) is not DynamoDB being
	// slow. DynamoDB's answers are JSON documents the SDK holds in memory
	// whole anyway.
	buf := bytes.NewBuffer(make([]byte, 0, presize(resp.ContentLength)))
	_, err = buf.ReadFrom(&progressReader{r: resp.Body, w: w})
	resp.Body.Close()
	w.pause()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(buf)
	return resp, nil
}

// presize is the buffer to allocate for a body of n bytes (-1: unknown),
// trusting the header only up to a 16 MB BatchGetItem page and some.
func presize(n int64) int {
	const most = 20 << 20
	if n <= 0 {
		return 512
	}
	return int(min(n, most)) + 1
}

// progressReader re-arms the watchdog while bytes arrive.
type progressReader struct {
	r io.Reader
	w *watchdog
}

func (b *progressReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.w.arm(b.w.idle)
	}
	return n, err
}
