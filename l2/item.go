package l2

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// Item is one key's entry as the table holds it.
type Item struct {
	// Key is the cache key (the partition key without the namespace).
	Key string
	// Value is the stored value; nil for a negative entry, never nil (maybe
	// empty) for a value entry. It is the caller's to keep: nothing else
	// refers to it.
	Value []byte
	// Version is the table's version of the key: every write makes it grow.
	Version int64
	// ExpiresAt is when the entry expires (whole seconds); zero: never.
	ExpiresAt time.Time
	// NotFound marks a negative entry: the loader said the key does not exist.
	NotFound bool
	// Leased is set on the Item GetLeased returns with ErrNotFound when a
	// live fill lease holds the key (someone is loading it). Get sets it
	// only for a format-1 lease (on the key's item, written by an older
	// release; see the package documentation), and ItemFromStreamImage on a
	// format-1 lease placeholder.
	Leased bool
	// Expired is set only on the Item Get returns with ErrNotFound for an
	// entry past ExpiresAt that the TTL sweeper has not deleted yet.
	Expired bool
	// Writer is the Options.Writer of the handle that stored the entry; ""
	// when it was stored unmarked (a foreign writer, an older release) or
	// the mark is not a string.
	Writer string
	// Vacant is set by ItemFromStreamImage, for an image that holds no
	// entry: a tombstone or a lease placeholder; and by BatchGet with
	// IncludeVacant, for any item without a live entry (expired ones too),
	// with only Key and Version filled. Get and BatchGet otherwise never
	// return vacant items (nor expired ones).
	Vacant bool
}

// rawItem is a parsed item with the attributes readers do not return.
type rawItem struct {
	Item
	hasValue bool
	tomb     bool
	lease    string
	leaseExp time.Time
}

// live reports whether r holds an entry a reader may use at now.
func (r *rawItem) live(now time.Time) bool {
	return !r.tomb && (r.hasValue || r.NotFound) && (r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt))
}

// leaseHeld reports whether r carries a lease that has not expired at now.
func (r *rawItem) leaseHeld(now time.Time) bool {
	return r.lease != "" && now.Before(r.leaseExp)
}

// av is the subset of attribute value kinds the item format uses, so that
// table items and stream images share one parser.
type av struct {
	kind string // "S", "N", "B", "BOOL", or another type's name
	s    string // S and N
	b    []byte
	bool bool
}

// attrSource is an item's attributes as parseItem reads them: a table item
// or a stream image, read in place (no copy of the map).
type attrSource interface {
	attr(name string) (av, bool)
}

// tableItem is an item as the DynamoDB API returns it.
type tableItem map[string]types.AttributeValue

func (m tableItem) attr(name string) (av, bool) {
	v, ok := m[name]
	if !ok {
		return av{}, false
	}
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return av{kind: "S", s: v.Value}, true
	case *types.AttributeValueMemberN:
		return av{kind: "N", s: v.Value}, true
	case *types.AttributeValueMemberB:
		return av{kind: "B", b: v.Value}, true
	case *types.AttributeValueMemberBOOL:
		return av{kind: "BOOL", bool: v.Value}, true
	}
	return av{kind: typeName(v)}, true
}

// fromTable is m as parseItem reads it (in place).
func fromTable(m map[string]types.AttributeValue) tableItem { return tableItem(m) }

// streamItem is an image of a DynamoDB Streams record.
type streamItem map[string]streamtypes.AttributeValue

func (m streamItem) attr(name string) (av, bool) {
	v, ok := m[name]
	if !ok {
		return av{}, false
	}
	switch v := v.(type) {
	case *streamtypes.AttributeValueMemberS:
		return av{kind: "S", s: v.Value}, true
	case *streamtypes.AttributeValueMemberN:
		return av{kind: "N", s: v.Value}, true
	case *streamtypes.AttributeValueMemberB:
		return av{kind: "B", b: v.Value}, true
	case *streamtypes.AttributeValueMemberBOOL:
		return av{kind: "BOOL", bool: v.Value}, true
	}
	return av{kind: typeName(v)}, true
}

// typeName names an attribute value type for error messages, without its
// content.
func typeName(v any) string {
	if v == nil {
		return "nil"
	}
	name := strings.TrimPrefix(strings.TrimPrefix(typeOf(v), "*types.AttributeValueMember"), "*streamtypes.AttributeValueMember")
	return name
}

// parseItem checks m against the item format. It never panics, whatever m
// holds; a violation is a *CorruptItemError.
func parseItem(m attrSource) (rawItem, error) {
	var r rawItem
	pk, ok := m.attr(PartitionKeyAttr)
	if !ok {
		return r, &CorruptItemError{PartitionKeyAttr, "missing"}
	}
	if pk.kind != "S" {
		return r, &CorruptItemError{PartitionKeyAttr, "type " + pk.kind + ", want S"}
	}
	_, key, found := strings.Cut(pk.s, "#")
	if !found || key == "" {
		return r, &CorruptItemError{PartitionKeyAttr, "not namespace#key"}
	}
	r.Key = key

	if v, ok := m.attr(ValueAttr); ok {
		if v.kind != "B" {
			return r, &CorruptItemError{ValueAttr, "type " + v.kind + ", want B"}
		}
		r.hasValue = true
		r.Value = v.b
		if r.Value == nil {
			r.Value = []byte{}
		}
	}
	var err error
	if r.NotFound, err = boolAttr(m, NegativeAttr); err != nil {
		return r, err
	}
	if r.tomb, err = boolAttr(m, TombstoneAttr); err != nil {
		return r, err
	}
	if r.hasValue && r.NotFound && !r.tomb {
		return r, &CorruptItemError{NegativeAttr, "set together with " + ValueAttr}
	}
	ver, hasVer, err := intAttr(m, VersionAttr)
	if err != nil {
		return r, err
	}
	if !hasVer && (r.hasValue || r.NotFound) && !r.tomb {
		return r, &CorruptItemError{VersionAttr, "missing"}
	}
	if ver < 0 {
		return r, &CorruptItemError{VersionAttr, "negative"}
	}
	r.Version = ver
	exp, hasExp, err := intAttr(m, ExpiresAttr)
	if err != nil {
		return r, err
	}
	if hasExp {
		r.ExpiresAt = time.Unix(exp, 0)
	}
	if l, ok := m.attr(LeaseAttr); ok {
		if l.kind != "S" {
			return r, &CorruptItemError{LeaseAttr, "type " + l.kind + ", want S"}
		}
		r.lease = l.s
		lexp, hasLexp, err := intAttr(m, LeaseExpiresAttr)
		if err != nil {
			return r, err
		}
		if !hasLexp {
			return r, &CorruptItemError{LeaseExpiresAttr, "missing next to " + LeaseAttr}
		}
		r.leaseExp = time.UnixMilli(lexp)
	}
	if w, ok := m.attr(WriterAttr); ok && w.kind == "S" {
		r.Writer = w.s // a mark of another type is ignored: it proves nothing
	}
	if r.tomb {
		// A tombstone (or lease placeholder on one) holds no entry.
		r.Value, r.hasValue, r.NotFound = nil, false, false
	}
	r.Vacant = r.tomb || (!r.hasValue && !r.NotFound)
	return r, nil
}

func boolAttr(m attrSource, name string) (bool, error) {
	a, ok := m.attr(name)
	if !ok {
		return false, nil
	}
	if a.kind != "BOOL" {
		return false, &CorruptItemError{name, "type " + a.kind + ", want BOOL"}
	}
	return a.bool, nil
}

// intAttr reads an N attribute holding an integer (a decimal with a zero
// fraction is accepted: other writers may produce one).
func intAttr(m attrSource, name string) (int64, bool, error) {
	a, ok := m.attr(name)
	if !ok {
		return 0, false, nil
	}
	if a.kind != "N" {
		return 0, true, &CorruptItemError{name, "type " + a.kind + ", want N"}
	}
	n, err := strconv.ParseInt(a.s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(a.s, 64)
		if ferr != nil || f != float64(int64(f)) {
			return 0, true, &CorruptItemError{name, "not an integer"}
		}
		n = int64(f)
	}
	return n, true, nil
}

// ItemFromStreamImage parses a NEW_IMAGE (or OLD_IMAGE) stream record image.
// It applies no expiry filter (compare ExpiresAt with your clock) and marks
// tombstones and lease placeholders Vacant. A malformed image gives a
// *CorruptItemError; it never panics.
func ItemFromStreamImage(img map[string]streamtypes.AttributeValue) (Item, error) {
	if len(img) == 0 {
		return Item{}, &CorruptItemError{PartitionKeyAttr, "empty image"}
	}
	r, err := parseItem(streamItem(img))
	if err != nil {
		return Item{}, err
	}
	it := r.Item
	it.Leased = r.lease != "" && r.Vacant
	return it, nil
}

func typeOf(v any) string { return fmt.Sprintf("%T", v) }
