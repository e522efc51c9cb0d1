package l2

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestCheckDescription(t *testing.T) {
	good := func(view types.StreamViewType) *types.TableDescription {
		return &types.TableDescription{
			TableStatus:          types.TableStatusActive,
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(PartitionKeyAttr), KeyType: types.KeyTypeHash}},
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(PartitionKeyAttr), AttributeType: types.ScalarAttributeTypeS}},
			StreamSpecification:  &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: view},
		}
	}
	if p := CheckDescription(good(types.StreamViewTypeKeysOnly), ""); len(p) != 0 {
		t.Fatalf("KEYS_ONLY table, default view: %v", p)
	}
	if p := CheckDescription(good(types.StreamViewTypeNewAndOldImages), types.StreamViewTypeNewImage); len(p) != 0 {
		t.Fatalf("NEW_AND_OLD_IMAGES table, NEW_IMAGE view: %v", p)
	}
	p := CheckDescription(good(types.StreamViewTypeKeysOnly), types.StreamViewTypeNewImage)
	if len(p) != 1 || !strings.Contains(p[0], "stream view KEYS_ONLY") {
		t.Fatalf("KEYS_ONLY table, NEW_IMAGE view: %v", p)
	}
	bad := good(types.StreamViewTypeKeysOnly)
	bad.KeySchema[0].AttributeName = aws.String("id")
	bad.StreamSpecification = nil
	if p := CheckDescription(bad, ""); len(p) != 2 {
		t.Fatalf("wrong key and no stream: want 2 problems, got %v", p)
	}
	if p := CheckDescription(nil, ""); len(p) != 1 {
		t.Fatalf("nil: %v", p)
	}
}
