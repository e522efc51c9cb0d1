package invalidation_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tieredcache/tieredcache/invalidation"
)

// fakeStreams is a scripted DynamoDB + DynamoDB Streams endpoint speaking the
// JSON 1.0 protocol, so the real SDK clients run against it unchanged.
type fakeStreams struct {
	t   testing.TB
	srv *httptest.Server
	tr  *http.Transport

	mu              sync.Mutex
	table           string
	arn             string
	enabled         bool
	shards          []*fShard // listing order
	byID            map[string]*fShard
	pageSize        int  // DescribeStream page size
	filterSupported bool // ShardFilter CHILD_SHARDS understood
	iters           map[string]*fIter
	nextIter        int
	seq             int64
	faults          []*fault
	calls           map[string]int
	iterRequests    []iterReq
	gate            chan struct{} // non-nil: GetRecords blocks until closed
	noNextOnOpen    int           // answer this many GetRecords on open shards without NextShardIterator
	trimOnLatest    int           // TrimmedDataAccessException for this many GetRecords on LATEST iterators with no record read
}

type fShard struct {
	id, parent    string
	alsoChildOf   []string // extra parents: CHILD_SHARDS(p) lists this shard too (a merge)
	recs          []fRec
	closed        bool
	trimmedBefore int
	// hidden: a shard DescribeStream's eventual consistency has not caught up
	// with: full listings leave it out and GetShardIterator and GetRecords
	// answer ResourceNotFoundException, but CHILD_SHARDS of its parent lists it.
	hidden bool
}

type fRec struct {
	seq, key, event string
	created         time.Time
	ttl             bool
}

type fIter struct {
	shard   string
	pos     int
	expired bool
	latest  bool // chain began at LATEST and nothing returned yet
}

type iterReq struct{ Shard, Type, Seq string }

type fault struct {
	op, shard, typ string
	n              int
}

func newFake(t testing.TB) *fakeStreams {
	f := &fakeStreams{
		t:               t,
		table:           "tbl",
		arn:             "arn:aws:dynamodb:us-east-1:000000000000:table/tbl/stream/1",
		enabled:         true,
		byID:            map[string]*fShard{},
		pageSize:        100,
		filterSupported: true,
		iters:           map[string]*fIter{},
		calls:           map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.tr = &http.Transport{}
	t.Cleanup(func() {
		f.mu.Lock()
		if f.gate != nil {
			close(f.gate)
			f.gate = nil
		}
		f.mu.Unlock()
		f.srv.Close()
		f.tr.CloseIdleConnections()
	})
	return f
}

func (f *fakeStreams) awsConfig() aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(f.srv.URL),
		HTTPClient:   &http.Client{Transport: f.tr},
	}
}

func (f *fakeStreams) clients() (invalidation.StreamsAPI, invalidation.TableAPI) {
	cfg := f.awsConfig()
	return invalidation.NewStreamsClient(cfg), dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
}

// --- scripting ---

func (f *fakeStreams) addShard(id, parent string, closed bool) *fShard {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fShard{id: id, parent: parent, closed: closed}
	f.shards = append(f.shards, s)
	f.byID[id] = s
	return s
}

func (f *fakeStreams) put(shard string, keys ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.byID[shard]
	if s.closed {
		f.t.Fatalf("put into closed shard %s", shard)
	}
	for _, k := range keys {
		f.seq++
		s.recs = append(s.recs, fRec{seq: fmt.Sprintf("%021d", f.seq), key: k, event: "MODIFY", created: time.Now()})
	}
}

func (f *fakeStreams) putTTL(shard, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	s := f.byID[shard]
	s.recs = append(s.recs, fRec{seq: fmt.Sprintf("%021d", f.seq), key: key, event: "REMOVE", created: time.Now(), ttl: true})
}

func (f *fakeStreams) closeShard(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID[id].closed = true
}

// vanish removes a shard, as the trimmer does 24 h after it closed: it is no
// longer listed, and its iterators meet ResourceNotFoundException.
func (f *fakeStreams) vanish(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byID, id)
	for i, s := range f.shards {
		if s.id == id {
			f.shards = append(f.shards[:i:i], f.shards[i+1:]...)
			break
		}
	}
}

func (f *fakeStreams) trim(shard string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID[shard].trimmedBefore = n
}

func (f *fakeStreams) expireAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range f.iters {
		it.expired = true
	}
}

func (f *fakeStreams) inject(op, shard, typ string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fault{op: op, shard: shard, typ: typ, n: n})
}

func (f *fakeStreams) set(fn func(f *fakeStreams)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeStreams) callCount(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeStreams) iterRequestsFor(shard string) []iterReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []iterReq
	for _, r := range f.iterRequests {
		if r.Shard == shard {
			out = append(out, r)
		}
	}
	return out
}

// --- protocol ---

type apiErr struct {
	typ, msg string
	status   int
}

func (f *fakeStreams) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, apiErr{"SerializationException", err.Error(), 400})
		return
	}
	op := target[strings.LastIndex(target, ".")+1:]
	var (
		out any
		e   *apiErr
	)
	switch target {
	case "DynamoDB_20120810.DescribeTable":
		out, e = f.describeTable(in)
	case "DynamoDBStreams_20120810.DescribeStream":
		out, e = f.describeStream(in)
	case "DynamoDBStreams_20120810.GetShardIterator":
		out, e = f.getShardIterator(in)
	case "DynamoDBStreams_20120810.GetRecords":
		out, e = f.getRecords(r, in)
	default:
		e = &apiErr{"UnknownOperationException", target, 400}
	}
	f.mu.Lock()
	f.calls[op]++
	f.mu.Unlock()
	if e != nil {
		writeErr(w, *e)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(out)
}

func writeErr(w http.ResponseWriter, e apiErr) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	if e.status == 0 {
		e.status = 400
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"__type":  "com.amazonaws.dynamodb.v20120810#" + e.typ,
		"message": e.msg,
	})
}

// faultFor consumes an injected fault for op on shard; callers hold f.mu.
func (f *fakeStreams) faultFor(op, shard string) *apiErr {
	for _, ft := range f.faults {
		if ft.n > 0 && ft.op == op && (ft.shard == "" || ft.shard == shard) {
			ft.n--
			status := 400
			switch ft.typ {
			case "InternalServerError", "InternalFailure":
				status = 500
			case "ServiceUnavailable":
				status = 503
			}
			return &apiErr{ft.typ, "injected " + ft.typ, status}
		}
	}
	return nil
}

func (f *fakeStreams) describeTable(in map[string]any) (any, *apiErr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.faultFor("DescribeTable", ""); e != nil {
		return nil, e
	}
	if in["TableName"] != f.table {
		return nil, &apiErr{"ResourceNotFoundException", "Requested resource not found", 400}
	}
	t := map[string]any{"TableName": f.table, "TableStatus": "ACTIVE"}
	if f.arn != "" {
		t["LatestStreamArn"] = f.arn
	}
	if f.enabled {
		t["StreamSpecification"] = map[string]any{"StreamEnabled": true, "StreamViewType": "KEYS_ONLY"}
	}
	return map[string]any{"Table": t}, nil
}

func (f *fakeStreams) describeStream(in map[string]any) (any, *apiErr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.faultFor("DescribeStream", ""); e != nil {
		return nil, e
	}
	if in["StreamArn"] != f.arn {
		return nil, &apiErr{"ResourceNotFoundException", "stream not found", 400}
	}
	var list []*fShard
	for _, s := range f.shards {
		if !s.hidden {
			list = append(list, s)
		}
	}
	if filt, ok := in["ShardFilter"].(map[string]any); ok {
		if !f.filterSupported {
			return nil, &apiErr{"ValidationException", "1 validation error detected: ShardFilter", 400}
		}
		parent, _ := filt["ShardId"].(string)
		list = nil
		for _, s := range f.shards {
			if s.parent == parent || contains(s.alsoChildOf, parent) {
				list = append(list, s)
			}
		}
	}
	start := 0
	if ex, ok := in["ExclusiveStartShardId"].(string); ok {
		for i, s := range list {
			if s.id == ex {
				start = i + 1
			}
		}
	}
	end := min(start+f.pageSize, len(list))
	var shards []any
	for _, s := range list[start:end] {
		rng := map[string]any{"StartingSequenceNumber": "0"}
		if s.closed {
			rng["EndingSequenceNumber"] = "99999999999999999999999"
		}
		m := map[string]any{"ShardId": s.id, "SequenceNumberRange": rng}
		if s.parent != "" {
			m["ParentShardId"] = s.parent
		}
		shards = append(shards, m)
	}
	desc := map[string]any{
		"StreamArn": f.arn, "StreamStatus": "ENABLED", "StreamViewType": "KEYS_ONLY",
		"TableName": f.table, "Shards": shards,
	}
	if end < len(list) {
		desc["LastEvaluatedShardId"] = list[end-1].id
	}
	return map[string]any{"StreamDescription": desc}, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (f *fakeStreams) newIter(shard string, pos int, latest bool) string {
	f.nextIter++
	tok := "it-" + strconv.Itoa(f.nextIter)
	f.iters[tok] = &fIter{shard: shard, pos: pos, latest: latest}
	return tok
}

func (f *fakeStreams) getShardIterator(in map[string]any) (any, *apiErr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, _ := in["ShardId"].(string)
	typ, _ := in["ShardIteratorType"].(string)
	seq, _ := in["SequenceNumber"].(string)
	f.iterRequests = append(f.iterRequests, iterReq{id, typ, seq})
	if e := f.faultFor("GetShardIterator", id); e != nil {
		return nil, e
	}
	s := f.byID[id]
	if in["StreamArn"] != f.arn || s == nil || s.hidden {
		return nil, &apiErr{"ResourceNotFoundException", "shard not found", 400}
	}
	var pos int
	switch typ {
	case "TRIM_HORIZON":
		pos = s.trimmedBefore
	case "LATEST":
		pos = len(s.recs)
	case "AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER":
		pos = -1
		for i, r := range s.recs {
			if r.seq == seq {
				pos = i
				if typ == "AFTER_SEQUENCE_NUMBER" {
					pos++
				}
			}
		}
		if pos < 0 {
			return nil, &apiErr{"ValidationException", "sequence number not in shard", 400}
		}
		if pos < s.trimmedBefore {
			return nil, &apiErr{"TrimmedDataAccessException", "trimmed", 400}
		}
	default:
		return nil, &apiErr{"ValidationException", "bad iterator type " + typ, 400}
	}
	return map[string]any{"ShardIterator": f.newIter(id, pos, typ == "LATEST")}, nil
}

func (f *fakeStreams) getRecords(r *http.Request, in map[string]any) (any, *apiErr) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return nil, &apiErr{"InternalServerError", "gone", 500}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	tok, _ := in["ShardIterator"].(string)
	it := f.iters[tok]
	if it == nil {
		return nil, &apiErr{"ValidationException", "Invalid ShardIterator", 400}
	}
	if e := f.faultFor("GetRecords", it.shard); e != nil {
		return nil, e
	}
	if it.expired {
		return nil, &apiErr{"ExpiredIteratorException", "Iterator expired", 400}
	}
	s := f.byID[it.shard]
	if s == nil || s.hidden {
		return nil, &apiErr{"ResourceNotFoundException", "shard not found", 400}
	}
	if it.pos < s.trimmedBefore {
		return nil, &apiErr{"TrimmedDataAccessException", "trimmed", 400}
	}
	if it.latest && f.trimOnLatest > 0 {
		f.trimOnLatest--
		return nil, &apiErr{"TrimmedDataAccessException", "DynamoDB Local quirk", 400}
	}
	limit := 1000
	if l, ok := in["Limit"].(float64); ok {
		limit = int(l)
	}
	end := min(it.pos+limit, len(s.recs))
	var recs []any
	for _, rec := range s.recs[it.pos:end] {
		m := map[string]any{
			"eventID": rec.seq, "eventName": rec.event, "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
			"dynamodb": map[string]any{
				"Keys":                        map[string]any{"pk": map[string]any{"S": rec.key}},
				"SequenceNumber":              rec.seq,
				"SizeBytes":                   20 + len(rec.key),
				"StreamViewType":              "KEYS_ONLY",
				"ApproximateCreationDateTime": float64(rec.created.UnixMilli()) / 1000,
			},
		}
		if rec.ttl {
			m["userIdentity"] = map[string]any{"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
		}
		recs = append(recs, m)
	}
	out := map[string]any{"Records": recs}
	if recs == nil {
		out["Records"] = []any{}
	}
	switch {
	case s.closed && end == len(s.recs):
		// closed and drained: no NextShardIterator
	case !s.closed && f.noNextOnOpen > 0:
		f.noNextOnOpen--
	default:
		out["NextShardIterator"] = f.newIter(s.id, end, it.latest && end == it.pos)
	}
	return out, nil
}
