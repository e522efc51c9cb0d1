package deploy_test

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/l2"
)

// tableSpec is what a template says about the table, in one form for both
// templates.
type tableSpec struct {
	BillingMode   string
	HashKey       string
	Attributes    map[string]string // name -> type
	StreamEnabled bool
	StreamView    string
	TTLAttribute  string
	TTLEnabled    bool
	Extra         []string // anything else the template declares (indexes, range key, ...)
}

// description is the TableDescription DynamoDB gives for the table the
// template creates, once ACTIVE.
func (s tableSpec) description() *types.TableDescription {
	d := &types.TableDescription{
		TableStatus:        types.TableStatusActive,
		BillingModeSummary: &types.BillingModeSummary{BillingMode: types.BillingMode(s.BillingMode)},
	}
	if s.HashKey != "" {
		d.KeySchema = []types.KeySchemaElement{{AttributeName: aws.String(s.HashKey), KeyType: types.KeyTypeHash}}
	}
	for name, typ := range s.Attributes {
		d.AttributeDefinitions = append(d.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeType(typ)})
	}
	if s.StreamEnabled {
		d.StreamSpecification = &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewType(s.StreamView)}
	}
	return d
}

// problems is what New would say about the table (l2.CheckDescription is the
// check CheckTable and EnsureTable run), plus what that check leaves to other
// calls or does not check: TTL (DescribeTimeToLive; New would enable it
// rather than fail, with the admin policy), billing mode and anything extra,
// which New accepts but this project's templates promise not to have.
func (s tableSpec) problems(view types.StreamViewType) []string {
	p := l2.CheckDescription(s.description(), view)
	if !s.TTLEnabled || s.TTLAttribute != l2.ExpiresAttr {
		p = append(p, fmt.Sprintf("TTL on %q enabled=%v, want enabled on %q", s.TTLAttribute, s.TTLEnabled, l2.ExpiresAttr))
	}
	if s.BillingMode != string(types.BillingModePayPerRequest) {
		p = append(p, "billing mode "+s.BillingMode+", want PAY_PER_REQUEST")
	}
	if len(s.Attributes) != 1 {
		p = append(p, fmt.Sprintf("attribute definitions %v, want only %s", s.Attributes, l2.PartitionKeyAttr))
	}
	for _, e := range s.Extra {
		p = append(p, "unexpected "+e)
	}
	return p
}

// Which template stream views each cache mode accepts: the default cache
// (KEYS_ONLY) any; ReplaceOnChange (NEW_IMAGE) only views with the new image.
var viewCases = []struct {
	template string
	cache    types.StreamViewType
	ok       bool
}{
	{"KEYS_ONLY", types.StreamViewTypeKeysOnly, true},
	{"KEYS_ONLY", types.StreamViewTypeNewImage, false},
	{"NEW_IMAGE", types.StreamViewTypeKeysOnly, true},
	{"NEW_IMAGE", types.StreamViewTypeNewImage, true},
	{"NEW_AND_OLD_IMAGES", types.StreamViewTypeKeysOnly, true},
	{"NEW_AND_OLD_IMAGES", types.StreamViewTypeNewImage, true},
}

// checkSpec runs the checks every template must pass: for each stream view
// the template allows, New accepts it exactly when it should, and a table
// with a wrong key is refused by the same check (so the test can fail).
func checkSpec(t *testing.T, name string, spec func(view string) tableSpec, allowed []string, def string) {
	t.Helper()
	if def != "KEYS_ONLY" {
		t.Errorf("%s: default stream view %q, want KEYS_ONLY (the cache's default)", name, def)
	}
	want := []string{"KEYS_ONLY", "NEW_IMAGE", "NEW_AND_OLD_IMAGES"}
	if fmt.Sprint(allowed) != fmt.Sprint(want) {
		t.Errorf("%s: allowed stream views %v, want %v", name, allowed, want)
	}
	for _, c := range viewCases {
		p := spec(c.template).problems(c.cache)
		if (len(p) == 0) != c.ok {
			t.Errorf("%s with stream view %s, cache wanting %s: problems %q, want accepted=%v", name, c.template, c.cache, p, c.ok)
		}
	}
	bad := spec(def)
	bad.HashKey = "id"
	if p := bad.problems(""); len(p) == 0 {
		t.Errorf("%s: a table keyed on id passed the check", name)
	}
}
