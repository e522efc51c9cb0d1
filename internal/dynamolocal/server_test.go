package dynamolocal

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestMain(m *testing.M) { Main(m) }

// TestWarmUpLeavesNoTable: the warm-up Start runs before handing the server
// out deletes its table, so tests (and the demo) find an empty server.
func TestWarmUpLeavesNoTable(t *testing.T) {
	s := ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := dynamodb.NewFromConfig(AWSConfig(s.Endpoint())).ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables: %v", err)
	}
	if len(out.TableNames) != 0 {
		t.Fatalf("a fresh server holds tables %v; the warm-up must delete its own", out.TableNames)
	}
}

func TestServerServesAndRestartsEmpty(t *testing.T) {
	s := ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := dynamodb.NewFromConfig(AWSConfig(s.Endpoint()))
	table := TableName(t)
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	out, err := c.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil || len(out.TableNames) == 0 {
		t.Fatalf("ListTables = %v, %v; want the new table", out, err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	out, err = c.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables after restart: %v", err)
	}
	if len(out.TableNames) != 0 {
		t.Fatalf("an in-memory server came back with tables %v", out.TableNames)
	}
}

func TestTableNameIsValidAndUnique(t *testing.T) {
	a, b := TableName(t), TableName(t)
	if a == b {
		t.Fatalf("TableName returned %q twice", a)
	}
	if len(a) < 3 || len(a) > 255 || unsafeTableChars.MatchString(a) {
		t.Fatalf("TableName %q is not a valid table name", a)
	}
}
