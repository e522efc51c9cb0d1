// Command catalog runs the example service, or a local demonstration of it.
//
//	catalog serve   the service; configured by the environment (catalog.EnvVars)
//	catalog demo    DynamoDB Local, two replicas sharing one SQLite file and one
//	                table, a load generator; prints the hit ratio and shows a
//	                write on one replica seen by the other (make example)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"

	"github.com/tieredcache/tieredcache/examples/catalog"
	"github.com/tieredcache/tieredcache/tiered"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "serve" && os.Args[1] != "demo") {
		fmt.Fprintln(os.Stderr, "usage: catalog serve|demo [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if os.Args[1] == "serve" {
		err = serve(ctx)
	} else {
		err = demo(ctx, os.Args[2:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serve(ctx context.Context) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := catalog.LoadConfig(os.Getenv)
	if err != nil {
		return err
	}
	store, err := catalog.OpenStore(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(cfg.Region),
		config.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			msg := fmt.Sprintf(format, v...)
			// aws-sdk-go-v2 #3545: a checksum warning on every
			// ConditionalCheckFailed answer, which the cache expects.
			if strings.Contains(msg, "did not match expected checksum") {
				return
			}
			log.Warn(msg, "sdk", string(c))
		})))
	if err != nil {
		return err
	}
	setup, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cache, err := tiered.New(setup, tiered.Options[catalog.Product]{
		Table: cfg.Table, Namespace: cfg.Namespace, CreateTable: cfg.CreateTable,
		AWS: &awsCfg, L1TTL: cfg.L1TTL, Logger: log,
	})
	if err != nil {
		return err
	}
	defer cache.Close()
	srv := &http.Server{Addr: cfg.Addr, Handler: catalog.NewServer(store, cache, log), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("catalog serving", "addr", cfg.Addr, "table", cfg.Table)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
