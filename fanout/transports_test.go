package fanout_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/fanout"
)

// pubsubServer is a pub/sub server a test can stop and start again on the same
// address, and dial.
type pubsubServer interface {
	dial(t testing.TB) fanout.Transport
	start()
	stop()
}

// transports are the Transport implementations the shared tests run over.
var transports = []struct {
	name  string
	start func(testing.TB) pubsubServer
}{
	{"NATS", func(t testing.TB) pubsubServer { return startNATS(t) }},
	{"Redis", func(t testing.TB) pubsubServer { return startRedis(t) }},
}

func (s *natsServer) dial(t testing.TB) fanout.Transport { return dial(t, s) }

// redisBinary is Debian's redis-server (make test installs it). Missing, the
// Redis tests skip, except under CI=true where they fail.
func redisBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr == nil {
			return "/usr/bin/redis-server"
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found (CI=true: failing, not skipping): %v; run make deps", err)
		}
		t.Skipf("redis-server not found: %v (make deps installs it)", err)
	}
	return p
}

// redisServer is a redis-server process on loopback with persistence off.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	args []string // extra configuration, e.g. ACL users
	opts redis.Options
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(t testing.TB) *redisServer { return startRedisWith(t, redis.Options{}) }

// startRedisWith starts redis-server with args added to its command line;
// opts (credentials, TLS) are what the readiness check and dial use, with
// Addr set here.
func startRedisWith(t testing.TB, opts redis.Options, args ...string) *redisServer {
	t.Helper()
	s := &redisServer{t: t, bin: redisBinary(t), dir: t.TempDir(), args: args, opts: opts}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs redis-server and returns once it answers PING. A first start
// that loses its free port to another process tries another one.
func (s *redisServer) start() {
	s.t.Helper()
	for attempt := 0; ; attempt++ {
		first := s.port == 0
		if first {
			s.port = freePort(s.t)
		}
		args := append([]string{"--port", itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", s.dir, "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"}, s.args...)
		cmd := exec.Command(s.bin, args...)
		if err := cmd.Start(); err != nil {
			s.t.Fatalf("redis-server: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		o := s.opts
		o.Addr, o.MaxRetries = s.addr(), -1
		c := redis.NewClient(&o)
		up := awaitCond(30*time.Second, func() bool {
			select {
			case <-done:
				return true
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return c.Ping(ctx).Err() == nil
		})
		_ = c.Close()
		select {
		case <-done: // exited: port taken?
			if attempt < 5 {
				if first {
					s.port = 0
				}
				continue
			}
			s.t.Fatalf("redis-server exited at start on port %d", s.port)
		default:
		}
		if !up {
			_ = cmd.Process.Kill()
			<-done
			s.t.Fatalf("redis-server on port %d not ready in 30s", s.port)
		}
		s.cmd, s.done = cmd, done
		return
	}
}

// stop kills the server (clients see their connections drop).
func (s *redisServer) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
}

func (s *redisServer) addr() string { return "127.0.0.1:" + itoa(s.port) }

func (s *redisServer) dial(t testing.TB) fanout.Transport {
	t.Helper()
	o := s.opts
	o.Addr = s.addr()
	tr, err := fanout.DialRedis(testContext(t), &o)
	if err != nil {
		t.Fatalf("DialRedis: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// testCert writes a self-signed CA and a server certificate for 127.0.0.1
// signed by it; it returns the CA's PEM file and the server's tls.Config.
func testCert(t testing.TB) (caFile string, srv *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tieredcache test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
