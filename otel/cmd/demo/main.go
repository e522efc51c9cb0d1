// Command demo is the tieredcache demo (package internal/demo of the core
// module) with metrics: each node process serves its cache's metrics as
// Prometheus text on /metrics, through OpenTelemetry's Prometheus exporter
// (tieredotel.Register on a MeterProvider whose reader is the exporter, and
// its DynamoDB client instrumented with tieredotel.InstrumentDynamoDB), and
// its readiness on /healthz (tiered.Cache.HealthHandler), on a free loopback
// port. The live view and the summary show each node's URL; each node scrapes
// itself once at the end (in -summary-json; -show-metrics prints it).
//
// It lives in the otel module so that the core module does not depend on
// OpenTelemetry; every flag of the core demo works unchanged (-h lists them).
//
//	make demo DEMO_ARGS='-nodes 2 -duration 20s -show-metrics'
//	cd otel && go run ./cmd/demo -nodes 3 -outage 5s
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/tieredcache/tieredcache/internal/demo"
	"github.com/tieredcache/tieredcache/l2"
	tieredotel "github.com/tieredcache/tieredcache/otel"
	"github.com/tieredcache/tieredcache/tiered"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the demo with metrics. The parent re-executes this binary for each
// node, which runs this same function with the hidden -child flag.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var m *nodeMetrics // one per process: a node process builds one cache
	return demo.Run(args, stdin, stdout, stderr,
		demo.WithCacheOptions(func(node string, o *tiered.Options[string]) error {
			var err error
			if m, err = newNodeMetrics(node); err != nil {
				return err
			}
			// DynamoDB call counts and durations by operation; nothing on the
			// L1-hit path.
			o.DynamoDB = l2.NewClient(*o.AWS, l2.WithLogger(o.Logger),
				tieredotel.InstrumentDynamoDB(tieredotel.WithMeterProvider(m.mp), m.attrs))
			return nil
		}),
		demo.WithNodeHook(func(cache *tiered.Cache[string], node string) (string, func(), error) {
			if m == nil { // the cache options hook always runs first
				return "", nil, errors.New("no meter provider")
			}
			return m.serve(cache)
		}),
	)
}

// nodeMetrics is one node's OpenTelemetry pipeline: a MeterProvider whose
// reader is the Prometheus exporter, registered on its own registry.
type nodeMetrics struct {
	reg   *prometheus.Registry
	mp    *sdkmetric.MeterProvider
	attrs tieredotel.Option
}

func newNodeMetrics(node string) (*nodeMetrics, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &nodeMetrics{
		reg:   reg,
		mp:    sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
		attrs: tieredotel.WithAttributes(attribute.String("node", node)),
	}, nil
}

// serve registers the cache's Stats as observable instruments and serves
// /metrics and /healthz on a free loopback port. stop shuts the server down,
// unregisters and shuts the MeterProvider down.
func (m *nodeMetrics) serve(cache *tiered.Cache[string]) (string, func(), error) {
	unregister, err := tieredotel.Register(cache, m.mp, m.attrs)
	if err != nil {
		_ = m.mp.Shutdown(context.Background())
		return "", nil, fmt.Errorf("register metrics: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = unregister()
		_ = m.mp.Shutdown(context.Background())
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", cache.HealthHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // ErrServerClosed once stop shuts it down
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-served
		_ = unregister()
		_ = m.mp.Shutdown(ctx)
	}
	return "http://" + ln.Addr().String() + "/metrics", stop, nil
}
