package tiered_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// spoilUpdates makes every UpdateItem request invalid while on is set: it
// adds an expression attribute value the expressions do not use, which
// DynamoDB answers with a ValidationException (a real 400 from DynamoDB
// Local, not a scripted error).
func spoilUpdates(on *atomic.Bool) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("tieredtest.spoil",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if u, ok := in.Parameters.(*dynamodb.UpdateItemInput); ok && on.Load() {
					u.ExpressionAttributeValues[":spoiled"] = &types.AttributeValueMemberS{Value: "x"}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	}
}

// TestInvalidRequestIsNotAnOutage: a request DynamoDB rejects as invalid is a
// typed error (l2.ErrInvalidRequest, *l2.RequestError), never
// ErrL2Unavailable, and never opens the breaker: writes work again as soon as
// the requests are valid.
func TestInvalidRequestIsNotAnOutage(t *testing.T) {
	cfg := awsConfig(t)
	var spoil atomic.Bool
	table := dynamolocal.TableName(t)
	n := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, func(do *dynamodb.Options) { do.APIOptions = append(do.APIOptions, spoilUpdates(&spoil)) })
		o.BreakerFailures = 2
	})
	ctx := testContext(t)
	spoil.Store(true)
	for i := range 10 {
		err := n.Set(ctx, "k"+strconv.Itoa(i), "v")
		var re *l2.RequestError
		if !errors.Is(err, l2.ErrInvalidRequest) || !errors.As(err, &re) || re.Code != "ValidationException" ||
			errors.Is(err, tiered.ErrL2Unavailable) {
			t.Fatalf("Set %d with an invalid request = %v; want *l2.RequestError (ValidationException), not ErrL2Unavailable", i, err)
		}
		if err := n.Delete(ctx, "k"); !errors.Is(err, l2.ErrInvalidRequest) || errors.Is(err, tiered.ErrL2Unavailable) {
			t.Fatalf("Delete with an invalid request = %v", err)
		}
	}
	if st := n.Stats(); st.Breaker.Opens != 0 || st.Breaker.State != "closed" {
		t.Fatalf("breaker %s after %d opens: invalid requests were taken for an outage", st.Breaker.State, st.Breaker.Opens)
	}
	spoil.Store(false)
	if err := n.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set once requests are valid: %v", err)
	}
}

// TestCorruptItemsNeverDisableWrites: Sets and Deletes over foreign or
// corrupt items (written with the raw SDK) replace them and succeed, the
// breaker stays closed, and reads of corrupt items (GetMany) count each
// once and load it, replacing it in L2.
func TestCorruptItemsNeverDisableWrites(t *testing.T) {
	cfg := awsConfig(t)
	table := dynamolocal.TableName(t)
	n := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) { o.BreakerFailures = 2 })
	raw := dynamodb.NewFromConfig(cfg)
	ctx := testContext(t)
	putRaw := func(key string, item map[string]types.AttributeValue) {
		item["pk"] = &types.AttributeValueMemberS{Value: "#" + key}
		if _, err := raw.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	shapes := []map[string]types.AttributeValue{
		{"v": &types.AttributeValueMemberB{Value: []byte(`"x"`)}, "ver": &types.AttributeValueMemberS{Value: "3"}},
		{"v": &types.AttributeValueMemberB{Value: []byte(`"x"`)}},
		{"v": &types.AttributeValueMemberS{Value: "x"}, "ver": &types.AttributeValueMemberN{Value: "3"}},
		{"v": &types.AttributeValueMemberB{Value: []byte(`"x"`)}, "ver": &types.AttributeValueMemberN{Value: "3"}, "exp": &types.AttributeValueMemberS{Value: "soon"}},
		{"neg": &types.AttributeValueMemberS{Value: "yes"}, "ver": &types.AttributeValueMemberN{Value: "3"}},
		{"lease": &types.AttributeValueMemberN{Value: "1"}, "lexp": &types.AttributeValueMemberS{Value: "x"}},
	}
	for round := range 2 {
		for i, item := range shapes {
			key := "w" + strconv.Itoa(i)
			putRaw(key, item)
			var err error
			if round == 0 {
				err = n.Set(ctx, key, "mine")
			} else {
				err = n.Delete(ctx, key)
			}
			if err != nil {
				t.Fatalf("round %d, shape %d: %v", round, i, err)
			}
		}
	}
	if st := n.Stats(); st.Breaker.Opens != 0 || st.L2.Corrupt != 0 {
		t.Fatalf("Stats = %+v; want the breaker never opened, nothing read as corrupt", st)
	}

	// Reads: each corrupt item counts once, is a miss that goes to the
	// loader, and its fill replaces it.
	keys := make([]string, len(shapes))
	for i, item := range shapes {
		keys[i] = "r" + strconv.Itoa(i)
		putRaw(keys[i], item)
	}
	var loaded atomic.Int64
	got, err := n.GetMany(ctx, keys, func(_ context.Context, ks []string) (map[string]string, error) {
		loaded.Add(int64(len(ks)))
		m := map[string]string{}
		for _, k := range ks {
			m[k] = "loaded"
		}
		return m, nil
	})
	if err != nil || len(got) != len(keys) || loaded.Load() != int64(len(keys)) {
		t.Fatalf("GetMany = %v, %v after %d loads; want every key loaded", got, err, loaded.Load())
	}
	if st := n.Stats(); st.L2.Corrupt != uint64(len(keys)) || st.L2.Misses != 0 {
		t.Fatalf("L2Corrupt = %d, L2Misses = %d; want %d corrupt items counted once each, no misses", st.L2.Corrupt, st.L2.Misses, len(keys))
	}
	// GetOrLoad, with and without leases: counted once, loaded, replaced.
	noLeases := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) { o.DisableLeases = true })
	for i, nd := range []*node{n, noLeases} {
		key := "g" + strconv.Itoa(i)
		putRaw(key, shapes[0])
		before := nd.Stats().L2.Corrupt
		if v, err := nd.GetOrLoad(ctx, key, constLoader("loaded")); err != nil || v != "loaded" {
			t.Fatalf("GetOrLoad over a corrupt item = %q, %v", v, err)
		}
		if got := nd.Stats().L2.Corrupt - before; got != 1 {
			t.Fatalf("GetOrLoad counted %d corrupt items, want 1", got)
		}
		keys = append(keys, key)
	}
	tbl := l2Table(t, table)
	for _, k := range keys {
		if it, err := tbl.Get(ctx, k); err != nil || string(it.Value) != "loaded" {
			t.Errorf("%s in L2 = %+v, %v; want the fill to have replaced the corrupt item", k, it, err)
		}
	}
}

// TestValueTooLargeBeforeTheBreaker: an oversized value is refused with
// l2.ErrValueTooLarge even while the breaker is open.
func TestValueTooLargeBeforeTheBreaker(t *testing.T) {
	cfg := awsConfig(t)
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		o.BreakerFailures = 1
		o.BreakerCooldown = time.Hour
	})
	ctx := testContext(t)
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: errors.New("injected outage")})
	if err := n.Set(ctx, "k", "v"); !errors.Is(err, tiered.ErrL2Unavailable) {
		t.Fatalf("Set during the outage = %v", err)
	}
	if st := n.Stats(); st.Breaker.State != "open" {
		t.Fatalf("breaker %s; want open", st.Breaker.State)
	}
	big := strings.Repeat("x", 500*1024)
	if err := n.Set(ctx, "big", big); !errors.Is(err, l2.ErrValueTooLarge) || errors.Is(err, tiered.ErrL2Unavailable) {
		t.Fatalf("Set of 500 KB with the breaker open = %v; want l2.ErrValueTooLarge", err)
	}
}

// TestBigValuesComeBackWithDefaults: 100 values of 300 KB written by one node
// come back from L2 through another node's GetMany with default options
// (CallTimeout included): 0 loader calls, no L2 errors, breaker closed.
func TestBigValuesComeBackWithDefaults(t *testing.T) {
	cfg := awsConfig(t)
	table := dynamolocal.TableName(t)
	writer := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB = nil // built by tiered, with the defaults
		o.CallTimeout = 10 * time.Second
		o.DisableInvalidation = true
	})
	ctx := testContext(t)
	keys := make([]string, 100)
	want := map[string]string{}
	for i := range keys {
		keys[i] = "big" + strconv.Itoa(i)
		want[keys[i]] = string(bytes.Repeat([]byte{'a' + byte(i%26)}, 300*1024))
		if err := writer.Set(ctx, keys[i], want[keys[i]]); err != nil {
			t.Fatalf("Set %s: %v", keys[i], err)
		}
	}
	reader := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB = nil  // built by tiered, with the defaults
		o.CallTimeout = 0 // the default (newNodeAt sets a generous one for other tests)
		o.DisableInvalidation = true
	})
	var loads atomic.Int64
	got, err := reader.GetMany(ctx, keys, func(_ context.Context, ks []string) (map[string]string, error) {
		loads.Add(int64(len(ks)))
		return nil, errors.New("the loader must not be called")
	})
	if err != nil || len(got) != len(keys) || loads.Load() != 0 {
		t.Fatalf("GetMany = %d values, %v, %d keys loaded; want %d values from L2, 0 loaded", len(got), err, loads.Load(), len(keys))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %d bytes, wrong value", k, len(got[k]))
		}
	}
	if st := reader.Stats(); st.L2.Errors != 0 || st.Breaker.Opens != 0 || st.L2.Hits != uint64(len(keys)) {
		t.Fatalf("reader Stats: L2Errors %d, BreakerOpens %d, L2Hits %d; want 0, 0, %d", st.L2.Errors, st.Breaker.Opens, st.L2.Hits, len(keys))
	}
}

// TestNothingOnStderr: a cache whose clients tiered builds from an
// aws.Config whose logger writes to stderr (as config.LoadDefaultConfig's
// does) writes nothing there through a ConditionalCheckFailed response
// (aws-sdk-go-v2 issue #3545): the SDK logs through Options.Logger, the
// known warning at debug.
func TestNothingOnStderr(t *testing.T) {
	cfg := awsConfig(t)
	table := dynamolocal.TableName(t)
	raw := dynamodb.NewFromConfig(cfg)
	first := newNodeAt(t, cfg, table, nil) // creates the table
	_ = first

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	oldStderr := os.Stderr
	os.Stderr = w
	var captured bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&captured, r); close(copied) }()
	restore := func() string {
		if os.Stderr == w {
			os.Stderr = oldStderr
			_ = w.Close()
			<-copied
			_ = r.Close()
		}
		return captured.String()
	}
	defer restore()

	cfg.Logger = logging.NewStandardLogger(os.Stderr)
	var warnings, debug atomic.Int64
	logger := slog.New(levelCounter{warn: &warnings, debug: &debug})
	n := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB, o.Streams = nil, nil // built by tiered
		o.Logger = logger
	})
	ctx := testContext(t)
	// A corrupt item: the lease taken on the miss meets it with a
	// ConditionalCheckFailed response, then replaces it.
	if _, err := raw.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "#k"}, "v": &types.AttributeValueMemberB{Value: []byte("x")},
		"ver": &types.AttributeValueMemberS{Value: "1"},
	}}); err != nil {
		t.Fatal(err)
	}
	if v, err := n.GetOrLoad(ctx, "k", constLoader("loaded")); err != nil || v != "loaded" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if got := restore(); got != "" {
		t.Fatalf("stderr got %q; want nothing", got)
	}
	if warnings.Load() != 0 || debug.Load() == 0 {
		t.Fatalf("the logger got %d SDK records above debug, %d at debug; want none above, the #3545 warning at debug", warnings.Load(), debug.Load())
	}
}

// levelCounter counts the SDK's records: above debug, and at debug.
type levelCounter struct {
	warn, debug *atomic.Int64
}

func (h levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h levelCounter) Handle(_ context.Context, r slog.Record) error {
	switch {
	case !strings.HasPrefix(r.Message, "aws-sdk: "):
	case r.Level > slog.LevelDebug:
		h.warn.Add(1)
	default:
		h.debug.Add(1)
	}
	return nil
}
func (h levelCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h levelCounter) WithGroup(string) slog.Handler      { return h }
