package l2

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The cache owns its namespace: a write over an item that does not follow
// the item format (a foreign writer's, or a corrupted one: `ver` stored as a
// string, an entry without `ver`, `v` not binary, ...) replaces it rather
// than failing. Without care, DynamoDB answers such a write with a
// ValidationException (ADD on a `ver` that is not a number), or the write
// lands and restarts the version at 1 (an entry without `ver`), behind the
// version other nodes hold.
//
// Design, in three steps, each one UpdateItem:
//
//  1. Every write carries wellFormed in its condition, next to its own. On
//     a well-formed item (every format attribute has its type, and every
//     entry a version), the write behaves as before. On a malformed one the
//     condition fails before the update expression is evaluated, so there is
//     no ValidationException, and DynamoDB returns the item (ALL_OLD) at no
//     extra read.
//  2. If the returned item does not parse (parseItem; this also catches
//     what a condition cannot see, such as a `ver` of 1.5), and the write's
//     own rule accepts it (write.may: a Put always; a fill as over a vacant
//     item), a repair write replaces it: it SETs every attribute of the
//     format, the version included, and REMOVEs the others. It is
//     conditioned on the item being still the one returned in step 1
//     (sameAs), so it never overwrites a write another node made meanwhile;
//     if that condition fails the whole write starts over (writeRounds).
//  3. A write that landed but whose new version cannot be read (a foreign
//     `ver` of 1.5 plus 1) is repaired the same way, conditioned on that
//     version still being there.
//
// Versions only move forward: a repair's version is the current time in
// unix microseconds (about 1.7e15), above any version the counter reaches by
// one-per-write increments, and above the old version when that one is a
// usable integer. Nodes comparing versions therefore see the repaired entry
// as newer than anything they held before the item went bad (unless a
// foreign writer stored a version above the clock; then it is unusable to
// them anyway). Later writes go on with ADD from there.

// wellFormed is true when the item is absent, or has the format's types and
// a version next to every entry (mirroring parseItem as far as a condition
// can: it cannot tell 1.5 from 1).
const wellFormed = "(attribute_not_exists(#v) OR attribute_type(#v, :tB)) AND " +
	"(attribute_not_exists(#neg) OR attribute_type(#neg, :tBOOL)) AND " +
	"(attribute_not_exists(#tomb) OR attribute_type(#tomb, :tBOOL)) AND " +
	"(attribute_not_exists(#ver) OR (attribute_type(#ver, :tN) AND #ver >= :zero)) AND " +
	"(attribute_not_exists(#exp) OR attribute_type(#exp, :tN)) AND " +
	"(attribute_not_exists(#lease) OR (attribute_type(#lease, :tS) AND attribute_type(#lexp, :tN))) AND " +
	"(#tomb = :true OR ((attribute_exists(#ver) OR (attribute_not_exists(#v) AND NOT (#neg = :true))) AND " +
	"(attribute_not_exists(#v) OR NOT (#neg = :true))))"

// writeRounds bounds the (write, repair) rounds of one call when other
// writers keep changing a corrupt item under it.
const writeRounds = 3

// formatAttrs are the attributes of the item format besides the partition
// key; a repair's sameAs condition covers all of them.
var formatAttrs = []string{ValueAttr, VersionAttr, ExpiresAttr, NegativeAttr, TombstoneAttr, LeaseAttr, LeaseExpiresAttr}

// write is one write of an item: what it SETs and REMOVEs besides the
// version, whether it moves the version forward, its own condition, and
// whether it may replace a corrupt item.
type write struct {
	set    string // "#v = :v, #exp = :exp": never the version
	remove string // every other attribute of the format, but the version
	bump   bool   // ADD 1 to the version (and return it); a repair SETs it
	cond   string // the write's own condition; "" for none
	values map[string]types.AttributeValue
	// may reports whether the write may replace the corrupt item old; nil:
	// always (Put, Delete).
	may func(old map[string]types.AttributeValue) bool
}

// versionIs returns the condition "the key's version is still v" (0: the
// item has no version), adding the value it needs.
func (w *write) versionIs(v int64) string {
	if v == 0 {
		return "attribute_not_exists(#ver)"
	}
	w.values[":seen"] = num(v)
	return "#ver = :seen"
}

// run makes the write (see the design above). It returns the new version
// (0 when the write does not bump it and no repair happened), and for a
// write refused by a condition the error from DynamoDB (test it with
// conditionFailed) and the item found (ALL_OLD; corrupt when a repair was not
// allowed).
func (t *Table) write(ctx context.Context, op, pk string, w write) (int64, map[string]types.AttributeValue, error) {
	var lastErr error
	var lastOld map[string]types.AttributeValue
	for round := 0; round < writeRounds; round++ {
		u := update{
			expr:   "SET " + w.set + " REMOVE " + w.remove,
			cond:   wellFormed,
			values: make(map[string]types.AttributeValue, len(w.values)+7),
		}
		for k, v := range w.values {
			u.values[k] = v
		}
		addFormatTypes(u.values)
		if w.bump {
			u.expr += " ADD #ver :one"
			u.values[":one"] = num(1)
		}
		if w.cond != "" {
			u.cond = "(" + w.cond + ") AND " + wellFormed
		}
		out, err := t.update(ctx, op, pk, u, w.bump)
		if err == nil {
			if !w.bump {
				return 0, nil, nil
			}
			ver, ok, verr := intAttr(fromTable(out.Attributes), VersionAttr)
			if verr == nil && ok && ver >= 0 {
				return ver, nil, nil
			}
			// Landed over a version that was not a usable integer: give
			// the item one, if that version is still there.
			got, present := out.Attributes[VersionAttr]
			if !present {
				return 0, nil, &CorruptItemError{VersionAttr, "missing from the write's answer"}
			}
			ver, err = t.repair(ctx, op, pk, w, "#ver = :oldver",
				map[string]types.AttributeValue{":oldver": got}, 0)
			if err == nil {
				return ver, nil, nil
			}
			if _, ok := conditionFailed(err); !ok {
				return 0, nil, err
			}
			lastErr, lastOld = err, nil
			continue // changed meanwhile: start over
		}
		ccf, ok := conditionFailed(err)
		if !ok || len(ccf.Item) == 0 {
			return 0, nil, err
		}
		old := ccf.Item
		if _, perr := parseItem(fromTable(old)); perr == nil {
			return 0, old, err // a well-formed item the write's own condition refused
		}
		if w.may != nil && !w.may(old) {
			return 0, old, err
		}
		cond, vals := sameAs(old)
		ver, err := t.repair(ctx, op, pk, w, cond, vals, looseVersion(old))
		if err == nil {
			return ver, nil, nil
		}
		if _, ok := conditionFailed(err); !ok {
			return 0, nil, err
		}
		lastErr, lastOld = err, old
	}
	return 0, lastOld, lastErr
}

// repair replaces the item with w's attributes and a version above prev and
// above every counter version (see the design above), if cond holds.
func (t *Table) repair(ctx context.Context, op, pk string, w write, cond string, condValues map[string]types.AttributeValue, prev int64) (int64, error) {
	ver := max(t.o.Now().UnixMicro(), prev+1)
	u := update{
		expr:   "SET " + w.set + ", #ver = :newver REMOVE " + w.remove,
		cond:   cond,
		values: make(map[string]types.AttributeValue, len(w.values)+len(condValues)+1),
	}
	avail := make(map[string]types.AttributeValue, len(w.values)+6)
	addFormatTypes(avail)
	for k, v := range w.values {
		avail[k] = v
	}
	for k, v := range avail { // DynamoDB rejects values the expressions do not use
		if containsWord(u.expr, k) {
			u.values[k] = v
		}
	}
	for k, v := range condValues {
		u.values[k] = v
	}
	u.values[":newver"] = num(ver)
	if _, err := t.update(ctx, op, pk, u, false); err != nil {
		return 0, err
	}
	t.stats.repairs.Add(1)
	return ver, nil
}

// addFormatTypes adds the values wellFormed uses.
func addFormatTypes(m map[string]types.AttributeValue) {
	m[":tB"] = &types.AttributeValueMemberS{Value: "B"}
	m[":tN"] = &types.AttributeValueMemberS{Value: "N"}
	m[":tS"] = &types.AttributeValueMemberS{Value: "S"}
	m[":tBOOL"] = &types.AttributeValueMemberS{Value: "BOOL"}
	m[":zero"] = num(0)
	m[":true"] = &types.AttributeValueMemberBOOL{Value: true}
}

// sameAs returns the condition "the item still holds what old held" over
// every attribute of the format: absent ones still absent, the others equal
// (DynamoDB compares any type for equality), but the value, whose type only
// is compared (it may be 400 KB; every write of ours that changes it also
// changes the version).
func sameAs(old map[string]types.AttributeValue) (string, map[string]types.AttributeValue) {
	var b strings.Builder
	vals := make(map[string]types.AttributeValue, len(formatAttrs))
	for i, name := range formatAttrs {
		if i > 0 {
			b.WriteString(" AND ")
		}
		ph, vph := "#"+name, ":o_"+name
		v, ok := old[name]
		switch {
		case !ok:
			b.WriteString("attribute_not_exists(" + ph + ")")
		case name == ValueAttr:
			b.WriteString("attribute_type(" + ph + ", " + vph + ")")
			vals[vph] = &types.AttributeValueMemberS{Value: typeCode(v)}
		default:
			b.WriteString(ph + " = " + vph)
			vals[vph] = v
		}
	}
	return b.String(), vals
}

// typeCode is DynamoDB's name of v's type, as attribute_type takes it.
func typeCode(v types.AttributeValue) string {
	switch v.(type) {
	case *types.AttributeValueMemberS:
		return "S"
	case *types.AttributeValueMemberN:
		return "N"
	case *types.AttributeValueMemberB:
		return "B"
	case *types.AttributeValueMemberBOOL:
		return "BOOL"
	case *types.AttributeValueMemberNULL:
		return "NULL"
	case *types.AttributeValueMemberL:
		return "L"
	case *types.AttributeValueMemberM:
		return "M"
	case *types.AttributeValueMemberSS:
		return "SS"
	case *types.AttributeValueMemberNS:
		return "NS"
	case *types.AttributeValueMemberBS:
		return "BS"
	}
	return "NULL"
}

// looseVersion is the version of a possibly corrupt item, read leniently:
// 0 when it has none or one that is not a non-negative integer.
func looseVersion(m map[string]types.AttributeValue) int64 {
	n, ok := m[VersionAttr].(*types.AttributeValueMemberN)
	if !ok {
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// looseLease reads a lease from a possibly corrupt item: when it expires,
// and whether it is live at now. A lease that cannot be read is no lease.
func looseLease(m map[string]types.AttributeValue, now time.Time) (time.Time, bool) {
	l, ok := m[LeaseAttr].(*types.AttributeValueMemberS)
	if !ok || l.Value == "" {
		return time.Time{}, false
	}
	n, ok := m[LeaseExpiresAttr].(*types.AttributeValueMemberN)
	if !ok {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	exp := time.UnixMilli(ms)
	return exp, now.Before(exp)
}
