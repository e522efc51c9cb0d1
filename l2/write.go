package l2

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// names maps every #placeholder used in expressions to its attribute. Each
// request sends only those its expressions use (DynamoDB rejects unused ones).
var names = map[string]string{
	"#pk": PartitionKeyAttr, "#v": ValueAttr, "#ver": VersionAttr, "#exp": ExpiresAttr,
	"#neg": NegativeAttr, "#tomb": TombstoneAttr, "#lease": LeaseAttr, "#lexp": LeaseExpiresAttr,
	"#w": WriterAttr, "#lver": LeaseVersionAttr, "#fv": FormatAttr,
}

// vacantCond is true when the item holds no live entry at :nows (epoch
// seconds): it does not exist, is a tombstone, has expired, or has neither a
// value nor a negative entry. It mirrors rawItem.live.
const vacantCond = "(attribute_not_exists(#pk) OR #tomb = :true OR #exp <= :nows OR " +
	"(attribute_not_exists(#v) AND (attribute_not_exists(#neg) OR #neg = :false)))"

// noLeaseCond is true when no lease of format 1 (on the key's item, written
// by an older release) is live at :nowms (epoch millis).
const noLeaseCond = "(attribute_not_exists(#lease) OR #lexp <= :nowms)"

// update is one UpdateItem request under construction.
type update struct {
	expr, cond string
	values     map[string]types.AttributeValue
}

func (t *Table) update(ctx context.Context, op, pk string, u update, returnNew bool) (*dynamodb.UpdateItemOutput, error) {
	in := &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.o.Table),
		Key:                       map[string]types.AttributeValue{PartitionKeyAttr: &types.AttributeValueMemberS{Value: pk}},
		UpdateExpression:          aws.String(u.expr),
		ExpressionAttributeNames:  usedNames(u.expr + " " + u.cond),
		ExpressionAttributeValues: u.values,
	}
	if u.cond != "" {
		in.ConditionExpression = aws.String(u.cond)
		in.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	}
	if returnNew {
		in.ReturnValues = types.ReturnValueUpdatedNew
	}
	cctx, w := t.callCtx(ctx)
	defer w.close()
	out, err := t.c.UpdateItem(cctx, in, t.withProgress...)
	return out, t.record(cctx, op, err)
}

func usedNames(exprs string) map[string]string {
	out := make(map[string]string, len(names))
	for ph, name := range names {
		if containsWord(exprs, ph) {
			out[ph] = name
		}
	}
	return out
}

// containsWord reports whether ph occurs in s not followed by a name
// character (so "#v" does not match inside "#ver").
func containsWord(s, ph string) bool {
	for i := 0; i+len(ph) <= len(s); i++ {
		if s[i:i+len(ph)] != ph {
			continue
		}
		j := i + len(ph)
		if j == len(s) || !isNameChar(s[j]) {
			return true
		}
	}
	return false
}

func isNameChar(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// expSeconds is the exp attribute for an entry living ttl from now: rounded
// up, so an entry lives at least ttl.
func expSeconds(now time.Time, ttl time.Duration) int64 {
	e := now.Add(ttl)
	s := e.Unix()
	if e.Nanosecond() > 0 {
		s++
	}
	return s
}

// entryWrite stores a value (or, with notFound, a negative entry) that lives
// until exp; it moves the version forward and clears tombstone and lease.
func (t *Table) entryWrite(value []byte, notFound bool, exp int64) write {
	w := write{values: map[string]types.AttributeValue{":exp": num(exp)}, bump: true}
	if notFound {
		w.set = "#neg = :true, #exp = :exp"
		w.remove = "#v, #tomb, #lease, #lexp"
	} else {
		if value == nil {
			value = []byte{}
		}
		w.set = "#v = :v, #exp = :exp"
		w.remove = "#neg, #tomb, #lease, #lexp"
		w.values[":v"] = &types.AttributeValueMemberB{Value: value}
	}
	// The writer goes with the entry, or the entry carries none: a
	// writer's mark must never outlive its own write.
	if t.o.Writer != "" {
		w.set += ", #w = :w"
		w.values[":w"] = &types.AttributeValueMemberS{Value: t.o.Writer}
	} else {
		w.remove += ", #w"
	}
	return w
}

func (t *Table) checkEntry(key string, value []byte, ttl time.Duration) (string, error) {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return "", err
	}
	if err := t.checkValue(key, value); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", ErrInvalidTTL
	}
	return pk, nil
}

// Put stores value for key, unconditionally (a user's write is the newest
// truth), living ttl (> 0). It removes any negative entry, tombstone and
// format-1 lease, and returns the new version, one more than the item's
// last: a Fill holding a lease bound to an older version fails with
// ErrLeaseLost.
//
// Every write of a key's item (Put, PutNotFound, Delete, Fill, Refresh) over a
// corrupt or foreign item (see repair.go) replaces it where the write's own
// rule allows (always for Put, PutNotFound and Delete; as over a vacant item
// for Fill; at its readable version for Refresh), giving it
// a version above every counter version (the current unix microseconds), and
// counts it in Stats.Repairs. It never fails with a ValidationException for
// it. Put and Delete fail (ErrConflict) only if other writers keep rewriting
// the item through writeRounds attempts.
func (t *Table) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (version int64, err error) {
	return t.put(ctx, "Put", key, value, false, ttl)
}

// putNotFound stores a negative entry ("the key does not exist at the
// source") for key, unconditionally, like Put. Only tests use it (the cache
// stores negative entries through Fill).
func (t *Table) putNotFound(ctx context.Context, key string, ttl time.Duration) (version int64, err error) {
	return t.put(ctx, "PutNotFound", key, nil, true, ttl)
}

func (t *Table) put(ctx context.Context, op, key string, value []byte, notFound bool, ttl time.Duration) (int64, error) {
	pk, err := t.checkEntry(key, value, ttl)
	if err != nil {
		return 0, err
	}
	ver, _, err := t.write(ctx, op, pk, t.entryWrite(value, notFound, expSeconds(t.o.Now(), ttl)))
	if _, ok := conditionFailed(err); ok {
		return 0, &ConflictError{} // other writers kept rewriting a corrupt item
	}
	return ver, err
}

// Fill stores the result of a load after a miss: value, or with notFound a
// negative entry (value ignored), living ttl (> 0). It never overwrites a
// newer entry: it lands only if the item is vacant (absent, tombstone,
// expired or placeholder) and carries no live lease of format 1 (written on
// the key's item by an older release; see the package documentation), and:
//
//   - IfVersion(v): the item's version is still v, the version Get saw when
//     the load began (0: no version). Any Put, Delete or fill since then
//     moved it, so the load may be older than the table: ErrConflict. This
//     closes the race with a Delete. Without IfVersion, a fill whose load
//     began before a Delete can still land on that Delete's tombstone.
//
//   - lease != "": the fill of the holder of a lease (see AcquireLeaseAt).
//     It must carry IfVersion(v) with the version the lease is bound to
//     (else ErrInvalidLease, before any request); a refusal is then
//     ErrLeaseLost. The lease item is not written: the fill's new version
//     voids the lease.
//
// A fill without a lease does not see leases of format 2 (in lease items):
// it may land while another owner holds one, whose fill then loses to it.
//
// Over a corrupt item, a fill lands as over a vacant one (replacing it),
// but with IfVersion(v), v != 0, only if it still carries version v, and
// not while a live lease of format 1 can be read on it.
//
// A refused fill is a *ConflictError (errors.Is ErrConflict, and ErrLeaseLost
// for a lease fill) whose Current holds the live entry found, if any. On
// success Fill returns the new version.
func (t *Table) Fill(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, lease string, optFns ...FillOption) (version int64, err error) {
	var fo fillOptions
	for _, fn := range optFns {
		fn(&fo)
	}
	if notFound {
		value = nil
	}
	pk, err := t.checkEntry(key, value, ttl)
	if err != nil {
		return 0, err
	}
	if lease != "" {
		if err := checkOwner(lease); err != nil {
			return 0, err
		}
		if !fo.ifVersion {
			return 0, fmt.Errorf("%w: a lease fill needs IfVersion (the version its lease is bound to)", ErrInvalidLease)
		}
	}
	now := t.o.Now()
	w := t.entryWrite(value, notFound, expSeconds(now, ttl))
	w.cond = vacantCond + " AND " + noLeaseCond
	w.values[":false"] = &types.AttributeValueMemberBOOL{Value: false}
	w.values[":nows"] = num(now.Unix())
	w.values[":nowms"] = num(now.UnixMilli())
	// Over a corrupt item: as over a vacant one, unless a live lease can be
	// read on it, or IfVersion names a version it does not carry.
	w.may = func(old map[string]types.AttributeValue) bool {
		_, held := looseLease(old, now)
		return !held && (!fo.ifVersion || fo.version == 0 || looseVersion(old) == fo.version)
	}
	if fo.ifVersion {
		w.cond += " AND " + w.versionIs(fo.version)
	}
	ver, old, err := t.write(ctx, "Fill", pk, w)
	if _, ok := conditionFailed(err); ok {
		return 0, t.conflict(old, lease != "", now)
	}
	if err != nil {
		return 0, err
	}
	return ver, nil
}

// Refresh stores a reloaded value (or with notFound a negative entry) for
// key, living ttl (> 0), only if the key's version is still version: the one
// the caller's copy carries (0: the caller's copy was never stored in the
// table). Any write, delete, fill or refresh since then moved the version, so
// the reload may be older than the table: a *ConflictError (ErrConflict) with
// Current set when a live entry is there. Refresh-ahead uses it: unlike Fill
// it replaces a live entry.
func (t *Table) Refresh(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, version int64) (int64, error) {
	if notFound {
		value = nil
	}
	pk, err := t.checkEntry(key, value, ttl)
	if err != nil {
		return 0, err
	}
	now := t.o.Now()
	w := t.entryWrite(value, notFound, expSeconds(now, ttl))
	w.cond = w.versionIs(version)
	// Over a corrupt item: only if the version it carries, read leniently (0
	// when it has none or an unusable one), is still the caller's.
	w.may = func(old map[string]types.AttributeValue) bool { return looseVersion(old) == version }
	ver, old, err := t.write(ctx, "Refresh", pk, w)
	if _, ok := conditionFailed(err); ok {
		return 0, t.conflict(old, false, now)
	}
	if err != nil {
		return 0, err
	}
	return ver, nil
}

// conflict builds the *ConflictError for a failed condition from the item
// DynamoDB returned (ALL_OLD).
func (t *Table) conflict(old map[string]types.AttributeValue, leaseLost bool, now time.Time) error {
	ce := &ConflictError{LeaseLost: leaseLost}
	if len(old) == 0 {
		return ce
	}
	r, err := parseItem(fromTable(old))
	if err != nil {
		// Corrupt, and this write may not replace it: say whose lease
		// stopped it, if one can be read.
		if exp, held := looseLease(old, now); held {
			ce.HolderExpires = exp
		}
		return ce
	}
	if r.live(now) {
		it := r.Item
		ce.Current = &it
	} else if r.leaseHeld(now) {
		ce.HolderExpires = r.leaseExp
	}
	return ce
}

// Delete deletes key: it leaves a tombstone (no value, exp = now +
// TombstoneTTL) and moves the version forward, so versions never repeat
// across a delete: a Fill holding a lease bound to an older version fails
// with ErrLeaseLost. Deleting an absent key also leaves a tombstone.
func (t *Table) Delete(ctx context.Context, key string) error {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return err
	}
	_, _, err = t.write(ctx, "Delete", pk, write{
		set:    "#tomb = :true, #exp = :exp",
		remove: "#v, #neg, #lease, #lexp, #w",
		bump:   true,
		values: map[string]types.AttributeValue{":exp": num(expSeconds(t.o.Now(), t.o.TombstoneTTL))},
	})
	if _, ok := conditionFailed(err); ok {
		return &ConflictError{} // other writers kept rewriting a corrupt item
	}
	return err
}

// FillOption tweaks one Fill call.
type FillOption func(*fillOptions)

type fillOptions struct {
	ifVersion bool
	version   int64
}

// IfVersion makes a Fill land only if the key's version is still v: pass the
// Version of the Item that Get returned (with ErrNotFound) when the load
// began.
func IfVersion(v int64) FillOption {
	return func(o *fillOptions) { o.ifVersion, o.version = true, v }
}
