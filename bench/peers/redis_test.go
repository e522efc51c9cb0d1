package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// redisServer is a redis-server process this benchmark started on a free
// loopback port, with persistence off. It is not a system service: the
// binary runs as a child of the test process and is stopped by stop.
type redisServer struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// startRedis starts redis-server (from $PATH, or $TC_REDIS_SERVER) and waits
// until it answers PING.
func startRedis(ctx context.Context) (*redisServer, error) {
	bin := os.Getenv("TC_REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("redis-server not found (make bench-report installs it with apt): %w", err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "yes", "--loglevel", "warning")
	// Its banner and warnings (stdout) are not the benchmark's output;
	// errors (stderr) are.
	cmd.Stderr = os.Stderr
	// Its own process group: a ^C to the benchmark's group reaches it only
	// through stop, after the clients have closed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &redisServer{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	for {
		if err := ping(s.addr); err == nil {
			return s, nil
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("redis-server exited before answering: %v", err)
		case <-ctx.Done():
			_ = s.stop()
			return nil, fmt.Errorf("redis-server did not answer PING on %s: %w", s.addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}

// stop terminates redis-server (SIGTERM, then SIGKILL after 5 s) and waits
// for it.
func (s *redisServer) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("redis-server ignored SIGTERM; killed")
	}
}
