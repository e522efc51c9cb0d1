package readerlimit

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ReaderHeader names the reader of a call that reaches the guard through its
// Proxy. Calls without it count as one reader, "".
const ReaderHeader = "X-Readerlimit-Reader"

// Named makes a dynamodbstreams client send name in ReaderHeader with each
// call: behind a Proxy, its calls count as reader name, whichever process
// makes them.
func Named(name string) func(*dynamodbstreams.Options) {
	return func(o *dynamodbstreams.Options) {
		o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(ReaderHeader, name))
	}
}

// maxBody bounds a request or response the proxy reads (a GetRecords answer
// is at most 1 MB of records).
const maxBody = 16 << 20

// Proxy returns an HTTP handler that forwards DynamoDB Streams API calls to
// endpoint (e.g. DynamoDB Local's URL) and decides each GetRecords call as
// Options' middleware does, so that readers in separate processes count
// together: point their clients' BaseEndpoint at the handler and name each
// with Named. A refused call is answered, without reaching endpoint, as AWS
// answers it: HTTP 400 with a LimitExceededException.
func (g *Guard) Proxy(endpoint string) (http.Handler, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("readerlimit: endpoint %q: want an absolute URL", endpoint)
	}
	// No transparent decompression: the body goes back byte for byte, so
	// that a response checksum still matches.
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	return &proxy{g: g, target: u, client: &http.Client{Transport: tr}}, nil
}

type proxy struct {
	g      *Guard
	target *url.URL
	client *http.Client
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op := target[strings.LastIndexByte(target, '.')+1:]
	var iter, shard string
	if op == "GetRecords" {
		var in struct{ ShardIterator string }
		_ = json.Unmarshal(body, &in)
		iter = in.ShardIterator
		shard, err = p.g.admit(p.g.reader(r.Header.Get(ReaderHeader)), iter)
		if err != nil {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{
				"__type": "com.amazonaws.dynamodb.v20120810#LimitExceededException", "message": err.Error()})
			return
		}
	}
	u := *p.target
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host // as signed
	resp, err := p.client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if resp.StatusCode == http.StatusOK {
		p.learn(op, body, decoded(rb, resp.Header.Get("Content-Encoding")), iter, shard)
	}
	for k, vs := range resp.Header {
		switch k {
		case "Content-Length", "Connection", "Transfer-Encoding":
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(rb)
}

// learn records the shard of the iterators a successful answer returns, as
// the middleware does.
func (p *proxy) learn(op string, req, resp []byte, iter, shard string) {
	switch op {
	case "GetShardIterator":
		var in struct{ StreamArn, ShardId string }
		var out struct{ ShardIterator string }
		if json.Unmarshal(req, &in) != nil || json.Unmarshal(resp, &out) != nil || out.ShardIterator == "" {
			return
		}
		p.g.mu.Lock()
		p.g.iters[out.ShardIterator] = in.StreamArn + "|" + in.ShardId
		p.g.mu.Unlock()
	case "GetRecords":
		if shard == "" {
			return
		}
		var out struct{ NextShardIterator string }
		_ = json.Unmarshal(resp, &out)
		p.g.mu.Lock()
		if out.NextShardIterator != "" {
			p.g.iters[out.NextShardIterator] = shard
		}
		p.g.mu.Unlock()
	}
}

// decoded is b, gunzipped when enc says so (b itself if that fails).
func decoded(b []byte, enc string) []byte {
	if !strings.EqualFold(enc, "gzip") {
		return b
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return b
	}
	d, err := io.ReadAll(io.LimitReader(zr, maxBody))
	if err != nil {
		return b
	}
	return d
}

// reader returns the id of the reader named name, new on first sight.
func (g *Guard) reader(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	id, ok := g.names[name]
	if !ok {
		id = g.newReader()
		g.names[name] = id
	}
	return id
}

// Named returns the counters of every reader a Proxy has seen, by name.
func (g *Guard) Named() map[string]ReaderStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]ReaderStats, len(g.names))
	for name, id := range g.names {
		out[name] = *g.byReader[id]
	}
	return out
}

// ServeProxy serves Proxy(upstream) on a free loopback port, every call
// through it counting as one new reader (whatever its ReaderHeader), and
// returns its URL: point a client in another process at it. stop closes it.
func (g *Guard) ServeProxy(upstream string) (endpoint string, stop func() error, err error) {
	h, err := g.Proxy(upstream)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("proxy-%d", proxies.Add(1))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set(ReaderHeader, name)
		h.ServeHTTP(w, r)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() error {
		err := srv.Close()
		<-done
		h.(*proxy).client.CloseIdleConnections()
		return err
	}, nil
}

// proxies numbers ServeProxy's readers.
var proxies atomic.Int64
