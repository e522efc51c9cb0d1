package tiered

import (
	"errors"
	"sync"

	"github.com/tieredcache/tieredcache/l1"
)

// The in-flight registry: who runs the fill of a key, and who waits for it.
//
// Every miss registers the key it fills here before it reads anything. The
// first to register a key runs the fill (fill.go) on a goroutine of its own;
// those that come while it runs wait for its outcome instead of reading L2 or
// calling a loader again. Fills that may load (GetOrLoad, GetMany,
// refresh-ahead) share one name space, so at most one loader call per key
// runs in this process, whatever the mix of callers. Get's fills never load,
// so they have their own: a Get does not wait for a loader it would not have
// called, and a GetOrLoad never takes a Get's "not found" for an answer.
//
// A GetMany registers all its missing keys at once: the keys it owns share
// one done channel (one fill, one batch loader call), and it waits for the
// keys others own. A fill never waits on another, so two GetManys with
// overlapping keys cannot deadlock: each fills what it owns, publishes it,
// then waits for what it joined.
//
// A caller joins a flight only while it is joinable: its key has not moved in
// L1 since the flight was registered (no Set, Delete or stream record of it
// here, no flush) and it is younger than T/2. Otherwise the caller registers
// a flight of its own, which replaces the old one for everyone after (the old
// one goes on for the callers it has). So no caller gets a value read before
// a change this node already knows of (read-your-writes), nor one older than
// T/2 when it asked (a fill held up by a slow DynamoDB, or a frozen
// process). The price: while a key changes under a slow load, a second load
// of it may start in this process.
//
// This registry replaces golang.org/x/sync/singleflight: DoChan costs a
// goroutine of its own plus a result channel per caller on top of the fill's
// goroutine, and singleflight cannot tell GetMany which keys it joined until
// they finish. Here a flight is one struct and one channel.

// flightKey names a flight: load says whether it may call a loader.
type flightKey struct {
	key  string
	load bool
}

// flight is one key's fill in flight: out is set before done closes.
type flight[V any] struct {
	// done is shared by the keys of one GetMany. A flight whose owner does
	// not wait on it (a Get's fill run on its caller's goroutine, see miss;
	// a refresh) has none until a caller joins it: join makes it then,
	// under flights.mu, so that a fill nobody joins does not allocate it.
	done  chan struct{}
	out   outcome[V]
	batch bool     // run by a GetMany
	fence l1.Fence // taken when registered: see joinable
}

// flights maps each key being filled in this process to its flight.
type flights[V any] struct {
	mu sync.Mutex
	m  map[flightKey]*flight[V]
}

func (r *flights[V]) init() { r.m = make(map[flightKey]*flight[V]) }

// soloFlight is one key's flight together with the storage of its fill, so
// that a miss of one key allocates them once.
type soloFlight[V any] struct {
	flight[V]
	f fill[V]
}

// join returns the flight of k and, when the caller owns it (registered it
// now, and must run it and end it), the storage of its fill (see
// initFill); nil when the caller joined a flight in progress, whose done
// channel it may then wait on. An owner that does not wait on done
// (ownerWaits false: it runs the fill on its own goroutine, or does not wait
// for it) makes none: the first caller to join does.
func (c *Cache[V]) join(k flightKey, ownerWaits bool) (*flight[V], *fill[V]) {
	r := &c.flights
	r.mu.Lock()
	defer r.mu.Unlock()
	if fl, ok := r.m[k]; ok && c.joinable(fl) {
		if fl.done == nil {
			fl.done = make(chan struct{})
		}
		return fl, nil
	}
	s := &soloFlight[V]{flight: flight[V]{fence: c.beginFill(k.key)}}
	if ownerWaits {
		s.done = make(chan struct{})
	}
	r.m[k] = &s.flight
	return &s.flight, &s.f
}

// joinMany is join for the keys of a GetMany (loading flights): it registers
// a flight for each key no one is filling (own[i] is owned[i]'s; they share
// one done channel) and returns the flights in progress for the others.
func (c *Cache[V]) joinMany(keys []string) (owned []string, own []*flight[V], joined map[string]*flight[V]) {
	r := &c.flights
	done := make(chan struct{})
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if fl, ok := r.m[flightKey{k, true}]; ok && c.joinable(fl) {
			if joined == nil {
				joined = make(map[string]*flight[V])
			}
			if fl.done == nil { // a refresh's (see join)
				fl.done = make(chan struct{})
			}
			joined[k] = fl
			continue
		}
		fl := &flight[V]{done: done, batch: true, fence: c.beginFill(k)}
		r.m[flightKey{k, true}] = fl
		owned = append(owned, k)
		own = append(own, fl)
	}
	return owned, own, joined
}

// errNotAnswered is a bug guard: a flight ended without an outcome.
var errNotAnswered = errors.New("tiered: internal error: key not answered")

// endOne is end for one key's flight.
func (r *flights[V]) endOne(key string, load bool, fl *flight[V]) {
	if fl.out.e == nil && fl.out.err == nil {
		fl.out.err = errNotAnswered
	}
	r.mu.Lock()
	if r.m[flightKey{key, load}] == fl {
		delete(r.m, flightKey{key, load})
	}
	done := fl.done // only join sets it, under r.mu; none joins fl from now on
	r.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// end publishes the outcomes of own (flights of keys, sharing one done
// channel, owned by the caller): it unregisters them first, so that a caller
// that arrives once the waiters have their outcome starts a fill of its own
// (and sees what that fill stored) rather than joining a finished one.
func (r *flights[V]) end(keys []string, load bool, own []*flight[V]) {
	if len(own) == 0 {
		return
	}
	for _, fl := range own {
		if fl.out.e == nil && fl.out.err == nil {
			fl.out.err = errNotAnswered
		}
	}
	r.mu.Lock()
	for i, k := range keys {
		if r.m[flightKey{k, load}] == own[i] {
			delete(r.m, flightKey{k, load})
		}
	}
	r.mu.Unlock()
	close(own[0].done)
}

// joinable reports whether a caller arriving now may take fl's outcome
// instead of filling its key itself (see the top of this file).
func (c *Cache[V]) joinable(fl *flight[V]) bool {
	return c.l1.Unmoved(fl.fence) && c.l1.Now()-fl.fence.Taken() < c.halfT
}
