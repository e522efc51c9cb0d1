package catalog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/examples/catalog"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

type replica struct {
	url    string
	cache  *tiered.Cache[catalog.Product]
	events chan string // keys this replica's stream consumer invalidated
}

func newReplica(t *testing.T, dbPath, table string) *replica {
	t.Helper()
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := catalog.OpenStore(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{events: make(chan string, 1024)}
	r.cache, err = tiered.New(ctx, tiered.Options[catalog.Product]{
		Table: table, Namespace: "products", CreateTable: true, AWS: &cfg, CallTimeout: 5 * time.Second,
		OnInvalidate: func(key string, _ time.Time) {
			select {
			case r.events <- key:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(catalog.NewServer(store, r.cache, slog.New(slog.NewTextHandler(io.Discard, nil))))
	r.url = srv.URL
	t.Cleanup(func() { srv.Close(); _ = r.cache.Close(); _ = store.Close() })
	return r
}

// awaitServed reads path on r until ok accepts the answer, waiting for one
// stream invalidation of key between reads: an event may be an older write's
// record (a fill's), so one event alone proves nothing.
func (r *replica) awaitServed(t *testing.T, key, path string, ok func(code int, p catalog.Product) bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		var p catalog.Product
		code := do(t, http.MethodGet, r.url+path, nil, &p)
		if ok(code, p) {
			return
		}
		for waiting := true; waiting; {
			select {
			case k := <-r.events:
				waiting = k != key
			case <-timeout:
				t.Fatalf("GET %s still answers %d %+v 30s after the write", path, code, p)
			}
		}
	}
}

func do(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func stats(t *testing.T, r *replica) catalog.Stats {
	var s catalog.Stats
	if code := do(t, http.MethodGet, r.url+"/stats", nil, &s); code != http.StatusOK {
		t.Fatalf("stats: %d", code)
	}
	return s
}

// Two replicas share one SQLite file and one DynamoDB Local table: reads are
// cache-aside, the list uses GetMany, and a write on one replica is served by
// the other once its stream consumer has evicted the old copy.
func TestTwoReplicas(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "catalog.db")
	store, err := catalog.OpenStore(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Seed(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	_ = store.Close()
	table := dynamolocal.TableName(t)
	a, b := newReplica(t, dbPath, table), newReplica(t, dbPath, table)

	var p catalog.Product
	if code := do(t, http.MethodGet, a.url+"/products/1", nil, &p); code != http.StatusOK || p.Name != "product 1" {
		t.Fatalf("GET on a: %d %+v", code, p)
	}
	do(t, http.MethodGet, a.url+"/products/1", nil, &p)
	// The second read is served by a cache tier: L1, or L2 when the fill's
	// own stream record (KEYS_ONLY) or Ristretto's asynchronous admission
	// kept it out of L1.
	if s := stats(t, a); s.Loads != 1 || s.L1Hits+s.L2Hits != 1 {
		t.Fatalf("a after two reads: %+v, want 1 load and 1 cache hit", s)
	}
	if code := do(t, http.MethodGet, b.url+"/products/1", nil, &p); code != http.StatusOK || p.Name != "product 1" {
		t.Fatalf("GET on b: %d %+v", code, p)
	}
	if s := stats(t, b); s.Loads != 0 || s.L2Hits != 1 {
		t.Fatalf("b reading a's fill: %+v, want it from DynamoDB (1 L2 hit, no load)", s)
	}

	var list []catalog.Product
	if code := do(t, http.MethodGet, b.url+"/products?ids=3,1,999,3", nil, &list); code != http.StatusOK {
		t.Fatalf("list: %d", code)
	}
	if len(list) != 2 || list[0].ID != 3 || list[1].ID != 1 {
		t.Fatalf("list 3,1,999,3: %+v, want products 3 and 1 in that order", list)
	}
	if code := do(t, http.MethodGet, b.url+"/products/999", nil, nil); code != http.StatusNotFound {
		t.Fatalf("GET 999: %d, want 404", code)
	}

	// b has product 1 in L1. A write on a reaches it through the stream.
	if code := do(t, http.MethodPut, a.url+"/products/1", catalog.Product{Name: "renamed", PriceCents: 4200, Stock: 1}, &p); code != http.StatusOK {
		t.Fatalf("PUT: %d", code)
	}
	b.awaitServed(t, "1", "/products/1", func(code int, p catalog.Product) bool {
		return code == http.StatusOK && p.Name == "renamed" && p.PriceCents == 4200
	})

	if code := do(t, http.MethodDelete, b.url+"/products/3", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	a.awaitServed(t, "3", "/products/3", func(code int, _ catalog.Product) bool { return code == http.StatusNotFound })

	for _, path := range []string{"/products/abc", "/products?ids=", "/products?ids=1,x"} {
		if code := do(t, http.MethodGet, a.url+path, nil, nil); code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, code)
		}
	}
	if code := do(t, http.MethodPut, a.url+"/products/5", map[string]any{"name": ""}, nil); code != http.StatusBadRequest {
		t.Errorf("PUT without a name: %d, want 400", code)
	}
}
