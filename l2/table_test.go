package l2_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
)

func rawClient(t *testing.T) *dynamodb.Client {
	return dynamodb.NewFromConfig(dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint()))
}

func TestEnsureTableCreatesOnceUnderConcurrency(t *testing.T) {
	raw := rawClient(t)
	name := dynamolocal.TableName(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			tbl, err := l2.New(l2.Options{Client: raw, Table: name})
			if err == nil {
				err = tbl.EnsureTable(ctx(t))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureTable: %v", err)
		}
	}
	d, err := raw.DescribeTable(ctx(t), &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	desc := d.Table
	if desc.TableStatus != types.TableStatusActive || len(desc.KeySchema) != 1 || aws.ToString(desc.KeySchema[0].AttributeName) != "pk" ||
		desc.StreamSpecification == nil || !aws.ToBool(desc.StreamSpecification.StreamEnabled) ||
		desc.StreamSpecification.StreamViewType != types.StreamViewTypeKeysOnly || desc.LatestStreamArn == nil {
		t.Fatalf("created table = %+v", desc)
	}
	if desc.BillingModeSummary == nil || desc.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode = %+v, want PAY_PER_REQUEST", desc.BillingModeSummary)
	}
	ttl, err := raw.DescribeTimeToLive(ctx(t), &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil || ttl.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusEnabled ||
		aws.ToString(ttl.TimeToLiveDescription.AttributeName) != "exp" {
		t.Fatalf("TTL = %+v, %v; want ENABLED on exp", ttl.TimeToLiveDescription, err)
	}
}

// createRaw makes a table with the SDK directly.
func createRaw(t *testing.T, raw *dynamodb.Client, in *dynamodb.CreateTableInput) string {
	t.Helper()
	name := dynamolocal.TableName(t)
	in.TableName = aws.String(name)
	in.BillingMode = types.BillingModePayPerRequest
	if _, err := raw.CreateTable(ctx(t), in); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	return name
}

func TestEnsureTableReportsEveryMismatch(t *testing.T) {
	raw := rawClient(t)
	name := createRaw(t, raw, &dynamodb.CreateTableInput{
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeN},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
	})
	if _, err := raw.UpdateTimeToLive(ctx(t), &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("ttl"), Enabled: aws.Bool(true)},
	}); err != nil {
		t.Fatal(err)
	}
	tbl, err := l2.New(l2.Options{Client: raw, Table: name})
	if err != nil {
		t.Fatal(err)
	}
	err = tbl.EnsureTable(ctx(t))
	var tm *l2.TableMismatchError
	if !errors.Is(err, l2.ErrTableMismatch) || !errors.As(err, &tm) {
		t.Fatalf("EnsureTable on a foreign table = %v, want *TableMismatchError", err)
	}
	want := []string{
		"key schema [id HASH sk RANGE], want exactly pk HASH",
		"stream disabled, want enabled with view KEYS_ONLY",
		`TTL on attribute "ttl", want "exp"`,
	}
	if strings.Join(tm.Problems, "\n") != strings.Join(want, "\n") || tm.Table != name {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(tm.Problems, "\n"), strings.Join(want, "\n"))
	}
}

func TestEnsureTableChecksStreamViewAndRepairsTTL(t *testing.T) {
	raw := rawClient(t)
	// Right key, KEYS_ONLY stream, TTL never enabled (a crash between
	// CreateTable and UpdateTimeToLive looks like this).
	name := createRaw(t, raw, &dynamodb.CreateTableInput{
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		StreamSpecification:  &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeKeysOnly},
	})
	newImage, err := l2.New(l2.Options{Client: raw, Table: name, StreamView: types.StreamViewTypeNewImage})
	if err != nil {
		t.Fatal(err)
	}
	err = newImage.EnsureTable(ctx(t))
	var tm *l2.TableMismatchError
	if !errors.As(err, &tm) || len(tm.Problems) != 1 || tm.Problems[0] != "stream view KEYS_ONLY, want NEW_IMAGE" {
		t.Fatalf("NEW_IMAGE wanted on a KEYS_ONLY table = %v", err)
	}
	// The TTL was repaired on the way.
	ttl, err := raw.DescribeTimeToLive(ctx(t), &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil || aws.ToString(ttl.TimeToLiveDescription.AttributeName) != "exp" {
		t.Fatalf("TTL after EnsureTable = %+v, %v", ttl.TimeToLiveDescription, err)
	}
	keysOnly, err := l2.New(l2.Options{Client: raw, Table: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := keysOnly.EnsureTable(ctx(t)); err != nil {
		t.Fatalf("KEYS_ONLY on a KEYS_ONLY table: %v", err)
	}

	// Stream helpers: disabled is reported; enabling with NEW_AND_OLD_IMAGES
	// satisfies both KEYS_ONLY and NEW_IMAGE.
	if err := dynamolocal.SetStream(ctx(t), raw, name, ""); err != nil {
		t.Fatalf("disabling the stream: %v", err)
	}
	if err := keysOnly.EnsureTable(ctx(t)); !errors.As(err, &tm) || len(tm.Problems) != 1 || !strings.Contains(tm.Problems[0], "stream disabled") {
		t.Fatalf("EnsureTable with the stream disabled = %v", err)
	}
	if err := dynamolocal.SetStream(ctx(t), raw, name, types.StreamViewTypeNewAndOldImages); err != nil {
		t.Fatalf("enabling the stream: %v", err)
	}
	for _, tbl := range []*l2.Table{keysOnly, newImage} {
		if err := tbl.EnsureTable(ctx(t)); err != nil {
			t.Fatalf("EnsureTable after enabling NEW_AND_OLD_IMAGES: %v", err)
		}
	}
}

// TestDynamoDBEnforcesItemSize shows the size test above means something:
// DynamoDB Local rejects an item over 400 KB.
func TestDynamoDBEnforcesItemSize(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.raw.PutItem(ctx(t), &dynamodb.PutItemInput{TableName: aws.String(e.name), Item: map[string]types.AttributeValue{
		"pk": S("ns#x"), "v": &types.AttributeValueMemberB{Value: make([]byte, l2.MaxItemBytes)},
	}})
	if err == nil {
		t.Fatal("DynamoDB Local accepted an item over 400 KB")
	}
	// And l2 refuses it before sending, with both sizes.
	_, err = e.tbl.Put(ctx(t), "x", make([]byte, l2.MaxItemBytes), time.Minute)
	var vt *l2.ValueTooLargeError
	if !errors.As(err, &vt) || vt.Size != l2.MaxItemBytes || vt.Max != e.tbl.MaxValueBytes("x") {
		t.Fatalf("Put of 400 KB = %v", err)
	}
}
