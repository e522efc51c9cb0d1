package memstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tieredcache/tieredcache/l2"
)

// Get reads key, as l2.Table.Get: ErrNotFound for no live entry, with the
// vacant item's Version, or an expired entry marked Expired; a corrupt item
// is a *l2.CorruptItemError. It does not read leases (see GetLeased).
func (s *Store) Get(ctx context.Context, key string) (l2.Item, error) {
	pk, err := s.EncodeKey(key)
	if err != nil {
		return l2.Item{}, err
	}
	if err := s.call(ctx, "Get", "GetItem"); err != nil {
		return l2.Item{}, err
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	return s.get(pk, s.o.Now())
}

// GetLeased reads key as Get does and, with ErrNotFound, whether a live
// lease bound to the key's version (or a later one) holds it (Leased), as
// l2.Table.GetLeased: one BatchGetItem request.
func (s *Store) GetLeased(ctx context.Context, key string) (l2.Item, error) {
	pk, err := s.EncodeKey(key)
	if err != nil {
		return l2.Item{}, err
	}
	if err := s.call(ctx, "GetLeased", "BatchGetItem"); err != nil {
		return l2.Item{}, err
	}
	now := s.o.Now()
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	it, err := s.get(pk, now)
	if errors.Is(err, l2.ErrNotFound) {
		it.Leased = s.t.leases[pk].holds(it.Version, now)
	}
	return it, err
}

// get is Get's answer for pk at now, under the table's lock.
func (s *Store) get(pk string, now time.Time) (l2.Item, error) {
	it := s.t.items[pk]
	switch {
	case it == nil:
		return l2.Item{}, l2.ErrNotFound
	case it.corrupt:
		s.stats.corrupt.Add(1)
		return l2.Item{}, corruptError()
	case it.live(now):
		return it.entry(), nil
	case it.tomb || !(it.hasValue || it.notFound):
		return l2.Item{Key: it.key, Version: it.version}, l2.ErrNotFound
	}
	e := it.entry() // expired: its last entry, for stale-if-error
	e.Expired = true
	return e, l2.ErrNotFound
}

// BatchGet reads keys, as l2.Table.BatchGet: duplicates dropped, any invalid
// key fails the whole call first, one request per l2.MaxBatchKeys keys;
// keys without a live entry are absent (with IncludeVacant: present as
// Vacant items with Key and Version), corrupt ones absent and reported to
// OnCorrupt. A failing request (SetFault) stops the batch with a
// *l2.PartialError listing every key not read.
func (s *Store) BatchGet(ctx context.Context, keys []string, opts ...l2.BatchGetOption) (map[string]l2.Item, error) {
	includeVacant, onCorrupt := l2.ResolveBatchGetOptions(opts...)
	uniq := make([]string, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		if _, err := s.EncodeKey(k); err != nil {
			return nil, err
		}
		seen[k] = struct{}{}
		uniq = append(uniq, k)
	}
	found := make(map[string]l2.Item, len(uniq))
	for start := 0; start < len(uniq); start += l2.MaxBatchKeys {
		chunk := uniq[start:min(start+l2.MaxBatchKeys, len(uniq))]
		if err := s.call(ctx, "BatchGet", "BatchGetItem"); err != nil {
			return found, &l2.PartialError{Keys: append([]string(nil), uniq[start:]...), Err: err}
		}
		for _, k := range s.batchChunk(chunk, includeVacant, found) {
			if onCorrupt != nil {
				onCorrupt(k, corruptError()) // on the caller's goroutine, no lock held
			}
		}
	}
	return found, nil
}

// batchChunk adds the chunk's answers to found and returns its corrupt keys.
func (s *Store) batchChunk(chunk []string, includeVacant bool, found map[string]l2.Item) (corrupt []string) {
	now := s.o.Now()
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	for _, k := range chunk {
		it := s.t.items[s.o.Namespace+"#"+k]
		switch {
		case it == nil:
		case it.corrupt:
			s.stats.corrupt.Add(1)
			corrupt = append(corrupt, k)
		case it.live(now):
			found[k] = it.entry()
		case includeVacant:
			found[k] = l2.Item{Key: k, Version: it.version, Vacant: true}
		}
	}
	return corrupt
}

// Put stores value for key unconditionally, as l2.Table.Put: the version
// moves one forward, any negative entry, tombstone and lease go.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error) {
	pk, err := s.checkEntry(key, value, ttl)
	if err != nil {
		return 0, err
	}
	if err := s.call(ctx, "Put", "UpdateItem"); err != nil {
		return 0, err
	}
	return s.mutate(pk, func(it *item, now time.Time) (int64, error) {
		s.entryWrite(it, key, value, false, expSeconds(now, ttl), now)
		return it.version, nil
	})
}

// Fill stores a load's result only over a vacant item, as l2.Table.Fill:
// with IfVersion(v), if the version is still v; a lease fill must carry
// IfVersion (ErrInvalidLease otherwise, before any request) and is refused
// as ErrLeaseLost. Leases do not stop a fill. A refused fill is a
// *l2.ConflictError with Current set when a live entry is there.
func (s *Store) Fill(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, lease string, opts ...l2.FillOption) (int64, error) {
	ifVersion, version := l2.ResolveFillOptions(opts...)
	if notFound {
		value = nil
	}
	pk, err := s.checkEntry(key, value, ttl)
	if err != nil {
		return 0, err
	}
	if lease != "" {
		if err := checkOwner(lease); err != nil {
			return 0, err
		}
		if !ifVersion {
			return 0, fmt.Errorf("%w: a lease fill needs IfVersion", l2.ErrInvalidLease)
		}
	}
	if err := s.call(ctx, "Fill", "UpdateItem"); err != nil {
		return 0, err
	}
	return s.mutate(pk, func(it *item, now time.Time) (int64, error) {
		ok := it.corrupt || !it.live(now) // a corrupt item is replaced as a vacant one
		if ok && ifVersion && (!it.corrupt || version != 0) {
			ok = it.version == version
		}
		if !ok {
			return 0, s.conflict(it, lease != "", now)
		}
		s.entryWrite(it, key, value, notFound, expSeconds(now, ttl), now)
		return it.version, nil
	})
}

// Refresh stores a reload over a live or vacant item only if its version is
// still version, as l2.Table.Refresh.
func (s *Store) Refresh(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, version int64) (int64, error) {
	if notFound {
		value = nil
	}
	pk, err := s.checkEntry(key, value, ttl)
	if err != nil {
		return 0, err
	}
	if err := s.call(ctx, "Refresh", "UpdateItem"); err != nil {
		return 0, err
	}
	return s.mutate(pk, func(it *item, now time.Time) (int64, error) {
		if it.version != version {
			return 0, s.conflict(it, false, now)
		}
		s.entryWrite(it, key, value, notFound, expSeconds(now, ttl), now)
		return it.version, nil
	})
}

// Delete leaves a tombstone that moves the version forward and voids any
// lease, as l2.Table.Delete.
func (s *Store) Delete(ctx context.Context, key string) error {
	pk, err := s.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := s.call(ctx, "Delete", "UpdateItem"); err != nil {
		return err
	}
	_, err = s.mutate(pk, func(it *item, now time.Time) (int64, error) {
		s.tombstone(it, key, now)
		return it.version, nil
	})
	return err
}

// DeleteIfVersion deletes as Delete only if the key's version is still
// version, as l2.Table.DeleteIfVersion.
func (s *Store) DeleteIfVersion(ctx context.Context, key string, version int64) error {
	pk, err := s.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := s.call(ctx, "DeleteIfVersion", "UpdateItem"); err != nil {
		return err
	}
	_, err = s.mutate(pk, func(it *item, now time.Time) (int64, error) {
		if it.version != version {
			return 0, s.conflict(it, false, now)
		}
		s.tombstone(it, key, now)
		return it.version, nil
	})
	return err
}

// AcquireLeaseAt takes a fill lease on key bound to version, as
// l2.Table.AcquireLeaseAt: it lands unless another owner holds a live lease
// bound to version or a later one (HolderExpires), and never touches the
// key's item (nor reads it).
func (s *Store) AcquireLeaseAt(ctx context.Context, key string, version int64, owner string, ttl time.Duration) (l2.LeaseResult, error) {
	pk, err := s.EncodeKey(key)
	if err != nil {
		return l2.LeaseResult{}, err
	}
	if err := checkOwner(owner); err != nil {
		return l2.LeaseResult{}, err
	}
	if ttl <= 0 {
		return l2.LeaseResult{}, l2.ErrInvalidTTL
	}
	if version < 0 {
		return l2.LeaseResult{}, fmt.Errorf("%w: negative version", l2.ErrInvalidLease)
	}
	if err := s.call(ctx, "AcquireLease", "UpdateItem"); err != nil {
		return l2.LeaseResult{}, err
	}
	now := s.o.Now()
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if l := s.t.leases[pk]; l.holds(version, now) && l.owner != owner {
		s.stats.condFailed.Add(1)
		return l2.LeaseResult{HolderExpires: l.expires}, nil
	}
	expires := time.UnixMilli(now.Add(ttl).UnixMilli())
	s.t.leases[pk] = &lease{owner: owner, expires: expires, version: version}
	return l2.LeaseResult{Acquired: true, Expires: expires}, nil
}

// ReleaseLease gives up owner's lease, as l2.Table.ReleaseLease: ErrLeaseLost
// (a *l2.ConflictError) when the lease item no longer carries it.
func (s *Store) ReleaseLease(ctx context.Context, key, owner string) error {
	pk, err := s.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	if err := s.call(ctx, "ReleaseLease", "UpdateItem"); err != nil {
		return err
	}
	now := s.o.Now()
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	l := s.t.leases[pk]
	if l == nil || l.owner != owner {
		s.stats.condFailed.Add(1)
		ce := &l2.ConflictError{LeaseLost: true}
		if l != nil && l.owner != "" && now.Before(l.expires) {
			ce.HolderExpires = l.expires
		}
		return ce
	}
	l.owner = ""
	return nil
}

// mutate runs fn on pk's item under the table's lock; an absent item is
// passed as a fresh one (version 0, no attributes), kept only if fn
// returned no error (every refusal of a write to an absent item is one).
func (s *Store) mutate(pk string, fn func(it *item, now time.Time) (int64, error)) (int64, error) {
	now := s.o.Now()
	s.t.mu.Lock()
	it, exists := s.t.items[pk]
	if !exists {
		it = &item{}
	}
	wasCorrupt := it.corrupt
	ver, err := fn(it, now)
	if !exists && err == nil {
		s.t.items[pk] = it
	}
	s.t.mu.Unlock()
	if wasCorrupt && s.o.OnCall != nil {
		// l2 meets a corrupt item with one refused request, then (when the
		// write may replace it) a repair request.
		s.o.OnCall("UpdateItem")
	}
	return ver, err
}

// entryWrite stores a value (or a negative entry) on it, moving the version
// forward, clearing tombstone and lease, and marking the writer.
func (s *Store) entryWrite(it *item, key string, value []byte, notFound bool, exp, now time.Time) {
	s.bump(it, now)
	it.key, it.corrupt, it.tomb = key, false, false
	it.notFound, it.hasValue, it.value = notFound, !notFound, nil
	if !notFound {
		it.value = append([]byte{}, value...) // never nil for a value entry
	}
	it.exp = exp
	it.writer = s.o.Writer
}

// tombstone makes it a Delete's tombstone.
func (s *Store) tombstone(it *item, key string, now time.Time) {
	s.bump(it, now)
	it.key, it.corrupt, it.tomb = key, false, true
	it.value, it.hasValue, it.notFound = nil, false, false
	it.exp = expSeconds(now, s.o.TombstoneTTL)
	it.writer = ""
}

// bump moves it's version one forward (UpdateItem ADD), or over a corrupt
// item to a repair version.
func (s *Store) bump(it *item, now time.Time) {
	if it.corrupt {
		s.repair(it, now)
		return
	}
	it.version++
}

// repair gives a corrupt item being replaced a version above every counter
// version, as l2's repair does, and counts the extra requests.
func (s *Store) repair(it *item, now time.Time) {
	it.version = max(now.UnixMicro(), it.version+1)
	s.stats.condFailed.Add(1)
	s.stats.calls.Add(1)
	s.stats.repairs.Add(1)
}

// conflict counts a refused conditional write and builds its error from the
// item found.
func (s *Store) conflict(it *item, leaseLost bool, now time.Time) error {
	s.stats.condFailed.Add(1)
	ce := &l2.ConflictError{LeaseLost: leaseLost}
	switch {
	case it.corrupt:
	case it.live(now):
		e := it.entry()
		ce.Current = &e
	}
	return ce
}
