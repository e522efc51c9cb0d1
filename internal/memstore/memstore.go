// Package memstore is an in-memory twin of *l2.Table's data path, for tests
// that should run without DynamoDB Local: the same methods, with the same
// semantics, types and errors (l2.Item, l2.ErrNotFound, *l2.ConflictError,
// l2.FillOption, ...), and it passes the same contract suite
// (internal/storetest).
//
// What it models: versions that only grow (one more per write, as UpdateItem
// ADD does; a repair jumps to the current unix microseconds), tombstones
// that keep the version across a Delete, fill leases with expiry (in
// lease items beside the keys' items, bound to a version, as l2 keeps them;
// not the in-item leases of older releases), the
// conditional writes (Fill vacant / with a lease / IfVersion, Refresh and
// DeleteIfVersion over a version) with the live entry found carried in
// ConflictError.Current, expiry filtering on read (exp in whole seconds,
// rounded up, as l2 stores it; leases in milliseconds), BatchGet in 100-key
// calls with IncludeVacant and OnCorrupt, key and value size checks, the
// writer mark, corrupt items (Corrupt) and injected failures (SetFault).
// Its clock is Options.Now.
//
// What it does not model: a stream, eventual consistency, throttling,
// UnprocessedKeys, call timeouts, and the table's setup. It never imports
// tiered.
package memstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tieredcache/tieredcache/l2"
)

// Options configure a Store. The zero value of every field means its
// default.
type Options struct {
	// Namespace prefixes every key, as l2.Options.Namespace: it counts in the
	// key length limit and is what DecodeKey accepts.
	Namespace string
	// Writer marks every entry this store handle writes (Item.Writer), as
	// l2.Options.Writer.
	Writer string
	// TombstoneTTL is how long a Delete's tombstone lives. Default
	// l2.DefaultTombstoneTTL.
	TombstoneTTL time.Duration
	// Now is the clock: expiry, lease expiry and repair versions read it.
	// Default time.Now.
	Now func() time.Time
	// OnCall, if set, is called once per request l2 would send DynamoDB, with
	// that request's operation name ("GetItem", "BatchGetItem" once per 100
	// keys, "UpdateItem"), so that tests can count requests the same way
	// against both. It runs with no lock held.
	OnCall func(op string)
}

// Store is an in-memory table. Several handles may share one table's
// contents (Handle), as several processes share one DynamoDB table. It is
// safe for concurrent use.
type Store struct {
	o     Options
	t     *table
	stats stats
	fault atomic.Pointer[func(op string) error]
}

// table is the contents shared by every handle of one Store.
type table struct {
	mu     sync.Mutex
	items  map[string]*item  // by partition key (namespace#key)
	leases map[string]*lease // lease items, by the key's partition key
}

// lease mirrors one lease item of the l2 format.
type lease struct {
	owner   string    // "" once released
	expires time.Time // whole milliseconds
	version int64     // the key's version the lease is bound to
}

type stats struct {
	calls, errors, corrupt, condFailed, repairs atomic.Int64
}

// item mirrors one DynamoDB item of the l2 format.
type item struct {
	key      string
	value    []byte // nil unless hasValue
	hasValue bool
	notFound bool
	tomb     bool
	version  int64     // 0: no version attribute
	exp      time.Time // whole seconds; zero: none
	writer   string
	corrupt  bool // does not follow the item format: reads fail, writes repair
}

// New returns an empty Store.
func New(o Options) (*Store, error) {
	if strings.Contains(o.Namespace, "#") || !utf8.ValidString(o.Namespace) || len(o.Namespace)+1 >= l2.MaxPartitionKeyBytes {
		return nil, &l2.OptionsError{Field: "Namespace", Reason: "must be valid UTF-8 without '#'"}
	}
	if len(o.Writer) > l2.MaxWriterBytes || !utf8.ValidString(o.Writer) {
		return nil, &l2.OptionsError{Field: "Writer", Reason: "must be valid UTF-8 of at most 64 bytes"}
	}
	switch {
	case o.TombstoneTTL == 0:
		o.TombstoneTTL = l2.DefaultTombstoneTTL
	case o.TombstoneTTL < time.Second:
		return nil, &l2.OptionsError{Field: "TombstoneTTL", Reason: "must be at least 1s"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{o: o, t: &table{items: map[string]*item{}, leases: map[string]*lease{}}}, nil
}

// Handle returns another handle on s's contents with its own options
// (another process's view of the same table: its own writer, clock,
// namespace and counters). o is defaulted as by New.
func (s *Store) Handle(o Options) (*Store, error) {
	h, err := New(o)
	if err != nil {
		return nil, err
	}
	h.t = s.t
	return h, nil
}

// SetFault makes every later call first ask fn (nil: none) with its
// operation name ("Get", "BatchGet", "Put", "Delete", "DeleteIfVersion",
// "Fill", "Refresh", "AcquireLease", "ReleaseLease", "GetLeased"); a
// non-nil error fails
// the call before it touches the table, counted in Stats.Errors, as a
// DynamoDB that is down or throttling. Key and value checks come first, as
// in l2, where they fail before any request.
func (s *Store) SetFault(fn func(op string) error) {
	if fn == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&fn)
}

// Corrupt replaces key's item by one that does not follow the item format
// (as a foreign writer could leave it), keeping its version as the one a
// lenient reader finds. Reads of it fail with a *l2.CorruptItemError; writes
// replace it as l2's do (see l2.Table.Put).
func (s *Store) Corrupt(key string) {
	pk := s.o.Namespace + "#" + key
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	var ver int64
	if it := s.t.items[pk]; it != nil {
		ver = it.version
	}
	s.t.items[pk] = &item{key: key, version: ver, corrupt: true}
}

// Stats returns the counters, with l2.Stats' meaning: Calls counts the
// requests l2 would make (a BatchGet one per 100 keys), Errors the injected
// failures.
func (s *Store) Stats() l2.Stats {
	return l2.Stats{
		Calls:             s.stats.calls.Load(),
		Errors:            s.stats.errors.Load(),
		CorruptItems:      s.stats.corrupt.Load(),
		ConditionFailures: s.stats.condFailed.Load(),
		Repairs:           s.stats.repairs.Load(),
	}
}

// call counts one request and runs the injected fault, if any.
func (s *Store) call(ctx context.Context, op, ddbOp string) error {
	s.stats.calls.Add(1)
	if s.o.OnCall != nil {
		s.o.OnCall(ddbOp)
	}
	if err := ctx.Err(); err != nil {
		s.stats.errors.Add(1)
		return fmt.Errorf("memstore: %s: %w", op, err)
	}
	if fn := s.fault.Load(); fn != nil {
		if err := (*fn)(op); err != nil {
			s.stats.errors.Add(1)
			return fmt.Errorf("memstore: %s: %w", op, err)
		}
	}
	return nil
}

// EncodeKey returns the partition key value for key, as l2.Table.EncodeKey:
// ErrEmptyKey, ErrInvalidKey or a *l2.KeyTooLongError.
func (s *Store) EncodeKey(key string) (string, error) {
	if err := s.CheckKey(key); err != nil {
		return "", err
	}
	return s.o.Namespace + "#" + key, nil
}

// CheckKey returns the error EncodeKey gives for key, without building the
// partition key, as l2.Table.CheckKey.
func (s *Store) CheckKey(key string) error {
	if key == "" {
		return l2.ErrEmptyKey
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: not valid UTF-8", l2.ErrInvalidKey)
	}
	if n := len(s.o.Namespace) + 1 + len(key); n > l2.MaxPartitionKeyBytes {
		return &l2.KeyTooLongError{Len: n, Max: l2.MaxPartitionKeyBytes}
	}
	return nil
}

// DecodeKey returns the key of a partition key value of this namespace.
func (s *Store) DecodeKey(pk string) (string, bool) {
	ns, key, found := strings.Cut(pk, "#")
	if !found || ns != s.o.Namespace || key == "" {
		return "", false
	}
	return key, true
}

// MaxValueBytes returns the largest value that fits next to key.
func (s *Store) MaxValueBytes(key string) int {
	return l2.MaxItemBytes - (len(s.o.Namespace) + 1 + len(key)) - l2.ItemOverheadBytes
}

// CheckValue returns a *l2.ValueTooLargeError when value cannot fit next to
// key.
func (s *Store) CheckValue(key string, value []byte) error {
	if max := s.MaxValueBytes(key); len(value) > max {
		return &l2.ValueTooLargeError{Size: len(value), Max: max}
	}
	return nil
}

func (s *Store) checkEntry(key string, value []byte, ttl time.Duration) (string, error) {
	pk, err := s.EncodeKey(key)
	if err != nil {
		return "", err
	}
	if err := s.CheckValue(key, value); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", l2.ErrInvalidTTL
	}
	return pk, nil
}

func checkOwner(owner string) error {
	switch {
	case owner == "":
		return fmt.Errorf("%w: empty", l2.ErrInvalidLease)
	case !utf8.ValidString(owner):
		return fmt.Errorf("%w: not valid UTF-8", l2.ErrInvalidLease)
	case len(owner) > l2.MaxLeaseOwnerBytes:
		return fmt.Errorf("%w: %d bytes, max %d", l2.ErrInvalidLease, len(owner), l2.MaxLeaseOwnerBytes)
	}
	return nil
}

// expSeconds is the exp of an entry living ttl from now: whole seconds,
// rounded up, as l2 stores it.
func expSeconds(now time.Time, ttl time.Duration) time.Time {
	e := now.Add(ttl)
	s := e.Unix()
	if e.Nanosecond() > 0 {
		s++
	}
	return time.Unix(s, 0)
}

// live reports whether it holds an entry a reader may use at now.
func (it *item) live(now time.Time) bool {
	return !it.corrupt && !it.tomb && (it.hasValue || it.notFound) && (it.exp.IsZero() || now.Before(it.exp))
}

// holds reports whether l is a live lease at now bound to version or a
// later one (a lease bound to an older version was voided by a write), as
// l2 decides it: a lease bound to a version above 0 does not hold a key with
// no item (version 0), whose item was swept since.
func (l *lease) holds(version int64, now time.Time) bool {
	return l != nil && l.owner != "" && now.Before(l.expires) && l.version >= version &&
		!(version == 0 && l.version > 0)
}

// entry is the Item readers get for a live (or expired) it.
func (it *item) entry() l2.Item {
	out := l2.Item{Key: it.key, Version: it.version, ExpiresAt: it.exp, NotFound: it.notFound, Writer: it.writer}
	if it.hasValue {
		out.Value = append([]byte{}, it.value...) // the caller's to keep
	}
	return out
}

func corruptError() error {
	return &l2.CorruptItemError{Attr: l2.VersionAttr, Reason: "corrupt (memstore.Corrupt)"}
}
