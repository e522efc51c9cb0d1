// Package l2 is the shared tier of tieredcache: one DynamoDB table that every
// process reads and writes.
//
// # Item format
//
// One key is one item:
//
//	attribute  type  meaning
//	pk         S     Namespace + "#" + key (the partition key; at most 2048 bytes)
//	v          B     the encoded value; absent for negative entries, tombstones and leases
//	ver        N     version, moved only by the table itself (UpdateItem "ADD ver 1"),
//	                 so it only ever grows, across deletes too (see tomb)
//	exp        N     expiry, epoch seconds; the table's TTL attribute. Reads treat
//	                 exp <= now as absent: DynamoDB deletes expired items days late.
//	neg        BOOL  a cached "not found" (negative entry)
//	tomb       BOOL  left by Delete instead of deleting the item, so that ver keeps
//	                 growing; it expires after Options.TombstoneTTL. Reads treat it as absent.
//	lease      S     format 1 only: the owner of a fill lease (see below)
//	lexp       N     format 1 only: that lease's expiry, epoch milliseconds
//	w          S     the writer mark: Options.Writer of the handle that stored the
//	                 entry (absent when it had none); a mark of another type is ignored
//	cf         N     reserved for codec/format flags; never written today
//
// An item is "vacant" when it does not exist, is a tombstone, has expired, or
// holds neither a value nor a negative entry (a format-1 lease placeholder).
// Only a vacant item can be filled.
//
// # Lease items and format versions
//
// A fill lease (AcquireLeaseAt) lives in a sibling item of the key's, its
// lease item, in the same table:
//
//	attribute  type  meaning
//	pk         S     "lease!" + base64url(SHA-256(key's pk)): 49 bytes, no '#', so it is
//	                 never a key's pk in any namespace (DecodeKey refuses it; stream
//	                 consumers skip its records; see IsLeasePartitionKey)
//	lease      S     the owner; absent once released
//	lexp       N     the lease's expiry, epoch milliseconds
//	lver       N     the key's version the lease is bound to: a lease bound to an older
//	                 version than the key's is void (the key was written since)
//	exp        N     the lease's expiry in seconds, rounded up: the TTL sweeper deletes it
//	fv         N     FormatVersion (2)
//
// So a leased load writes the key's item once (its fill), and makes one
// stream record that evicts the key elsewhere, not two. The fill does not
// write the lease item: its new version voids the lease. A failed load
// releases it (ReleaseLease). A lease item left behind costs its storage
// (about 100 bytes) until the sweeper deletes it.
//
// Format 1 (releases before FormatVersion existed) kept the lease on the
// key's own item: AcquireLease turned it into a placeholder (tombstone
// attributes plus lease and lexp, version unchanged), and the fill was
// conditioned on the lease. Format 2 key items differ only in that nothing
// writes lease or lexp on them, so during a rolling upgrade both releases
// read every key item. This release honours a live format-1 lease: Get and
// GetLeased report it (Item.Leased), Fill does not land while it lives, and
// Put, Delete and fills remove it. A format-1 node does not see format-2
// leases (it may load a key a format-2 node holds a lease on: the later of
// the two fills loses, as the format-1 fill is conditioned on its own lease,
// which every format-2 write removes, and the format-2 fill on the key's
// version, which the format-1 fill moves), and never reads or writes a lease
// item (its pk does not decode).
//
// # Writes and versions
//
// Every write is an UpdateItem with "ADD ver :one": the table, not the writer,
// picks the next version, so versions never go backwards and two writers can
// never both claim one version. Put and Delete are unconditional (they are the
// user's writes, the newest truth), but for a check that the item follows the
// format: a corrupt or foreign item is replaced with a version above every
// counter version (see repair.go), never refused. Fill, the write after a miss, is
// conditional: it lands only on a vacant item, and with IfVersion only while
// the key is at the version the miss read. A lease fill carries that version
// too, so a fill whose load began before a write or delete is refused with
// ErrLeaseLost.
//
// Expiry by DynamoDB's TTL sweeper really deletes the item, so a key whose
// item expired and was swept starts again at version 1. Readers never see the
// expired item (read-side filter), so no version comparison spans that gap
// unless a caller keeps an item past its ExpiresAt.
//
// # Calls
//
// Every data-path call (Get, BatchGet, Put, Fill, Delete, leases) runs under
// a progress deadline, Options.CallTimeout (DefaultCallTimeout): for the
// response to start and between its bytes, with a hard bound of
// HardTimeoutFactor x CallTimeout (see watchdog.go), and under the caller's
// deadline. Clients built by NewClient retry little and fast and keep the
// SDK's checksum warning of aws-sdk-go-v2 issue #3545 off stderr (see
// WithLogger); a client passed in Options.Client is used as it is, but for
// the per-call HTTP wrapper that sees progress. A request DynamoDB rejects as
// invalid is a *RequestError (ErrInvalidRequest).
//
// Keys and values are never logged, and never put in error messages.
package l2
