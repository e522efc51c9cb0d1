package invalidation

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
)

// NewStreamsClient builds a DynamoDB Streams client suited to the consumer: the
// SDK does not retry (RetryMaxAttempts = 1) because the consumer retries every
// call itself with its own capped, jittered backoff and keeps polling; SDK
// retries would only hide throttling from Stats and stretch each call.
func NewStreamsClient(cfg aws.Config, optFns ...func(*dynamodbstreams.Options)) *dynamodbstreams.Client {
	fns := append([]func(*dynamodbstreams.Options){func(o *dynamodbstreams.Options) {
		o.RetryMaxAttempts = 1
	}}, optFns...)
	return dynamodbstreams.NewFromConfig(cfg, fns...)
}
