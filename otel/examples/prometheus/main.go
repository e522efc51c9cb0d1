// Command prometheus runs tieredcache nodes that each serve their metrics as
// Prometheus text on /metrics, through OpenTelemetry's Prometheus exporter,
// and their readiness on /healthz (tiered.Cache.HealthHandler).
//
// The parent starts DynamoDB Local (unless AWS_ENDPOINT_URL names an
// endpoint), creates the table, starts -nodes copies of itself (separate
// processes sharing only the table), each on its own port from -port, each
// reading a skewed key set with a few writes. After -duration it scrapes every
// node's /metrics once, prints the tieredcache series (histogram buckets
// left out), and stops them.
//
//	cd otel && go run ./examples/prometheus -nodes 2 -duration 10s
//
// make demo (otel/cmd/demo) runs the full demo with the same wiring, each
// node on a free port; make demo-metrics prints its scrapes.
//
// With -node NAME it is one node: it serves until SIGTERM or SIGINT.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/tieredcache/tieredcache/l2"
	tieredotel "github.com/tieredcache/tieredcache/otel"
	"github.com/tieredcache/tieredcache/otel/internal/ddbserve"
	"github.com/tieredcache/tieredcache/tiered"
)

func main() {
	var (
		node     = flag.String("node", "", "run as this node (the parent sets it)")
		nodes    = flag.Int("nodes", 2, "nodes to start")
		port     = flag.Int("port", 9464, "port of the first node; the others follow")
		duration = flag.Duration("duration", 10*time.Second, "how long the nodes run before the scrape")
		table    = flag.String("table", "tieredcache-metrics-demo", "DynamoDB table")
	)
	flag.Parse()
	log.SetFlags(0)
	if *node != "" {
		if err := runNode(*node, *port, *table); err != nil {
			log.Fatalf("%s: %v", *node, err)
		}
		return
	}
	if err := runParent(*nodes, *port, *duration, *table); err != nil {
		log.Fatal(err)
	}
}

func awsConfig(ctx context.Context) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx) // AWS_ENDPOINT_URL, region, credentials from the environment
}

func runParent(nodes, port int, duration time.Duration, table string) error {
	ctx := context.Background()
	if os.Getenv("AWS_ENDPOINT_URL") == "" {
		srv, err := ddbserve.Start(ctx)
		if err != nil {
			return err
		}
		defer srv.Stop()
		os.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
		os.Setenv("AWS_REGION", "us-east-1")
		os.Setenv("AWS_ACCESS_KEY_ID", "local")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	}
	cfg, err := awsConfig(ctx)
	if err != nil {
		return err
	}
	// Create the table once, before the nodes start.
	setup, err := tiered.New(ctx, tiered.Options[string]{Table: table, CreateTable: true, AWS: &cfg, DisableInvalidation: true})
	if err != nil {
		return err
	}
	_ = setup.Close()

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var children []*exec.Cmd
	defer func() {
		for _, c := range children {
			_ = c.Process.Signal(syscall.SIGTERM)
			_ = c.Wait()
		}
	}()
	for i := range nodes {
		c := exec.Command(exe, "-node", "n"+strconv.Itoa(i+1), "-port", strconv.Itoa(port+i), "-table", table)
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := c.Start(); err != nil {
			return err
		}
		children = append(children, c)
	}
	for i := range nodes {
		if err := awaitReady(fmt.Sprintf("http://127.0.0.1:%d/healthz", port+i), time.Minute); err != nil {
			return fmt.Errorf("node n%d: %w", i+1, err)
		}
	}
	fmt.Fprintf(os.Stderr, "%d nodes ready; running %v\n", nodes, duration)
	time.Sleep(duration) // the workload runs in the nodes meanwhile
	for i := range nodes {
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port+i)
		fmt.Printf("# GET %s (node n%d)\n", url, i+1)
		if err := scrape(url, os.Stdout); err != nil {
			return err
		}
	}
	return nil
}

// awaitReady polls url until it answers 200 (the node's cache trusts its
// L1), or limit passes.
func awaitReady(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape prints the tieredcache series of url, without histogram buckets.
func scrape(url string, w io.Writer) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "tieredcache_") && !strings.Contains(line, "_bucket{") {
			fmt.Fprintln(w, line)
		}
	}
	return sc.Err()
}

func runNode(name string, port int, table string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := awsConfig(ctx)
	if err != nil {
		return err
	}
	// One Prometheus registry per node, fed by the OTel exporter.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())
	nodeAttr := tieredotel.WithAttributes(attribute.String("cache", "products"))

	cache, err := tiered.New(ctx, tiered.Options[string]{
		Table:     table,
		Namespace: "products",
		AWS:       &cfg,
		// DynamoDB call durations (and spans, with a TracerProvider), off the
		// L1-hit path.
		DynamoDB: l2.NewClient(cfg, tieredotel.InstrumentDynamoDB(tieredotel.WithMeterProvider(mp), nodeAttr)),
	})
	if err != nil {
		return err
	}
	defer cache.Close()
	unregister, err := tieredotel.Register(cache, mp, nodeAttr)
	if err != nil {
		return err
	}
	defer unregister()

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", cache.HealthHandler())
	srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("%s: %v", name, err)
			stop()
		}
	}()
	defer srv.Shutdown(context.Background())

	// The workload: a skewed read of 500 products, 1% writes. The source of
	// truth is simulated: 2 ms per load.
	load := tieredotel.InstrumentLoader(func(ctx context.Context, key string) (string, error) {
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return "product " + key, nil
	}, tieredotel.WithMeterProvider(mp), nodeAttr)
	zipf := rand.NewZipf(rand.New(rand.NewPCG(uint64(port), 1)), 1.2, 1, 499)
	for ctx.Err() == nil {
		key := "p" + strconv.FormatUint(zipf.Uint64(), 10)
		if rand.IntN(100) == 0 {
			_ = cache.Set(ctx, key, "product "+key+" v2")
		} else {
			_, _ = cache.GetOrLoad(ctx, key, load)
		}
		time.Sleep(200 * time.Microsecond) // a few thousand requests a second, not a CPU hog
	}
	return nil
}
