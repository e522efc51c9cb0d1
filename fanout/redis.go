package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisRetryWait is the pause between two attempts to reconnect a
// subscription while the server is unreachable.
const redisRetryWait = 250 * time.Millisecond

// Redis is a Transport over Redis pub/sub (github.com/redis/go-redis/v9):
// PUBLISH on a pooled connection, one dedicated SUBSCRIBE connection per
// Subscribe. Both are at-most-once; messages published while a subscriber is
// disconnected are lost, and the subscriber reports Disconnected, then
// Reconnected once it has subscribed again (the pod flushes then).
type Redis struct {
	c *redis.Client
}

// DialRedis returns a Redis transport with the options o: pass TLS in
// o.TLSConfig, ACL credentials in o.Username and o.Password (or
// o.CredentialsProvider), or build o with redis.ParseURL
// ("rediss://user:password@host:6380/0" for TLS). o is copied. Publishes are
// not retried by the client unless o.MaxRetries is positive: a retry after a
// lost reply could publish a batch twice (the pods would ignore the copy, as
// stale) and a lost batch is a sequence gap the pods flush on anyway. It
// checks the server with a PING and fails if it cannot reach it.
func DialRedis(ctx context.Context, o *redis.Options) (*Redis, error) {
	if o == nil {
		return nil, errors.New("fanout: DialRedis: nil options")
	}
	opt := *o
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1
	}
	if opt.ClientName == "" {
		opt.ClientName = "tieredcache-fanout"
	}
	c := redis.NewClient(&opt)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("fanout: connect to Redis: %w", err)
	}
	return &Redis{c: c}, nil
}

// Client is the underlying client (for its statistics).
func (t *Redis) Client() *redis.Client { return t.c }

// Publish implements Transport.
func (t *Redis) Publish(ctx context.Context, subject string, data []byte) error {
	if err := t.c.Publish(ctx, subject, data).Err(); err != nil {
		return fmt.Errorf("fanout: Redis publish: %w", err)
	}
	return nil
}

// Subscribe implements Transport. It returns once the server has confirmed
// the subscription, and fails if the server cannot confirm it within 5 s
// (unlike NATS, which subscribes on reconnection). A receive error means the
// connection is gone: onState(Disconnected), then a retry every 250 ms; the
// server's confirmation of the renewed subscription means onState(Reconnected).
// A connection that dies silently (no FIN, no error) is not detected here: the
// pod's trust lapses without messages, and it flushes before trusting again.
func (t *Redis) Subscribe(subject string, onMsg func([]byte), onState func(ConnState)) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ps := t.c.Subscribe(ctx, subject)
	_, err := ps.ReceiveTimeout(ctx, 5*time.Second)
	cancel()
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("fanout: Redis subscribe: %w", err)
	}
	var (
		mu   sync.Mutex // serialises callbacks with unsubscribe
		done bool
		stop = make(chan struct{})
		wg   sync.WaitGroup
		once sync.Once
	)
	call := func(f func()) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			f()
		}
	}
	wg.Go(func() {
		down := false
		for {
			m, err := ps.Receive(context.Background())
			select {
			case <-stop:
				return
			default:
			}
			if err != nil {
				if !down {
					down = true
					call(func() { onState(Disconnected) })
				}
				select {
				case <-stop:
					return
				case <-time.After(redisRetryWait):
				}
				continue
			}
			switch m := m.(type) {
			case *redis.Message:
				call(func() { onMsg([]byte(m.Payload)) })
			case *redis.Subscription:
				if down && m.Kind == "subscribe" {
					down = false
					call(func() { onState(Reconnected) })
				}
			}
		}
	})
	// unsubscribe waits for the receiving goroutine: never call it from a
	// callback.
	return func() {
		once.Do(func() {
			mu.Lock()
			done = true
			mu.Unlock()
			close(stop)
			_ = ps.Close() // unblocks Receive
			wg.Wait()
		})
	}, nil
}

// Close closes the client's connections (subscriptions must be ended
// first, by their unsubscribe functions).
func (t *Redis) Close() error { return t.c.Close() }
