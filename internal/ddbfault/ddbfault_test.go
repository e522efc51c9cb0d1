package ddbfault_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, dynamolocal.LeakOptions()...) }

// fakeDDB is a DynamoDB JSON 1.0 endpoint that answers GetItem with an empty
// item and BatchGetItem with every key it was asked for, and records what it
// received.
type fakeDDB struct {
	mu       sync.Mutex
	requests map[string]int
	keysSeen []string
}

func (f *fakeDDB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests[op]++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	switch op {
	case "BatchGetItem":
		var in struct {
			RequestItems map[string]struct {
				Keys []map[string]map[string]string
			}
		}
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp := map[string]any{"UnprocessedKeys": map[string]any{}}
		responses := map[string]any{}
		for table, ka := range in.RequestItems {
			items := []any{}
			for _, k := range ka.Keys {
				f.mu.Lock()
				f.keysSeen = append(f.keysSeen, k["pk"]["S"])
				f.mu.Unlock()
				items = append(items, k)
			}
			responses[table] = items
		}
		resp["Responses"] = responses
		_ = json.NewEncoder(w).Encode(resp)
	default:
		_, _ = w.Write([]byte(`{}`))
	}
}

func (f *fakeDDB) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[op]
}

func setup(t *testing.T, attempts int) (*ddbfault.Injector, *dynamodb.Client, *fakeDDB) {
	t.Helper()
	fake := &fakeDDB{requests: map[string]int{}}
	srv := httptest.NewServer(fake)
	inj := ddbfault.New()
	tr := &http.Transport{}
	client := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("k", "s", ""),
		BaseEndpoint: aws.String(srv.URL),
		HTTPClient:   &http.Client{Transport: tr},
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.MaxBackoff = time.Millisecond
		}),
	}, inj.Options)
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return inj, client, fake
}

func getItem(ctx context.Context, c *dynamodb.Client) error {
	_, err := c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String("tbl"),
		Key:       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}},
	})
	return err
}

func TestThrottleIsRetriedBySDK(t *testing.T) {
	inj, c, fake := setup(t, 2)
	inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true, Times: 1})
	if err := getItem(t.Context(), c); err != nil {
		t.Fatalf("GetItem after one throttled attempt: %v", err)
	}
	if got := inj.Attempts("GetItem"); got != 2 {
		t.Errorf("attempts = %d, want 2 (throttled, then retried)", got)
	}
	if got := fake.count("GetItem"); got != 1 {
		t.Errorf("server saw %d GetItem, want 1", got)
	}
	if got := inj.Injected(); got != 1 {
		t.Errorf("Injected = %d, want 1", got)
	}
}

func TestThrottleExhaustsRetries(t *testing.T) {
	inj, c, fake := setup(t, 2)
	inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true, Times: 2})
	err := getItem(t.Context(), c)
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) {
		t.Fatalf("GetItem = %v, want ProvisionedThroughputExceededException", err)
	}
	if fake.count("GetItem") != 0 {
		t.Errorf("server saw a GetItem; every attempt should have been faulted")
	}
	// The rule is used up: the next call passes.
	if err := getItem(t.Context(), c); err != nil {
		t.Fatalf("GetItem after the rule retired: %v", err)
	}
}

func TestErrMatchesOnlyItsOperation(t *testing.T) {
	inj, c, _ := setup(t, 1)
	boom := errors.New("boom")
	remove := inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: boom})
	if err := getItem(t.Context(), c); err != nil {
		t.Fatalf("GetItem hit by an UpdateItem rule: %v", err)
	}
	_, err := c.UpdateItem(t.Context(), &dynamodb.UpdateItemInput{
		TableName: aws.String("tbl"),
		Key:       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}},
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateItem = %v, want the injected error", err)
	}
	remove()
	if _, err := c.UpdateItem(t.Context(), &dynamodb.UpdateItemInput{
		TableName: aws.String("tbl"),
		Key:       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}},
	}); err != nil {
		t.Fatalf("UpdateItem after remove: %v", err)
	}
}

func TestLatency(t *testing.T) {
	inj, c, _ := setup(t, 1)
	inj.Add(ddbfault.Rule{Latency: 80 * time.Millisecond, Times: 1})
	inj.Add(ddbfault.Rule{Latency: 5 * time.Second})
	start := time.Now()
	if err := getItem(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("call took %v, want >= 80ms of injected latency", d)
	}
	// A deadline shorter than the latency ends the call early.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := getItem(ctx, c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetItem with a short deadline = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d >= 2*time.Second {
		t.Errorf("call with a 10ms deadline took %v", d)
	}
}

func batch(ctx context.Context, c *dynamodb.Client, n int) (*dynamodb.BatchGetItemOutput, error) {
	keys := make([]map[string]types.AttributeValue, n)
	for i := range keys {
		keys[i] = map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: string(rune('a' + i))}}
	}
	return c.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
		RequestItems: map[string]types.KeysAndAttributes{"tbl": {Keys: keys}},
	})
}

func TestUnprocessedKeys(t *testing.T) {
	inj, c, fake := setup(t, 1)
	inj.Add(ddbfault.Rule{Op: "BatchGetItem", Unprocessed: 2, Times: 1})
	out, err := batch(t.Context(), c, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(out.Responses["tbl"]); got != 3 {
		t.Errorf("responses = %d, want 3", got)
	}
	un := out.UnprocessedKeys["tbl"].Keys
	if len(un) != 2 {
		t.Fatalf("unprocessed = %d keys, want 2", len(un))
	}
	for i, want := range []string{"d", "e"} {
		if got := un[i]["pk"].(*types.AttributeValueMemberS).Value; got != want {
			t.Errorf("unprocessed[%d] = %q, want %q", i, got, want)
		}
	}
	fake.mu.Lock()
	seen := strings.Join(fake.keysSeen, "")
	fake.mu.Unlock()
	if seen != "abc" {
		t.Errorf("server was sent keys %q, want only the 3 not withheld", seen)
	}

	// All keys withheld: DynamoDB is not called at all.
	inj.Add(ddbfault.Rule{Op: "BatchGetItem", Unprocessed: -1, Times: 1})
	out, err = batch(t.Context(), c, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Responses["tbl"]) != 0 || len(out.UnprocessedKeys["tbl"].Keys) != 4 {
		t.Errorf("all withheld: %d responses, %d unprocessed; want 0 and 4",
			len(out.Responses["tbl"]), len(out.UnprocessedKeys["tbl"].Keys))
	}
	if got := fake.count("BatchGetItem"); got != 1 {
		t.Errorf("server saw %d BatchGetItem, want 1", got)
	}
	// Rules used up: the next batch is untouched.
	out, err = batch(t.Context(), c, 4)
	if err != nil || len(out.Responses["tbl"]) != 4 || len(out.UnprocessedKeys["tbl"].Keys) != 0 {
		t.Fatalf("untouched batch: %v, %d responses, %d unprocessed", err, len(out.Responses["tbl"]), len(out.UnprocessedKeys["tbl"].Keys))
	}
}

func TestConcurrentTimesIsExact(t *testing.T) {
	inj, c, fake := setup(t, 1)
	inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true, Times: 10})
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if getItem(t.Context(), c) != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != 10 || fake.count("GetItem") != 30 || inj.Injected() != 10 {
		t.Fatalf("failed %d, served %d, injected %d; want 10, 30, 10", failed.Load(), fake.count("GetItem"), inj.Injected())
	}
	inj.Reset()
	inj.Add(ddbfault.Rule{Throttle: true})
	inj.Reset()
	if err := getItem(t.Context(), c); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
}
