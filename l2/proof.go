package l2

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// ValueSum is a 64-bit hash (xxhash64) of an encoded value as stored in
// attribute v (nil: a not-found entry). It is the same in every process, so
// that a proof computed from a stream image by one process (a fan-out
// bridge) can be checked by another against the value it holds.
func ValueSum(enc []byte) uint64 { return xxhash.Sum64(enc) }

// WriteProof is a 64-bit digest of who wrote what: the writer mark
// (Options.Writer, attribute w), the value's ValueSum and the not-found
// flag. It is 0 when writer is "" (an unmarked item proves nothing) and
// never 0 otherwise.
//
// A node that holds an entry it wrote (or filled) itself, at the version a
// change carries, recognises the change as that very write when the change's
// proof equals WriteProof(its own mark, the entry's ValueSum, its not-found
// flag). A write by another writer (another mark), or one that changed the
// value under this node's mark, gives another proof, except with
// probability about 2^-64.
func WriteProof(writer string, valueSum uint64, notFound bool) uint64 {
	if writer == "" {
		return 0
	}
	var tail [9]byte
	binary.LittleEndian.PutUint64(tail[:8], valueSum)
	if notFound {
		tail[8] = 1
	}
	d := xxhash.New()
	_, _ = d.WriteString(writer)
	_, _ = d.Write(tail[:])
	return max(d.Sum64(), 1)
}

// Proof is WriteProof(it.Writer, ValueSum(it.Value), it.NotFound).
func (it Item) Proof() uint64 { return WriteProof(it.Writer, ValueSum(it.Value), it.NotFound) }

// PartitionKeyHash is a 64-bit hash (xxhash64) of a partition key value as
// it is in the table (invalidation.Change.PartitionKey): what a fan-out
// bridge sends instead of the key with key hashes on.
func PartitionKeyHash(pk string) uint64 { return xxhash.Sum64String(pk) }

// KeyHash is PartitionKeyHash of key's partition key value in namespace (the
// value Table.EncodeKey gives a valid key), without building it.
func KeyHash(namespace, key string) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString(namespace)
	_, _ = d.WriteString("#")
	_, _ = d.WriteString(key)
	return d.Sum64()
}
