package demo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/tiered"
)

// The simulated source of truth: the database an application would put the
// cache in front of. Every node must agree on it, and the nodes share nothing
// but DynamoDB, so it lives in a second table (never the cache's own). Its
// calls model the application's database, not the cache: they are not part of
// "DynamoDB calls" in the table the demo prints.
//
// A key never written holds initialValue(key), a pure function of the key. A
// write stores a value no one wrote before ("n2/17": node and sequence
// number), so the staleness checker can tell which write a read saw. The
// application pattern is write the source, then the cache (Set or Delete);
// the cache's fill leases make that safe against loads racing the write.

const (
	sourceKeyAttr = "id"
	sourceValAttr = "v"
	sourceDelAttr = "del"
)

func keyName(i uint64) string { return "k" + strconv.FormatUint(i, 10) }

// initialValue is what the source holds for a key no node wrote.
func initialValue(key string) string { return "init/" + key }

func initialState(key string) (string, bool) { return initialValue(key), true }

type source struct {
	ddb     *dynamodb.Client
	table   string
	latency time.Duration
	reads   atomic.Uint64
}

// load is the loader every node passes to GetOrLoad.
func (s *source) load(ctx context.Context, key string) (string, error) {
	s.reads.Add(1)
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		}
	}
	out, err := s.ddb.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            map[string]types.AttributeValue{sourceKeyAttr: &types.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return "", fmt.Errorf("source of truth: %w", err)
	}
	if out.Item == nil {
		return initialValue(key), nil
	}
	if d, ok := out.Item[sourceDelAttr].(*types.AttributeValueMemberBOOL); ok && d.Value {
		return "", tiered.ErrNotFound
	}
	v, ok := out.Item[sourceValAttr].(*types.AttributeValueMemberS)
	if !ok {
		return "", errors.New("source of truth: item without a value")
	}
	return v.Value, nil
}

// write stores value for key, or marks key deleted when del is true.
func (s *source) write(ctx context.Context, key, value string, del bool) error {
	item := map[string]types.AttributeValue{sourceKeyAttr: &types.AttributeValueMemberS{Value: key}}
	if del {
		item[sourceDelAttr] = &types.AttributeValueMemberBOOL{Value: true}
	} else {
		item[sourceValAttr] = &types.AttributeValueMemberS{Value: value}
	}
	_, err := s.ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item})
	if err != nil {
		return fmt.Errorf("source of truth: %w", err)
	}
	return nil
}

// createSourceTable creates the source table (on-demand, key "id").
func createSourceTable(ctx context.Context, ddb *dynamodb.Client, table string) error {
	_, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(sourceKeyAttr), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(sourceKeyAttr), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("create source table: %w", err)
	}
	w := dynamodb.NewTableExistsWaiter(ddb)
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute); err != nil {
		return fmt.Errorf("wait for source table: %w", err)
	}
	return nil
}
