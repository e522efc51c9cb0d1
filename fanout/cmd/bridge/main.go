// Command bridge runs one fan-out bridge candidate as a standalone process:
// it competes for the table's lease item, and while it holds it, reads the
// table's stream and publishes batches to NATS or Redis (see package fanout).
// Run two for a standby (with -hot-standby, it reads the stream too and
// takes over without starting a consumer).
//
// Flags (each also read from the environment variable named in brackets):
//
//	-table     the cache table (TIEREDCACHE_TABLE), required
//	-nats      NATS server URLs, comma-separated (NATS_URL), default nats://127.0.0.1:4222
//	-id        candidate id, unique among candidates (BRIDGE_ID), default host-pid
//	-subject   subject (TIEREDCACHE_FANOUT_SUBJECT), default fanout.DefaultSubject(table)
//	-staleness the caches' T (TIEREDCACHE_STALENESS), default 2s
//	-redis     Redis URL (REDIS_URL), used instead of NATS when set: redis://user:password@host:6379/0,
//	           rediss://... for TLS (ACL user and password in the URL)
//	-creds     NATS credentials file (NATS_CREDS)
//	-hot-standby  while another candidate leads, read the stream as its hot
//	           standby (BRIDGE_HOT_STANDBY=true); give every candidate the same setting
//	-ca, -cert, -key  TLS: CA bundle, client certificate and key (NATS_CA, NATS_CERT, NATS_KEY), for
//	           NATS or rediss://
//
// AWS credentials, region and endpoint come from the SDK's default chain
// (AWS_ENDPOINT_URL is honoured).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"github.com/redis/go-redis/v9"

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
		redisURL  = flag.String("redis", env("REDIS_URL", ""), "Redis URL (redis:// or rediss://), instead of NATS")
		id        = flag.String("id", env("BRIDGE_ID", host+"-"+strconv.Itoa(os.Getpid())), "candidate id")
		subject   = flag.String("subject", env("TIEREDCACHE_FANOUT_SUBJECT", ""), "subject (default from the table)")
		staleness = flag.String("staleness", env("TIEREDCACHE_STALENESS", "2s"), "the caches' staleness bound T")
		creds     = flag.String("creds", env("NATS_CREDS", ""), "NATS credentials file")
		ca        = flag.String("ca", env("NATS_CA", ""), "TLS CA bundle")
		cert      = flag.String("cert", env("NATS_CERT", ""), "TLS client certificate")
		key       = flag.String("key", env("NATS_KEY", ""), "TLS client key")
		hot       = flag.Bool("hot-standby", env("BRIDGE_HOT_STANDBY", "") == "true", "read the stream as the hot standby while another candidate leads")
	)
	keyHashes := flag.Bool("key-hashes", env("TIEREDCACHE_FANOUT_KEY_HASHES", "") == "true",
		"send 64-bit key hashes instead of keys (every pod needs PodOptions.KeyHashes)")
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
	var tr interface {
		fanout.Transport
		Close() error
	}
	if *redisURL != "" {
		tr, err = dialRedis(ctx, *redisURL, *ca, *cert, *key)
	} else {
		tr, err = fanout.DialNATS(*natsURL, opts...)
	}
	if err != nil {
		return err
	}
	defer tr.Close()
	b, err := fanout.NewBridge(fanout.BridgeOptions{
		ID: *id, Table: *table, Subject: *subject, StalenessBound: t, Transport: tr,
		DynamoDB: l2.NewClient(cfg, l2.WithLogger(logger)),
		Streams:  invalidation.NewStreamsClient(cfg, invalidation.WithLogger(logger)),
		Logger:   logger, KeyHashes: *keyHashes, HotStandby: *hot,
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

// dialRedis connects to the Redis URL; for rediss:// URLs, ca replaces the
// system roots and cert/key are a client certificate.
func dialRedis(ctx context.Context, url, ca, cert, key string) (*fanout.Redis, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	if o.TLSConfig != nil && ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s: no certificate found", ca)
		}
		o.TLSConfig.RootCAs = pool
	}
	if o.TLSConfig != nil && (cert != "" || key != "") {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", err)
		}
		o.TLSConfig.Certificates = []tls.Certificate{c}
	}
	return fanout.DialRedis(ctx, o)
}
