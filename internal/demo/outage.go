package demo

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

// outage stops the cache's DynamoDB Local for a while and starts it again on
// the same port (-outage), as a real outage would look to the nodes: calls
// fail, then succeed again. The source of truth runs elsewhere and stays up,
// so every read should still succeed.
type outage struct {
	mu           sync.Mutex
	began, ended time.Time
	err          error
	done         chan struct{}
}

// feltCap bounds how long an outage waits, past its duration, for every node
// to have felt it.
const feltCap = 2 * time.Minute

// start stops srv for d, then, when felt is not nil, until felt is closed
// (or feltCap passes), and starts it again.
func (o *outage) start(srv *dynamolocal.Server, d time.Duration, felt <-chan struct{}, stderr io.Writer) {
	o.mu.Lock()
	o.done = make(chan struct{})
	o.mu.Unlock()
	go func() {
		defer close(o.done)
		o.set(func() { o.began = time.Now() })
		if err := srv.Stop(); err != nil {
			o.set(func() { o.err = err })
			return
		}
		time.Sleep(d) // the outage itself
		if felt != nil {
			select {
			case <-felt:
			case <-time.After(feltCap):
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := srv.Resume(ctx)
		o.set(func() { o.ended, o.err = time.Now(), err })
		if err != nil {
			fmt.Fprintf(stderr, "demo: DynamoDB Local did not come back: %v\n", err)
		}
	}()
}

func (o *outage) set(f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f()
}

// state is "", "DynamoDB DOWN" or "DynamoDB back after 5s".
func (o *outage) state() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.began.IsZero():
		return ""
	case o.err != nil:
		return "DynamoDB outage failed: " + o.err.Error()
	case o.ended.IsZero():
		return fmt.Sprintf("DynamoDB DOWN for %v", time.Since(o.began).Truncate(time.Second))
	}
	return fmt.Sprintf("DynamoDB was down %v", o.ended.Sub(o.began).Truncate(100*time.Millisecond))
}

// over reports whether an outage ran and DynamoDB Local is back (or failed
// to come back).
func (o *outage) over() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.began.IsZero() && (!o.ended.IsZero() || o.err != nil)
}

// wait lets an outage in progress finish (the server comes back) before the
// run ends, so that nodes can drain and the deferred Stop finds it.
func (o *outage) wait() {
	o.mu.Lock()
	done := o.done
	o.mu.Unlock()
	if done != nil {
		<-done
	}
}
