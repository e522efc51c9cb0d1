package invalidation

import (
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/tieredcache/tieredcache/internal/sdklog"
)

// NewStreamsClient builds a DynamoDB Streams client suited to the consumer: the
// SDK does not retry (RetryMaxAttempts = 1) because the consumer retries every
// call itself with its own capped, jittered backoff and keeps polling; SDK
// retries would only hide throttling from Stats and stretch each call. It
// logs through cfg.Logger without the SDK's checksum warning of
// aws-sdk-go-v2 issue #3545 (see internal/sdklog); pass WithLogger to log
// through a *slog.Logger instead (the SDK's default logger writes to stderr).
func NewStreamsClient(cfg aws.Config, optFns ...func(*dynamodbstreams.Options)) *dynamodbstreams.Client {
	fns := append([]func(*dynamodbstreams.Options){func(o *dynamodbstreams.Options) {
		o.RetryMaxAttempts = 1
		o.Logger = sdklog.Filter(o.Logger)
	}}, optFns...)
	return dynamodbstreams.NewFromConfig(cfg, fns...)
}

// WithLogger makes a Streams client log through l (nil: nowhere) rather
// than the aws.Config's logger: the SDK's warnings at warn, the rest and the
// checksum warning of aws-sdk-go-v2 issue #3545 at debug.
func WithLogger(l *slog.Logger) func(*dynamodbstreams.Options) {
	return func(o *dynamodbstreams.Options) { o.Logger = sdklog.Slog(l) }
}
