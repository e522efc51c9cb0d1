package deploy_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

// call is one request a client sent, with the IAM resource it acts on.
type call struct {
	phase  string
	action string
	table  string // for table actions
	stream string // for stream actions; "" for GetRecords (its iterator names no ARN)
}

// recorder records, through an SDK middleware, every operation of the
// clients it is installed on, labelled with the current phase.
type recorder struct {
	phase atomic.Pointer[string]
	mu    sync.Mutex
	calls []call
}

func (r *recorder) setPhase(p string) { r.phase.Store(&p) }

func (r *recorder) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("deploytest.record",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c := call{phase: *r.phase.Load(), action: "dynamodb:" + middleware.GetOperationName(ctx)}
			switch p := in.Parameters.(type) {
			case *dynamodb.GetItemInput:
				c.table = aws.ToString(p.TableName)
			case *dynamodb.UpdateItemInput:
				c.table = aws.ToString(p.TableName)
			case *dynamodb.DescribeTableInput:
				c.table = aws.ToString(p.TableName)
			case *dynamodb.CreateTableInput:
				c.table = aws.ToString(p.TableName)
			case *dynamodb.UpdateTableInput:
				c.table = aws.ToString(p.TableName)
			case *dynamodb.DescribeTimeToLiveInput:
				c.table = aws.ToString(p.TableName)
			case *dynamodb.UpdateTimeToLiveInput:
				c.table = aws.ToString(p.TableName)
			case *dynamodb.BatchGetItemInput:
				for name := range p.RequestItems {
					c.table = name // one table per batch in this library; checked below
				}
				if len(p.RequestItems) != 1 {
					c.table = fmt.Sprintf("%d tables", len(p.RequestItems))
				}
			case *dynamodbstreams.DescribeStreamInput:
				c.stream = aws.ToString(p.StreamArn)
			case *dynamodbstreams.GetShardIteratorInput:
				c.stream = aws.ToString(p.StreamArn)
			case *dynamodbstreams.GetRecordsInput:
			default:
				c.table = fmt.Sprintf("unknown input %T", p)
			}
			r.mu.Lock()
			r.calls = append(r.calls, c)
			r.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type node struct {
	*tiered.Cache[string]
	events chan string
}

func newNode(t *testing.T, cfg aws.Config, rec *recorder, table string, create bool) (*node, error) {
	n := &node{events: make(chan string, 1024)}
	c, err := tiered.New(testCtx(t), tiered.Options[string]{
		Table: table, Namespace: "iam", CreateTable: create, AWS: &cfg,
		DynamoDB:    l2.NewClient(cfg, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, rec.add) }),
		Streams:     invalidation.NewStreamsClient(cfg, func(o *dynamodbstreams.Options) { o.APIOptions = append(o.APIOptions, rec.add) }),
		CallTimeout: 5 * time.Second,
		OnInvalidate: func(key string, _ time.Time) {
			select {
			case n.events <- key:
			default:
			}
		},
	})
	if err != nil {
		return nil, err
	}
	n.Cache = c
	t.Cleanup(func() { _ = c.Close() })
	return n, nil
}

func (n *node) awaitEvent(t *testing.T, key string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case k := <-n.events:
			if k == key {
				return
			}
		case <-timeout:
			t.Fatalf("no stream invalidation of %q within 30s", key)
		}
	}
}

// createFromCloudFormation creates the table the CloudFormation template
// describes, as CloudFormation would (CreateTable, then UpdateTimeToLive), with
// a client that is not recorded: this is the infrastructure tool's work.
func createFromCloudFormation(t *testing.T, ddb *dynamodb.Client, table string) {
	t.Helper()
	s := cfnTableSpec(t, loadCFN(t), loadCFN(t).Parameters["StreamViewType"].Default)
	in := &dynamodb.CreateTableInput{
		TableName:           aws.String(table),
		BillingMode:         types.BillingMode(s.BillingMode),
		KeySchema:           []types.KeySchemaElement{{AttributeName: aws.String(s.HashKey), KeyType: types.KeyTypeHash}},
		StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(s.StreamEnabled), StreamViewType: types.StreamViewType(s.StreamView)},
	}
	for name, typ := range s.Attributes {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeType(typ)})
	}
	ctx := testCtx(t)
	if _, err := ddb.CreateTable(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := dynamodb.NewTableExistsWaiter(ddb).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := ddb.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(s.TTLAttribute), Enabled: aws.Bool(s.TTLEnabled)}}); err != nil {
		t.Fatal(err)
	}
}

// shape is what matters of a table for the cache, to compare two tables.
func shape(t *testing.T, ddb *dynamodb.Client, table string) string {
	t.Helper()
	ctx := testCtx(t)
	d, err := ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := ddb.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, k := range d.Table.KeySchema {
		fmt.Fprintf(&b, "key %s %s; ", aws.ToString(k.AttributeName), k.KeyType)
	}
	for _, a := range d.Table.AttributeDefinitions {
		fmt.Fprintf(&b, "attr %s %s; ", aws.ToString(a.AttributeName), a.AttributeType)
	}
	if d.Table.BillingModeSummary != nil {
		fmt.Fprintf(&b, "billing %s; ", d.Table.BillingModeSummary.BillingMode)
	}
	fmt.Fprintf(&b, "indexes %d/%d; ", len(d.Table.GlobalSecondaryIndexes), len(d.Table.LocalSecondaryIndexes))
	if s := d.Table.StreamSpecification; s != nil {
		fmt.Fprintf(&b, "stream %v %s; ", aws.ToBool(s.StreamEnabled), s.StreamViewType)
	}
	fmt.Fprintf(&b, "ttl %s %s", aws.ToString(ttl.TimeToLiveDescription.AttributeName), ttl.TimeToLiveDescription.TimeToLiveStatus)
	return b.String()
}

// Every operation a representative workload performs against DynamoDB Local
// is allowed by the policy of its phase: table setup (New with CreateTable)
// by the admin and runtime policies together, everything pods do on a table
// made by the CloudFormation template by the runtime policy alone; and every
// action of the runtime policy is used.
func TestRecordedOperationsAreAllowed(t *testing.T) {
	srv := dynamolocal.ForTest(t)
	cfg := dynamolocal.AWSConfig(srv.Endpoint())
	plain := dynamodb.NewFromConfig(cfg)
	rec := &recorder{}
	rt, ad := loadPolicy(t, runtimePolicyFile), loadPolicy(t, adminPolicyFile)
	ctx := testCtx(t)

	// Setup: a cache creates its table (EnsureTable).
	created := dynamolocal.TableName(t) + "_created"
	rec.setPhase("setup")
	setup, err := newNode(t, cfg, rec, created, true)
	if err != nil {
		t.Fatal(err)
	}
	_ = setup.Close()

	// The template's table, made as CloudFormation would.
	table := dynamolocal.TableName(t) + "_template"
	createFromCloudFormation(t, plain, table)
	if a, b := shape(t, plain, created), shape(t, plain, table); a != b {
		t.Errorf("the table EnsureTable creates and the template's differ:\nEnsureTable: %s\ntemplate:    %s", a, b)
	}

	// Runtime: two pods on the template's table, without CreateTable.
	rec.setPhase("runtime")
	n1, err := newNode(t, cfg, rec, table, false)
	if err != nil {
		t.Fatalf("New refused the template's table: %v", err)
	}
	n2, err := newNode(t, cfg, rec, table, false)
	if err != nil {
		t.Fatal(err)
	}
	source := map[string]string{"a": "1", "b": "2", "c": "3"}
	load := func(_ context.Context, k string) (string, error) {
		if v, ok := source[k]; ok {
			return v, nil
		}
		return "", tiered.ErrNotFound
	}
	for range 2 { // a miss (GetItem, lease, fill), then an L1 hit
		if v, err := n1.GetOrLoad(ctx, "a", load); err != nil || v != "1" {
			t.Fatalf("GetOrLoad: %q, %v", v, err)
		}
	}
	got, err := n2.GetMany(ctx, []string{"a", "b", "c", "missing"}, func(_ context.Context, keys []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range keys {
			if v, ok := source[k]; ok {
				out[k] = v
			}
		}
		return out, nil
	})
	if err != nil || len(got) != 3 {
		t.Fatalf("GetMany: %v, %v", got, err)
	}
	if err := n1.Set(ctx, "b", "22"); err != nil {
		t.Fatal(err)
	}
	n2.awaitEvent(t, "b") // n2's consumer read n1's write from the stream
	if err := n2.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	n1.awaitEvent(t, "c")
	_ = n1.Close()
	_ = n2.Close()

	// Resources: the ARNs DynamoDB Local gives.
	arns := map[string]string{} // table -> ARN
	streams := map[string]string{}
	for _, name := range []string{created, table} {
		d, err := plain.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		arns[name], streams[name] = aws.ToString(d.Table.TableArn), aws.ToString(d.Table.LatestStreamArn)
	}
	// arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME
	parts := strings.SplitN(arns[table], ":", 6)
	vars := func(tableName string) map[string]string {
		return map[string]string{"AWS::Partition": parts[1], "AWS::Region": parts[3], "AWS::AccountId": parts[4], "TableName": tableName}
	}

	seen := map[string]map[string]int{"setup": {}, "runtime": {}}
	for _, c := range rec.snapshot() {
		tableName := map[string]string{"setup": created, "runtime": table}[c.phase]
		var resource string
		switch {
		case c.table != "":
			if c.table != tableName {
				t.Errorf("%s %s on table %q, want %q", c.phase, c.action, c.table, tableName)
				continue
			}
			resource = arns[c.table]
		case c.stream != "":
			resource = c.stream
		default: // GetRecords: its iterator belongs to the table's stream
			resource = streams[tableName]
		}
		seen[c.phase][c.action]++
		allowed := rt.allows(c.action, resource, vars(tableName))
		if c.phase == "setup" {
			allowed = allowed || ad.allows(c.action, resource, vars(tableName))
		}
		if !allowed {
			t.Errorf("%s: %s on %s is not allowed", c.phase, c.action, resource)
		}
	}
	for _, a := range rt.actions() {
		if seen["runtime"][a] == 0 {
			t.Errorf("runtime policy grants %s, which the workload never used", a)
		}
	}
	for _, a := range []string{"dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"} {
		if seen["setup"][a] == 0 {
			t.Errorf("setup never called %s", a)
		}
		if seen["runtime"][a] != 0 {
			t.Errorf("pods called %s on a table that needed no setup", a)
		}
	}
	for phase, m := range seen {
		var s []string
		for a, n := range m {
			s = append(s, fmt.Sprintf("%s=%d", strings.TrimPrefix(a, "dynamodb:"), n))
		}
		sort.Strings(s)
		t.Logf("%s: %s", phase, strings.Join(s, " "))
	}
}
