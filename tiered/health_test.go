package tiered_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// probe serves one request to h and decodes its body.
func probe(t *testing.T, h http.Handler, method string) (int, tiered.Health, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/healthz", nil))
	var got tiered.Health
	if method != http.MethodHead {
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("body %q: %v", rec.Body.String(), err)
		}
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	return rec.Code, got, rec.Body.String()
}

// TestHealthHandler: 200 once the stream consumer trusts L1 and the breaker
// is closed; 503 naming the cause while the stream cannot be read (trust
// lapses), again 200 when it can, 503 while the breaker is open, and 503
// after Close.
func TestHealthHandler(t *testing.T) {
	cfg := awsConfig(t)
	var streamDown atomic.Bool
	failGetRecords := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("tieredtest.streamdown",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if streamDown.Load() && middleware.GetOperationName(ctx) == "GetRecords" {
					return middleware.InitializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{Code: "InternalServerError", Message: "injected"}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		o.Streams = invalidation.NewStreamsClient(cfg, func(o *dynamodbstreams.Options) {
			o.APIOptions = append(o.APIOptions, failGetRecords)
		})
		o.BreakerFailures = 1
		o.BreakerCooldown = time.Hour // stays open until the test ends
	})
	h := n.HealthHandler()
	ready := func() bool { return n.Health().Ready }

	waitFor(t, 30*time.Second, "the cache to be ready", ready)
	code, got, body := probe(t, h, http.MethodGet)
	if code != http.StatusOK || !got.Ready || got.Breaker != "closed" || !got.Stream.Enabled || !got.Stream.Trusted || got.Stream.Shards < 1 || len(got.Reasons) != 0 {
		t.Fatalf("healthy cache: %d %s", code, body)
	}
	if code, _, _ := probe(t, h, http.MethodHead); code != http.StatusOK {
		t.Errorf("HEAD = %d; want 200", code)
	}

	streamDown.Store(true)
	waitFor(t, 30*time.Second, "trust to lapse", func() bool { return !ready() })
	code, got, body = probe(t, h, http.MethodGet)
	if code != http.StatusServiceUnavailable || got.Ready || got.Stream.Trusted || got.Breaker != "closed" ||
		!slices.ContainsFunc(got.Reasons, func(r string) bool { return strings.Contains(r, "not trusted") }) {
		t.Fatalf("stream down: %d %s; want 503, not trusted", code, body)
	}
	streamDown.Store(false)
	waitFor(t, 30*time.Second, "trust to come back", ready)

	inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: throttlingException()})
	if err := n.Set(testContext(t), "k", "v"); err == nil {
		t.Fatal("Set succeeded under a throttle rule")
	}
	waitFor(t, 30*time.Second, "the breaker to open", func() bool { return n.Stats().Breaker.State == "open" })
	code, got, body = probe(t, h, http.MethodGet)
	if code != http.StatusServiceUnavailable || got.Ready || got.Breaker != "open" ||
		!slices.ContainsFunc(got.Reasons, func(r string) bool { return strings.Contains(r, "breaker open") }) {
		t.Fatalf("breaker open: %d %s; want 503, breaker open", code, body)
	}

	_ = n.Close()
	if code, got, body = probe(t, h, http.MethodGet); code != http.StatusServiceUnavailable || !got.Closed {
		t.Fatalf("closed: %d %s; want 503, closed", code, body)
	}
}

// TestHealthWithoutStream: without a stream consumer nothing is expected of
// the stream: ready at once, trusted.
func TestHealthWithoutStream(t *testing.T) {
	n := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) { o.DisableInvalidation = true })
	code, got, body := probe(t, n.HealthHandler(), http.MethodGet)
	if code != http.StatusOK || !got.Ready || got.Stream.Enabled || !got.Stream.Trusted {
		t.Fatalf("%d %s; want 200, stream disabled and trusted", code, body)
	}
}
