package dynamolocal

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// SetStream turns table's stream on (with view) or off (view ""), with a raw
// UpdateTable, and waits until the table is ACTIVE again: for tests of
// stream loss (the library itself never changes a table's stream). Enabling
// gives a new stream ARN: readers of the old one lose track.
func SetStream(ctx context.Context, client *dynamodb.Client, table string, view types.StreamViewType) error {
	spec := &types.StreamSpecification{StreamEnabled: aws.Bool(view != "")}
	if view != "" {
		spec.StreamViewType = view
	}
	if _, err := client.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String(table), StreamSpecification: spec}); err != nil {
		return err
	}
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return err
		}
		if out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond): // DynamoDB has no event for it: poll
		}
	}
}
