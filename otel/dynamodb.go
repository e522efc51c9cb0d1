package tieredotel

import (
	"context"
	"errors"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// durationBuckets (seconds) span a loopback DynamoDB Local call (under a
// millisecond) to a call at its hard deadline (20 × CallTimeout = 10 s).
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// InstrumentDynamoDB returns a DynamoDB client option (for l2.NewClient, or
// dynamodb.NewFromConfig) that makes one client span per API call, named
// "DynamoDB.<Operation>", and records its duration in the histogram
// tieredcache.dynamodb.duration (seconds; attributes operation and outcome:
// ok, condition_failed or error). A call is the whole operation, the SDK's
// retries inside it included. Give the client to tiered.Options.DynamoDB: a
// Cache calls it only off the L1-hit path (misses, writes, background work).
//
// A failed condition is an answer, not an error: its span has no error
// status. Spans carry the operation, the table and the request id, and for
// errors the error code; never a key, a value or an error message (which may
// quote one).
func InstrumentDynamoDB(opts ...Option) func(*dynamodb.Options) {
	cfg := newConfig(opts)
	tracer := cfg.tp.Tracer(ScopeName)
	hist, err := cfg.mp.Meter(ScopeName).Float64Histogram("tieredcache.dynamodb.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of DynamoDB API calls, retries inside a call included."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		hist = nil // a meter that refuses the instrument: spans only
	}
	base := append([]attribute.KeyValue{
		attribute.String("rpc.system", "aws-api"), attribute.String("rpc.service", "DynamoDB"),
	}, cfg.attrs...)
	mw := middleware.InitializeMiddlewareFunc("tieredotel", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		op := middleware.GetOperationName(ctx)
		attrs := append(append(make([]attribute.KeyValue, 0, len(base)+3), base...), attribute.String("rpc.method", op))
		if tables := tableNames(in.Parameters); len(tables) > 0 {
			attrs = append(attrs, attribute.StringSlice("aws.dynamodb.table_names", tables))
		}
		ctx, span := tracer.Start(ctx, "DynamoDB."+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
		start := time.Now()
		out, md, err := next.HandleInitialize(ctx, in)
		elapsed := time.Since(start)
		if id, ok := awsmiddleware.GetRequestIDMetadata(md); ok {
			span.SetAttributes(attribute.String("aws.request_id", id))
		}
		outcome := "ok"
		if err != nil {
			code := errorCode(err)
			if code == "ConditionalCheckFailedException" || code == "TransactionCanceledException" {
				outcome = "condition_failed"
			} else {
				outcome = "error"
				span.SetStatus(codes.Error, code)
			}
			span.SetAttributes(attribute.String("error.type", code))
		}
		span.End()
		if hist != nil {
			hist.Record(ctx, elapsed.Seconds(), metric.WithAttributes(append(append([]attribute.KeyValue{}, cfg.attrs...),
				attribute.String("operation", op), attribute.String("outcome", outcome))...))
		}
		return out, md, err
	})
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(mw, middleware.Before)
		})
	}
}

// errorCode names err without its message: the API error code, or the
// context's error, or "other".
func errorCode(err error) string {
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae):
		return ae.ErrorCode()
	case errors.Is(err, context.DeadlineExceeded):
		return "context.DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		return "context.Canceled"
	}
	return "other"
}

func tableNames(params any) []string {
	switch p := params.(type) {
	case *dynamodb.GetItemInput:
		return str(p.TableName)
	case *dynamodb.UpdateItemInput:
		return str(p.TableName)
	case *dynamodb.PutItemInput:
		return str(p.TableName)
	case *dynamodb.DeleteItemInput:
		return str(p.TableName)
	case *dynamodb.DescribeTableInput:
		return str(p.TableName)
	case *dynamodb.BatchGetItemInput:
		out := make([]string, 0, len(p.RequestItems))
		for t := range p.RequestItems {
			out = append(out, t)
		}
		return out
	}
	return nil
}

func str(s *string) []string {
	if s == nil {
		return nil
	}
	return []string{*s}
}
