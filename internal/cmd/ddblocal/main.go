// Command ddblocal installs DynamoDB Local (and Java if missing), or runs it
// on a free loopback port until interrupted.
//
//	go run ./internal/cmd/ddblocal install
//	go run ./internal/cmd/ddblocal serve
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "install" && os.Args[1] != "serve") {
		fmt.Fprintln(os.Stderr, "usage: ddblocal install|serve")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Args[1] == "install" {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		dir, java, err := dynamolocal.Install(ictx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("DynamoDB Local in %s (java: %s)\n", dir, java)
		return
	}
	s, err := dynamolocal.Start(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("AWS_ENDPOINT_URL=%s\n", s.Endpoint())
	<-ctx.Done()
	_ = s.Stop()
}
