package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tieredcache/tieredcache/examples/catalog"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

// demo starts DynamoDB Local, seeds a SQLite file, runs two replicas of this
// binary ("serve") on two loopback ports sharing the file and one table, runs
// a Zipf load over both, and prints the hit ratio; then it changes a product
// on replica 1 and shows replica 2 serving the change.
func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	products := fs.Int("products", 2000, "products in the database")
	requests := fs.Int("requests", 4000, "requests of the load generator (each replica half)")
	workers := fs.Int("workers", 8, "concurrent clients")
	endpoint := fs.String("ddb-endpoint", "", "a running DynamoDB Local to use (default: start one)")
	_ = fs.Parse(args)

	ddbURL := *endpoint
	if ddbURL == "" {
		fmt.Println("starting DynamoDB Local ...")
		ddb, err := dynamolocal.Start(ctx)
		if err != nil {
			return err
		}
		defer ddb.Stop()
		ddbURL = ddb.Endpoint()
	}
	dir, err := os.MkdirTemp("", "catalog-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dbPath := filepath.Join(dir, "catalog.db")
	store, err := catalog.OpenStore(ctx, dbPath)
	if err != nil {
		return err
	}
	if err := store.Seed(ctx, *products); err != nil {
		return err
	}
	_ = store.Close()
	table := fmt.Sprintf("catalog-%d", time.Now().UnixNano()) // fresh on a reused server
	fmt.Printf("SQLite %s seeded with %d products; DynamoDB Local at %s\n", dbPath, *products, ddbURL)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var urls []string
	for i := range 2 {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.CommandContext(ctx, self, "serve")
		cmd.Env = append(os.Environ(),
			"CATALOG_ADDR="+addr, "CATALOG_DB="+dbPath, "CACHE_TABLE="+table, "CACHE_NAMESPACE=products",
			"CACHE_CREATE_TABLE=true", "CACHE_L1_TTL=1m", "AWS_REGION=us-east-1",
			"AWS_ENDPOINT_URL="+ddbURL, "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local")
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Cancel(); _ = cmd.Wait() }()
		url := "http://" + addr
		if err := waitHealthy(ctx, url); err != nil {
			return fmt.Errorf("replica %d: %w", i+1, err)
		}
		urls = append(urls, url)
		fmt.Printf("replica %d serving on %s (pid %d)\n", i+1, url, cmd.Process.Pid)
	}

	// Load: Zipf over product ids, 1 list request in 10, alternating replicas.
	fmt.Printf("load: %d requests, %d clients, Zipf over %d products ...\n", *requests, *workers, *products)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	per := *requests / *workers
	for w := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			z := rand.NewZipf(r, 1.1, 2, uint64(*products-1))
			for i := range per {
				url := urls[(w+i)%2]
				path := fmt.Sprintf("/products/%d", 1+z.Uint64())
				if i%10 == 9 {
					path = fmt.Sprintf("/products?ids=%d,%d,%d,%d,%d", 1+z.Uint64(), 1+z.Uint64(), 1+z.Uint64(), 1+z.Uint64(), 1+z.Uint64())
				}
				code := 0
				if resp, err := http.Get(url + path); err == nil {
					code = resp.StatusCode
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Printf("done in %v (%.0f req/s); HTTP statuses %v\n", elapsed.Round(time.Millisecond), float64(per**workers)/elapsed.Seconds(), statuses)
	var hits, lookups, l2Hits, loads uint64
	for i, u := range urls {
		var st catalog.Stats
		if err := getJSON(ctx, u+"/stats", &st); err != nil {
			return err
		}
		n := st.L1Hits + st.L1Misses
		fmt.Printf("replica %d: %d lookups, L1 hit ratio %.1f%%, L2 hits %d, loads from SQLite %d\n", i+1, n, pct(st.L1Hits, n), st.L2Hits, st.Loads)
		hits, lookups, l2Hits, loads = hits+st.L1Hits, lookups+n, l2Hits+st.L2Hits, loads+st.Loads
	}
	fmt.Printf("both: L1 hit ratio %.1f%%; of the L1 misses, %.1f%% were answered by DynamoDB, %d went to SQLite\n",
		pct(hits, lookups), pct(l2Hits, lookups-hits), loads)

	// A write on replica 1 is seen on replica 2, which has the product in L1.
	const id = 1 // the hottest product: cached on both replicas by now
	var before catalog.Product
	if err := getJSON(ctx, fmt.Sprintf("%s/products/%d", urls[1], id), &before); err != nil {
		return err
	}
	body, _ := json.Marshal(catalog.Product{Name: before.Name, PriceCents: before.PriceCents + 1000, Stock: before.Stock})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/products/%d", urls[0], id), bytes.NewReader(body))
	wrote := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT on replica 1: %s", resp.Status)
	}
	fmt.Printf("PUT /products/%d on replica 1: price %d -> %d\n", id, before.PriceCents, before.PriceCents+1000)
	deadline := time.Now().Add(10 * time.Second)
	for reads := 1; ; reads++ {
		var p catalog.Product
		if err := getJSON(ctx, fmt.Sprintf("%s/products/%d", urls[1], id), &p); err != nil {
			return err
		}
		if p.PriceCents == before.PriceCents+1000 {
			fmt.Printf("replica 2 serves the new price %v after the write was acknowledged (read %d); the stream evicted its L1 copy\n",
				time.Since(wrote).Round(time.Millisecond), reads)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica 2 still serves price %d 10s after the write", p.PriceCents)
		}
		time.Sleep(5 * time.Millisecond) // polling is what a client would do; the cache's stream does the work
	}
}

func pct(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func getJSON(ctx context.Context, url string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitHealthy(ctx context.Context, url string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not healthy within 2 minutes: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
