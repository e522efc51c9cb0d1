package l2_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
)

// scriptedEndpoint is an HTTP server standing in for DynamoDB: it answers
// every GetItem with one item whose value is value, sent as the handler
// chooses. release unblocks handlers that wait.
func scriptedEndpoint(t *testing.T, serve func(w http.ResponseWriter, r *http.Request, body []byte, release <-chan struct{})) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		serve(w, r, nil, release)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: handlers return, then the server closes
	return srv.URL
}

// itemJSON is a GetItem answer holding value for ns#k, at version 1.
func itemJSON(value []byte) []byte {
	return []byte(fmt.Sprintf(`{"Item":{"pk":{"S":"ns#k"},"v":{"B":"%s"},"ver":{"N":"1"}}}`,
		base64.StdEncoding.EncodeToString(value)))
}

func watchdogTable(t *testing.T, endpoint string, callTimeout time.Duration, builtByUs bool) *l2.Table {
	t.Helper()
	cfg := dynamolocal.AWSConfig(endpoint)
	var api l2.API = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	if builtByUs {
		api = l2.NewClient(cfg)
	}
	tbl, err := l2.New(l2.Options{Client: api, Table: "tbl", Namespace: "ns", CallTimeout: callTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// TestProgressDeadline: CallTimeout bounds the wait for the response to
// start and each gap between its bytes, not the whole answer; for clients
// NewClient builds and for plain SDK clients alike.
func TestProgressDeadline(t *testing.T) {
	const callTimeout = time.Second
	value := bytes.Repeat([]byte("0123456789"), 300)
	for _, builtByUs := range []bool{true, false} {
		t.Run("NewClient="+strconv.FormatBool(builtByUs), func(t *testing.T) {
			// A steady trickle: 3 s in all (3 x CallTimeout), 20 ms between
			// chunks. A fixed deadline would cut it; progress keeps it alive.
			trickle := scriptedEndpoint(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ <-chan struct{}) {
				body := itemJSON(value)
				chunk := len(body)/150 + 1
				for i := 0; i < len(body); i += chunk {
					_, _ = w.Write(body[i:min(i+chunk, len(body))])
					w.(http.Flusher).Flush()
					time.Sleep(20 * time.Millisecond)
				}
			})
			it, err := watchdogTable(t, trickle, callTimeout, builtByUs).Get(ctx(t), "k")
			if err != nil || !bytes.Equal(it.Value, value) || it.Version != 1 {
				t.Fatalf("Get of a slow but steady answer = %d bytes, %v; want the value", len(it.Value), err)
			}

			// No first byte: the call ends with ErrTimeout.
			silent := scriptedEndpoint(t, func(w http.ResponseWriter, r *http.Request, _ []byte, release <-chan struct{}) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			})
			if _, err := watchdogTable(t, silent, callTimeout, builtByUs).Get(ctx(t), "k"); !errors.Is(err, l2.ErrTimeout) ||
				!errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				t.Fatalf("Get with no answer = %v; want ErrTimeout (DeadlineExceeded, not Canceled)", err)
			}

			// Half an answer, then nothing: the gap ends it.
			stall := scriptedEndpoint(t, func(w http.ResponseWriter, r *http.Request, _ []byte, release <-chan struct{}) {
				body := itemJSON(value)
				_, _ = w.Write(body[:len(body)/2])
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-release:
				}
			})
			if _, err := watchdogTable(t, stall, callTimeout, builtByUs).Get(ctx(t), "k"); !errors.Is(err, l2.ErrTimeout) {
				t.Fatalf("Get of a stalled answer = %v; want ErrTimeout", err)
			}
		})
	}
}

// TestBigBatchWithDefaultCallTimeout: 100 values of 300 KB (about 30 MB, two
// BatchGetItem pages of up to 16 MB) come back through BatchGet with the
// default CallTimeout, which a fixed 500 ms deadline per call did not allow.
func TestBigBatchWithDefaultCallTimeout(t *testing.T) {
	e := newEnv(t, nil) // writes with the test's generous CallTimeout
	c := ctx(t)
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = "big" + strconv.Itoa(i)
		val := bytes.Repeat([]byte{byte(i)}, 300*1024)
		if _, err := e.tbl.Put(c, keys[i], val, time.Hour); err != nil {
			t.Fatalf("Put %s: %v", keys[i], err)
		}
	}
	o := e.opts
	o.Client = l2.NewClient(dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint()))
	o.CallTimeout = 0 // the default
	reader, err := l2.New(o)
	if err != nil {
		t.Fatal(err)
	}
	m, err := reader.BatchGet(c, keys)
	if err != nil || len(m) != len(keys) {
		t.Fatalf("BatchGet = %d items, %v; want %d", len(m), err, len(keys))
	}
	for i, k := range keys {
		if v := m[k].Value; len(v) != 300*1024 || v[0] != byte(i) || v[len(v)-1] != byte(i) {
			t.Fatalf("%s: %d bytes, wrong value", k, len(v))
		}
	}
	if st := reader.Stats(); st.Errors != 0 {
		t.Errorf("reader Stats = %+v; want no errors", st)
	}
}
