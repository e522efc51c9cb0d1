package dynamolocal

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// WarmupTimeout bounds the whole warm-up of a fresh server.
const WarmupTimeout = 2 * time.Minute

// warmupTable is created, exercised and deleted by warmUp. Tests name their
// tables with TableName ("t<n>_..."), so it never collides with one of them.
const warmupTable = "dynamolocal-warmup"

// Warm-up sizes: enough calls that the JVM interprets and then compiles the
// request paths the cache uses, few enough to finish in a few seconds.
const (
	warmupKeys   = 20
	warmupRounds = 3
)

// warmUp exercises the operations tieredcache uses on a freshly started
// server, then deletes its table. A cold DynamoDB Local JVM answers its first
// requests of each kind in hundreds of milliseconds (class loading,
// interpretation); a test using production deadlines (500 ms per call) would
// fail on them. Afterwards the first request of a test is as fast as any
// other. It writes nothing to stdout or stderr.
func (s *Server) warmUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, WarmupTimeout)
	defer cancel()
	cfg := AWSConfig(s.Endpoint())
	ddb := dynamodb.NewFromConfig(cfg)
	streams := dynamodbstreams.NewFromConfig(cfg)
	table := aws.String(warmupTable)
	fail := func(step string, err error) error {
		return fmt.Errorf("dynamolocal: warm-up %s: %w", step, err)
	}

	created, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            table,
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		StreamSpecification: &types.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: types.StreamViewTypeNewImage,
		},
	})
	if err != nil {
		return fail("CreateTable", err)
	}
	// With -dbPath the table would outlive this process: always drop it.
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer dcancel()
		_, _ = ddb.DeleteTable(dctx, &dynamodb.DeleteTableInput{TableName: table})
	}()

	key := func(i int) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k" + strconv.Itoa(i)}}
	}
	for round := 0; round < warmupRounds; round++ {
		keys := make([]map[string]types.AttributeValue, 0, warmupKeys)
		for i := 0; i < warmupKeys; i++ {
			// The cache's write shape: ADD a version, SET a value, with a condition.
			_, err := ddb.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName:           table,
				Key:                 key(i),
				UpdateExpression:    aws.String("SET #v = :v ADD #ver :one"),
				ConditionExpression: aws.String("attribute_not_exists(#ver) OR #ver >= :zero"),
				ExpressionAttributeNames: map[string]string{
					"#v": "v", "#ver": "ver",
				},
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":v":    &types.AttributeValueMemberB{Value: []byte("warm-up value " + strconv.Itoa(round))},
					":one":  &types.AttributeValueMemberN{Value: "1"},
					":zero": &types.AttributeValueMemberN{Value: "0"},
				},
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			})
			if err != nil {
				return fail("UpdateItem", err)
			}
			if _, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: table, Key: key(i), ConsistentRead: aws.Bool(true)}); err != nil {
				return fail("GetItem", err)
			}
			keys = append(keys, key(i))
		}
		if _, err := ddb.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{warmupTable: {Keys: keys, ConsistentRead: aws.Bool(true)}},
		}); err != nil {
			return fail("BatchGetItem", err)
		}
	}

	// One stream round: describe, iterate, read.
	if created.TableDescription == nil || created.TableDescription.LatestStreamArn == nil {
		return fail("CreateTable", fmt.Errorf("no stream ARN in the answer"))
	}
	desc, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: created.TableDescription.LatestStreamArn})
	if err != nil {
		return fail("DescribeStream", err)
	}
	for _, sh := range desc.StreamDescription.Shards {
		it, err := streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
			StreamArn:         created.TableDescription.LatestStreamArn,
			ShardId:           sh.ShardId,
			ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			return fail("GetShardIterator", err)
		}
		if _, err := streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator}); err != nil {
			return fail("GetRecords", err)
		}
	}
	return nil
}
