// Package ddbserve runs DynamoDB Local for this module's tests and example,
// through the core module's own fixture command (internal/cmd/ddblocal
// serve: it installs DynamoDB Local and Java when missing, honours
// TIEREDCACHE_DDBLOCAL_DIR, picks a free loopback port and warms the server
// up). The core's internal packages cannot be imported from this module; its
// commands can be built.
package ddbserve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// EndpointEnv names a DynamoDB endpoint to use instead of starting one.
const EndpointEnv = "TIEREDCACHE_DDB_ENDPOINT"

// Server is a running DynamoDB Local.
type Server struct {
	Endpoint string
	cmd      *exec.Cmd
	done     chan struct{}
	dir      string
}

// Start returns the endpoint in TIEREDCACHE_DDB_ENDPOINT when set (Stop then
// does nothing), or starts DynamoDB Local and returns once it serves.
func Start(ctx context.Context) (*Server, error) {
	if ep := os.Getenv(EndpointEnv); ep != "" {
		return &Server{Endpoint: ep}, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("ddbserve: the go command is needed to build the core's ddblocal command: %w", err)
	}
	out, err := exec.CommandContext(ctx, goTool, "list", "-m", "-f", "{{.Dir}}", "github.com/tieredcache/tieredcache").Output()
	if err != nil {
		return nil, fmt.Errorf("ddbserve: locate the core module: %w", err)
	}
	core := strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp("", "ddbserve")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "ddblocal")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./internal/cmd/ddblocal")
	build.Dir = core
	if msg, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ddbserve: build ddblocal: %w\n%s", err, msg)
	}
	s := &Server{dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Dir = core
	s.cmd.Stderr = os.Stderr
	// Dies with us (Linux), so a killed test binary leaves nothing behind;
	// ddblocal's own Java child dies with it the same way.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ddbserve: start ddblocal: %w", err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if ep, ok := strings.CutPrefix(sc.Text(), "AWS_ENDPOINT_URL="); ok {
				found <- ep
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = s.cmd.Wait()
		close(s.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a first install downloads Java and the jar
	defer cancel()
	select {
	case s.Endpoint = <-found:
		return s, nil
	case <-s.done:
		os.RemoveAll(dir)
		return nil, errors.New("ddbserve: ddblocal exited before serving")
	case <-ctx.Done():
		_ = s.Stop()
		return nil, fmt.Errorf("ddbserve: DynamoDB Local did not start: %w", ctx.Err())
	}
}

// Stop stops the server this package started, and waits for it.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	return os.RemoveAll(s.dir)
}

// AWSConfig is an SDK config for endpoint: DynamoDB Local accepts any static
// credentials and region.
func AWSConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}
