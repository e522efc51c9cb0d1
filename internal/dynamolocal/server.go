package dynamolocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// StartTimeout bounds how long Start waits for ListTables to answer.
const StartTimeout = 90 * time.Second

// Server is one running DynamoDB Local process.
type Server struct {
	jarDir, java string
	port         int
	dbPath       string // "" = in memory

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *lockedBuffer
}

// Start installs DynamoDB Local if needed, starts it in memory on a free
// loopback port and returns once ListTables answers and the server has been
// warmed up (see StartWithOptions).
func Start(ctx context.Context) (*Server, error) {
	return StartWithOptions(ctx, StartOptions{})
}

// StartOptions tunes StartWithOptions.
type StartOptions struct {
	// DBPath keeps the tables in files under this folder instead of memory,
	// so that they survive Stop and Resume (outage tests).
	DBPath string
}

// StartWithOptions is Start with options. Before it returns, the server has
// served a bounded warm-up (a table created, a few dozen writes and reads, one
// stream read, the table deleted), so that its JVM answers the first requests
// of a test as fast as later ones. A server that fails the warm-up is stopped
// and its error returned. Resume and Restart do not warm up: a server coming
// back from an outage is cold, as a real one would be.
func StartWithOptions(ctx context.Context, o StartOptions) (*Server, error) {
	if shortRun() {
		return nil, ErrShort // no JVM under -short, whoever asks (testing.go)
	}
	jarDir, java, err := Install(ctx)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{jarDir: jarDir, java: java, port: port, dbPath: o.DBPath}
		if lastErr = s.start(ctx); lastErr != nil {
			continue
		}
		if err := s.warmUp(ctx); err != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("%w\n%s", err, s.output())
		}
		return s, nil
	}
	return nil, lastErr
}

// Endpoint is the URL clients use, e.g. http://127.0.0.1:43121.
func (s *Server) Endpoint() string { return "http://127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// Stop kills the server and waits for it to exit. Safe to call twice.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

// Restart stops the server and starts a fresh (empty) one on the same port:
// clients keep their endpoint, as they would across a real outage.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Resume(ctx)
}

// Resume starts a stopped server again on the same port. With DBPath its
// tables are still there; in memory, it comes back empty.
func (s *Server) Resume(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the old socket may linger briefly
		if err = s.start(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}

// output is what the server has printed so far (its start, at most 64 KiB).
func (s *Server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // the whole process group
	<-s.exited
	s.cmd = nil
	return nil
}

func (s *Server) start(ctx context.Context) error {
	args := []string{
		"-Djava.library.path=" + filepath.Join(s.jarDir, "DynamoDBLocal_lib"),
		"-Xms64m", "-Xmx512m", "-XX:+UseSerialGC",
		"-jar", filepath.Join(s.jarDir, "DynamoDBLocal.jar"),
		"-sharedDb", "-disableTelemetry", "-port", strconv.Itoa(s.port),
	}
	if s.dbPath != "" {
		args = append(args, "-dbPath", s.dbPath)
	} else {
		args = append(args, "-inMemory")
	}
	cmd := exec.Command(s.java, args...)
	cmd.Dir = s.jarDir
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group (so Ctrl-C handling is ours and Stop kills it all) and
	// death with the parent, so a killed test binary leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dynamolocal: start java: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited, s.out = cmd, exited, out
	s.mu.Unlock()

	if err := s.waitReady(ctx, exited); err != nil {
		_ = s.Stop()
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	client := dynamodb.NewFromConfig(AWSConfig(s.Endpoint()), func(o *dynamodb.Options) {
		o.RetryMaxAttempts = 1
	})
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, time.Second)
		_, err := client.ListTables(callCtx, &dynamodb.ListTablesInput{})
		callCancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("dynamolocal: DynamoDB Local exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("dynamolocal: DynamoDB Local not ready on port %d: %w (last error: %v)", s.port, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// AWSConfig is an aws.Config that reaches DynamoDB Local at endpoint (both the
// DynamoDB and the DynamoDB Streams clients honour BaseEndpoint). Any static
// credentials work; the server runs with -sharedDb so all clients see one set
// of tables whatever their region or keys.
func AWSConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dynamolocal: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 { // keep only the start: enough to explain a failed start
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
