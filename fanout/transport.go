package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnState is a transport connection event.
type ConnState int

const (
	// Disconnected: the connection dropped; messages published meanwhile
	// may never arrive.
	Disconnected ConnState = iota + 1
	// Reconnected: the connection is back; messages may have been lost
	// while it was down.
	Reconnected
)

func (s ConnState) String() string {
	switch s {
	case Disconnected:
		return "disconnected"
	case Reconnected:
		return "reconnected"
	}
	return fmt.Sprintf("ConnState(%d)", int(s))
}

// Transport is the pub/sub engine that carries batches from the bridge to
// the pods. Messages of one publisher on one subject arrive in order or not
// at all (NATS core and Redis pub/sub both are at-most-once); the pods detect
// losses by sequence number.
type Transport interface {
	// Publish sends data on subject.
	Publish(ctx context.Context, subject string, data []byte) error
	// Subscribe calls onMsg for each message on subject, one at a time and
	// in order, and onState for each connection event (possibly on another
	// goroutine than onMsg). The subscription is active on the server when
	// Subscribe returns. unsubscribe stops both; no callback starts after it
	// returns.
	Subscribe(subject string, onMsg func(data []byte), onState func(ConnState)) (unsubscribe func(), err error)
}

// NATS is a Transport over NATS core pub/sub (github.com/nats-io/nats.go).
type NATS struct {
	nc *nats.Conn

	mu        sync.Mutex
	listeners map[int]func(ConnState)
	next      int
}

// DialNATS connects to the NATS servers at url (comma-separated) and
// reconnects for ever. opts come after this package's own settings, so they
// override them: pass TLS (nats.Secure, nats.RootCAs, nats.ClientCert),
// credentials (nats.UserCredentials for a creds file, nats.Nkey, nats.UserInfo,
// nats.Token) and anything else nats.Connect takes.
func DialNATS(url string, opts ...nats.Option) (*NATS, error) {
	t := &NATS{listeners: map[int]func(ConnState){}}
	base := []nats.Option{
		nats.Name("tieredcache-fanout"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { t.emit(Disconnected) }),
		nats.ReconnectHandler(func(*nats.Conn) { t.emit(Reconnected) }),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("fanout: connect to NATS: %w", err)
	}
	t.nc = nc
	return t, nil
}

// Conn is the underlying connection (for its statistics).
func (t *NATS) Conn() *nats.Conn { return t.nc }

func (t *NATS) emit(s ConnState) {
	t.mu.Lock()
	fns := make([]func(ConnState), 0, len(t.listeners))
	for _, f := range t.listeners {
		fns = append(fns, f)
	}
	t.mu.Unlock()
	for _, f := range fns {
		f(s)
	}
}

// Publish implements Transport. While disconnected, nats.go buffers the
// message and sends it on reconnection (late messages only shorten trust:
// see Pod).
func (t *NATS) Publish(_ context.Context, subject string, data []byte) error {
	if err := t.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("fanout: NATS publish: %w", err)
	}
	return nil
}

// Subscribe implements Transport.
func (t *NATS) Subscribe(subject string, onMsg func([]byte), onState func(ConnState)) (func(), error) {
	var (
		mu   sync.Mutex // serialises callbacks with unsubscribe
		done bool
	)
	sub, err := t.nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			onMsg(m.Data)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("fanout: NATS subscribe: %w", err)
	}
	// Let the server register the subscription before returning; when
	// disconnected, the subscription is sent on reconnection (and the pod
	// flushes then).
	if err := t.nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) && t.nc.IsConnected() {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("fanout: NATS subscribe: %w", err)
	}
	t.mu.Lock()
	id := t.next
	t.next++
	t.listeners[id] = func(s ConnState) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			onState(s)
		}
	}
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.listeners, id)
		t.mu.Unlock()
		_ = sub.Unsubscribe()
		mu.Lock()
		done = true
		mu.Unlock()
	}, nil
}

// Close drains nothing: it closes the connection and its goroutines.
func (t *NATS) Close() error {
	t.nc.Close()
	return nil
}
