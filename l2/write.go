package l2

import (
	"context"
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
}

// vacantCond is true when the item holds no live entry at :nows (epoch
// seconds): it does not exist, is a tombstone, has expired, or has neither a
// value nor a negative entry. It mirrors rawItem.live.
const vacantCond = "(attribute_not_exists(#pk) OR #tomb = :true OR #exp <= :nows OR " +
	"(attribute_not_exists(#v) AND (attribute_not_exists(#neg) OR #neg = :false)))"

// noLeaseCond is true when no lease is live at :nowms (epoch millis).
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
	cctx, cancel := t.callCtx(ctx)
	defer cancel()
	out, err := t.c.UpdateItem(cctx, in)
	return out, t.record(cctx, op, err)
}

// versionIs returns the condition "the key's version is still v" (0: the
// item has no version), adding the value it needs.
func (u *update) versionIs(v int64) string {
	if v == 0 {
		return "attribute_not_exists(#ver)"
	}
	u.values[":seen"] = num(v)
	return "#ver = :seen"
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

// entryUpdate is the update storing a value (or, with notFound, a negative
// entry) that lives ttl; it moves the version forward and clears tombstone
// and lease.
func entryUpdate(value []byte, notFound bool, exp int64) update {
	u := update{values: map[string]types.AttributeValue{
		":exp": num(exp),
		":one": num(1),
	}}
	if notFound {
		u.expr = "SET #neg = :true, #exp = :exp REMOVE #v, #tomb, #lease, #lexp ADD #ver :one"
		u.values[":true"] = &types.AttributeValueMemberBOOL{Value: true}
	} else {
		if value == nil {
			value = []byte{}
		}
		u.expr = "SET #v = :v, #exp = :exp REMOVE #neg, #tomb, #lease, #lexp ADD #ver :one"
		u.values[":v"] = &types.AttributeValueMemberB{Value: value}
	}
	return u
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
// lease (so a Fill holding that lease fails with ErrLeaseLost) and returns
// the new version, one more than the item's last.
func (t *Table) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (version int64, err error) {
	return t.put(ctx, "Put", key, value, false, ttl)
}

// PutNotFound stores a negative entry ("the key does not exist at the
// source") for key, unconditionally, like Put.
func (t *Table) PutNotFound(ctx context.Context, key string, ttl time.Duration) (version int64, err error) {
	return t.put(ctx, "PutNotFound", key, nil, true, ttl)
}

func (t *Table) put(ctx context.Context, op, key string, value []byte, notFound bool, ttl time.Duration) (int64, error) {
	pk, err := t.checkEntry(key, value, ttl)
	if err != nil {
		return 0, err
	}
	out, err := t.update(ctx, op, pk, entryUpdate(value, notFound, expSeconds(t.o.Now(), ttl)), true)
	if err != nil {
		return 0, err
	}
	return t.newVersion(out)
}

func (t *Table) newVersion(out *dynamodb.UpdateItemOutput) (int64, error) {
	ver, ok, err := intAttr(fromTable(out.Attributes), VersionAttr)
	if err == nil && !ok {
		err = &CorruptItemError{VersionAttr, "missing from the write's answer"}
	}
	if err != nil {
		t.stats.corrupt.Add(1)
		return 0, err
	}
	return ver, nil
}

// Fill stores the result of a load after a miss: value, or with notFound a
// negative entry (value ignored), living ttl (> 0). It never overwrites a
// newer entry:
//
//   - lease == "": it lands only if the item is vacant (absent, tombstone,
//     expired or placeholder) and no one else holds a live lease on it.
//     Alone, a fill whose load began before a Delete can still land on that
//     Delete's tombstone: add IfVersion, or take a lease, to close that race.
//
//   - lease != "": it lands only if the item still carries this lease (see
//     AcquireLease). Put, PutNotFound and Delete remove the lease, so a load
//     that began before them is not stored: ErrLeaseLost.
//
//   - IfVersion(v) adds: the item's version is still v, the version Get saw
//     when the load began (0: no version). Any Put, Delete or fill since then
//     moved it, so the load may be older than the table: ErrConflict. This
//     closes the race with a Delete without a lease.
//
// A refused fill is a *ConflictError (errors.Is ErrConflict, and ErrLeaseLost
// for a lease fill) whose Current holds the live entry found, if any. On
// success Fill returns the new version and the lease is gone.
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
	now := t.o.Now()
	u := entryUpdate(value, notFound, expSeconds(now, ttl))
	if lease == "" {
		u.cond = vacantCond + " AND " + noLeaseCond
		u.values[":true"] = &types.AttributeValueMemberBOOL{Value: true}
		u.values[":false"] = &types.AttributeValueMemberBOOL{Value: false}
		u.values[":nows"] = num(now.Unix())
		u.values[":nowms"] = num(now.UnixMilli())
	} else {
		u.cond = "#lease = :lease"
		u.values[":lease"] = &types.AttributeValueMemberS{Value: lease}
	}
	if fo.ifVersion {
		u.cond += " AND " + u.versionIs(fo.version)
	}
	out, err := t.update(ctx, "Fill", pk, u, true)
	if ccf, ok := conditionFailed(err); ok {
		return 0, t.conflict(ccf.Item, lease != "", now)
	}
	if err != nil {
		return 0, err
	}
	return t.newVersion(out)
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
	u := entryUpdate(value, notFound, expSeconds(now, ttl))
	u.cond = u.versionIs(version)
	out, err := t.update(ctx, "Refresh", pk, u, true)
	if ccf, ok := conditionFailed(err); ok {
		return 0, t.conflict(ccf.Item, false, now)
	}
	if err != nil {
		return 0, err
	}
	return t.newVersion(out)
}

// conflict builds the *ConflictError for a failed condition from the item
// DynamoDB returned (ALL_OLD).
func (t *Table) conflict(old map[string]types.AttributeValue, leaseLost bool, now time.Time) error {
	ce := &ConflictError{LeaseLost: leaseLost}
	if len(old) == 0 {
		return ce
	}
	r, err := t.parse(old)
	if err != nil {
		return ce // counted as corrupt; the write still did not land
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
// across a delete. It removes any lease: a Fill holding it fails with
// ErrLeaseLost. Deleting an absent key also leaves a tombstone.
func (t *Table) Delete(ctx context.Context, key string) error {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return err
	}
	_, err = t.update(ctx, "Delete", pk, update{
		expr: "SET #tomb = :true, #exp = :exp REMOVE #v, #neg, #lease, #lexp ADD #ver :one",
		values: map[string]types.AttributeValue{
			":true": &types.AttributeValueMemberBOOL{Value: true},
			":exp":  num(expSeconds(t.o.Now(), t.o.TombstoneTTL)),
			":one":  num(1),
		},
	}, false)
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
