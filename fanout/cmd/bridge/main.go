// Command bridge runs one fan-out bridge candidate as a standalone process:
// it competes for the table's lease item, and while it holds it, reads the
// table's stream and publishes batches to NATS (see package fanout). Run two
// for a standby.
//
// Flags (each also read from the environment variable named in brackets):
//
//	-table     the cache table (TIEREDCACHE_TABLE), required
//	-nats      NATS server URLs, comma-separated (NATS_URL), default nats://127.0.0.1:4222
//	-id        candidate id, unique among candidates (BRIDGE_ID), default host-pid
//	-subject   subject (TIEREDCACHE_FANOUT_SUBJECT), default fanout.DefaultSubject(table)
//	-staleness the caches' T (TIEREDCACHE_STALENESS), default 2s
//	-creds     NATS credentials file (NATS_CREDS)
//	-ca, -cert, -key  TLS: CA bundle, client certificate and key (NATS_CA, NATS_CERT, NATS_KEY)
//
// AWS credentials, region and endpoint come from the SDK's default chain
// (AWS_ENDPOINT_URL is honoured).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/nats-io/nats.go"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
}

func run() error {
	host, _ := os.Hostname()
	var (
		table     = flag.String("table", env("TIEREDCACHE_TABLE", ""), "cache table (required)")
		natsURL   = flag.String("nats", env("NATS_URL", nats.DefaultURL), "NATS server URLs")
		id        = flag.String("id", env("BRIDGE_ID", host+"-"+strconv.Itoa(os.Getpid())), "candidate id")
		subject   = flag.String("subject", env("TIEREDCACHE_FANOUT_SUBJECT", ""), "subject (default from the table)")
		staleness = flag.String("staleness", env("TIEREDCACHE_STALENESS", "2s"), "the caches' staleness bound T")
		creds     = flag.String("creds", env("NATS_CREDS", ""), "NATS credentials file")
		ca        = flag.String("ca", env("NATS_CA", ""), "TLS CA bundle")
		cert      = flag.String("cert", env("NATS_CERT", ""), "TLS client certificate")
		key       = flag.String("key", env("NATS_KEY", ""), "TLS client key")
	)
	flag.Parse()
	if *table == "" {
		return fmt.Errorf("-table is required")
	}
	t, err := time.ParseDuration(*staleness)
	if err != nil || t <= 0 {
		return fmt.Errorf("-staleness %q: want a positive duration", *staleness)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var opts []nats.Option
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	if *ca != "" {
		opts = append(opts, nats.RootCAs(*ca))
	}
	if *cert != "" || *key != "" {
		opts = append(opts, nats.ClientCert(*cert, *key))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("AWS config: %w", err)
	}
	tr, err := fanout.DialNATS(*natsURL, opts...)
	if err != nil {
		return err
	}
	defer tr.Close()
	b, err := fanout.NewBridge(fanout.BridgeOptions{
		ID: *id, Table: *table, Subject: *subject, StalenessBound: t, Transport: tr,
		DynamoDB: l2.NewClient(cfg, l2.WithLogger(logger)),
		Streams:  invalidation.NewStreamsClient(cfg, invalidation.WithLogger(logger)),
		Logger:   logger,
	})
	if err != nil {
		return err
	}
	if err := b.Start(); err != nil {
		return err
	}
	logger.Info("bridge candidate running", "id", *id, "table", *table)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			logger.Info("stopping")
			return b.Close()
		case <-tick.C:
			s := b.Stats()
			logger.Info("bridge", "leader", s.Leader, "epoch", s.Epoch, "seq", s.Seq, "published", s.Published,
				"keys", s.Keys, "getRecords", s.GetRecords, "publishErrors", s.PublishErrors)
		}
	}
}
