package readerlimit

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/smithy-go"
)

// Proxy serves, on a loopback port, a proxy to upstream (a DynamoDB Streams
// endpoint such as DynamoDB Local's) through which a client in another
// process counts as one new reader of g, as a client built with Options
// does in this one. Point that client's endpoint at the returned URL. A
// refused GetRecords gets AWS's LimitExceededException answer (HTTP 400).
// stop closes the proxy.
func (g *Guard) Proxy(upstream string) (endpoint string, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	g.mu.Lock()
	g.next++
	id := g.next
	g.byReader[id] = &ReaderStats{}
	g.mu.Unlock()
	tr := &http.Transport{}
	client := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.serveProxy(w, r, id, client, upstream)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() error {
		err := srv.Close()
		<-done
		tr.CloseIdleConnections()
		return err
	}, nil
}

func (g *Guard) serveProxy(w http.ResponseWriter, r *http.Request, id int, client *http.Client, upstream string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	var in struct{ ShardIterator, StreamArn, ShardId string }
	_ = json.Unmarshal(body, &in)
	shard := ""
	if strings.HasSuffix(target, ".GetRecords") {
		if shard, err = g.admit(id, in.ShardIterator); err != nil {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusBadRequest)
			msg, _ := json.Marshal(map[string]string{
				"__type":  "com.amazonaws.dynamodb.v20120810#LimitExceededException",
				"message": err.(*smithy.GenericAPIError).Message,
			})
			_, _ = w.Write(msg)
			return
		}
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if resp.StatusCode == http.StatusOK {
		var o struct{ ShardIterator, NextShardIterator *string }
		_ = json.Unmarshal(out, &o)
		g.mu.Lock()
		switch {
		case strings.HasSuffix(target, ".GetShardIterator") && o.ShardIterator != nil:
			g.iters[*o.ShardIterator] = in.StreamArn + "|" + in.ShardId
		case strings.HasSuffix(target, ".GetRecords") && shard != "":
			if o.NextShardIterator != nil {
				g.iters[*o.NextShardIterator] = shard
			}
		}
		g.mu.Unlock()
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}
