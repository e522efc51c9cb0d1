package l2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// tablePoll bounds the wait between DescribeTable calls while a table
// becomes ACTIVE.
const tablePoll = 500 * time.Millisecond

// EnsureTable creates the table if it does not exist: on-demand billing,
// partition key pk (S), a stream of Options.StreamView, TTL on exp; it waits
// until the table is ACTIVE. Several nodes may call it at once.
//
// An existing table is checked instead, and every difference is reported in
// one *TableMismatchError: key schema other than exactly pk (S, HASH), stream
// disabled, a stream view lacking what Options.StreamView needs (KEYS_ONLY
// accepts any view; NEW_IMAGE accepts NEW_IMAGE or NEW_AND_OLD_IMAGES), TTL on
// another attribute, a table being deleted. One thing is repaired rather
// than reported: TTL disabled is enabled on exp (creation enables it in a
// second call, which a crash may have skipped).
//
// ctx bounds the whole setup; Options.CallTimeout does not apply.
func (t *Table) EnsureTable(ctx context.Context) error {
	return t.setup(ctx, true)
}

// CheckTable is EnsureTable without creating: a missing table is a
// *TableMismatchError saying so. TTL disabled is still enabled on exp.
func (t *Table) CheckTable(ctx context.Context) error {
	return t.setup(ctx, false)
}

func (t *Table) setup(ctx context.Context, create bool) error {
	desc, err := t.describe(ctx)
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		if !create {
			return &TableMismatchError{Table: t.o.Table, Problems: []string{"table does not exist; create it or let the cache create it"}}
		}
		err = t.create(ctx)
		if err == nil {
			desc, err = t.waitActive(ctx)
		}
	}
	if err != nil {
		return err
	}
	if desc.TableStatus == types.TableStatusCreating || desc.TableStatus == types.TableStatusUpdating {
		if desc, err = t.waitActive(ctx); err != nil {
			return err
		}
	}
	problems := t.checkTable(desc)
	ttl, err := t.ensureTTL(ctx)
	if err != nil {
		return err
	}
	problems = append(problems, ttl...)
	if len(problems) > 0 {
		return &TableMismatchError{Table: t.o.Table, Problems: problems}
	}
	return nil
}

func (t *Table) describe(ctx context.Context) (*types.TableDescription, error) {
	out, err := t.c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(t.o.Table)})
	if err != nil {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, err // unwrapped: callers test for it
		}
		return nil, callError("DescribeTable", err)
	}
	if out.Table == nil {
		return nil, fmt.Errorf("l2: DescribeTable: no table description")
	}
	return out.Table, nil
}

func (t *Table) create(ctx context.Context) error {
	_, err := t.c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(t.o.Table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(PartitionKeyAttr), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(PartitionKeyAttr), KeyType: types.KeyTypeHash}},
		StreamSpecification:  &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: t.o.StreamView},
	})
	var inUse *types.ResourceInUseException
	if errors.As(err, &inUse) {
		return nil // another node created it meanwhile: check it as usual
	}
	if err != nil {
		return callError("CreateTable", err)
	}
	return nil
}

// waitActive polls DescribeTable until the table is ACTIVE.
func (t *Table) waitActive(ctx context.Context) (*types.TableDescription, error) {
	wait := 20 * time.Millisecond
	for {
		desc, err := t.describe(ctx)
		var nf *types.ResourceNotFoundException
		switch {
		case errors.As(err, &nf):
			// Eventually consistent right after CreateTable: keep waiting.
		case err != nil:
			return nil, err
		case desc.TableStatus == types.TableStatusActive:
			return desc, nil
		case desc.TableStatus != types.TableStatusCreating && desc.TableStatus != types.TableStatusUpdating:
			return desc, nil // DELETING etc.: checkTable reports it
		}
		if !sleepCtx(ctx, wait) {
			return nil, fmt.Errorf("l2: waiting for table %s to become ACTIVE: %w", t.o.Table, ctx.Err())
		}
		wait = min(2*wait, tablePoll)
	}
}

// checkTable lists how desc differs from what the item format needs.
func (t *Table) checkTable(desc *types.TableDescription) []string {
	var problems []string
	if desc.TableStatus != types.TableStatusActive && desc.TableStatus != types.TableStatusUpdating {
		problems = append(problems, fmt.Sprintf("table status %s, want ACTIVE", desc.TableStatus))
	}
	keyOK := len(desc.KeySchema) == 1 && aws.ToString(desc.KeySchema[0].AttributeName) == PartitionKeyAttr &&
		desc.KeySchema[0].KeyType == types.KeyTypeHash
	if !keyOK {
		problems = append(problems, fmt.Sprintf("key schema %s, want exactly %s HASH", keySchemaString(desc.KeySchema), PartitionKeyAttr))
	}
	for _, ad := range desc.AttributeDefinitions {
		if aws.ToString(ad.AttributeName) == PartitionKeyAttr && ad.AttributeType != types.ScalarAttributeTypeS {
			problems = append(problems, fmt.Sprintf("attribute %s has type %s, want S", PartitionKeyAttr, ad.AttributeType))
		}
	}
	spec := desc.StreamSpecification
	switch {
	case spec == nil || !aws.ToBool(spec.StreamEnabled):
		problems = append(problems, "stream disabled, want enabled with view "+string(t.o.StreamView))
	case !viewCovers(spec.StreamViewType, t.o.StreamView):
		problems = append(problems, fmt.Sprintf("stream view %s, want %s", spec.StreamViewType, t.o.StreamView))
	}
	return problems
}

func keySchemaString(ks []types.KeySchemaElement) string {
	s := "["
	for i, k := range ks {
		if i > 0 {
			s += " "
		}
		s += aws.ToString(k.AttributeName) + " " + string(k.KeyType)
	}
	return s + "]"
}

// viewCovers reports whether a stream of view have carries what want needs.
func viewCovers(have, want types.StreamViewType) bool {
	switch want {
	case types.StreamViewTypeKeysOnly:
		return have != ""
	case types.StreamViewTypeNewImage:
		return have == types.StreamViewTypeNewImage || have == types.StreamViewTypeNewAndOldImages
	case types.StreamViewTypeOldImage:
		return have == types.StreamViewTypeOldImage || have == types.StreamViewTypeNewAndOldImages
	}
	return have == want
}

// ensureTTL enables TTL on exp when TTL is disabled, and reports TTL on any
// other attribute.
func (t *Table) ensureTTL(ctx context.Context) ([]string, error) {
	out, err := t.c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(t.o.Table)})
	if err != nil {
		return nil, callError("DescribeTimeToLive", err)
	}
	d := out.TimeToLiveDescription
	status := types.TimeToLiveStatusDisabled
	attr := ""
	if d != nil {
		status, attr = d.TimeToLiveStatus, aws.ToString(d.AttributeName)
	}
	switch status {
	case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
		if attr != ExpiresAttr {
			return []string{fmt.Sprintf("TTL on attribute %q, want %q", attr, ExpiresAttr)}, nil
		}
		return nil, nil
	case types.TimeToLiveStatusDisabling:
		return []string{"TTL being disabled, want enabled on " + ExpiresAttr}, nil
	}
	_, err = t.c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(t.o.Table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(ExpiresAttr), Enabled: aws.Bool(true)},
	})
	if err != nil {
		// Another node may have enabled it a moment ago: check once more.
		if again, derr := t.c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(t.o.Table)}); derr == nil &&
			again.TimeToLiveDescription != nil && aws.ToString(again.TimeToLiveDescription.AttributeName) == ExpiresAttr &&
			(again.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabled ||
				again.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
			return nil, nil
		}
		return nil, callError("UpdateTimeToLive", err)
	}
	return nil, nil
}
