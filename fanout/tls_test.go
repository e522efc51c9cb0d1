package fanout_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/tieredcache/tieredcache/fanout"
)

// TestTLSEndToEnd: pods and the bridge reach an embedded NATS server over
// TLS (a CA and certificate generated here) and evictions pass; a client
// that does not trust the CA cannot connect.
func TestTLSEndToEnd(t *testing.T) {
	caFile, srvTLS := testCert(t)
	ns := &natsServer{t: t, port: -1, tls: srvTLS}
	ns.start()
	t.Cleanup(ns.stop)

	dialTLS := func() fanout.Transport {
		tr, err := fanout.DialNATS(ns.url(), nats.RootCAs(caFile))
		if err != nil {
			t.Fatalf("DialNATS over TLS: %v", err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		waitFor(t, "a TLS connection", tr.Conn().IsConnected)
		if st, err := tr.Conn().TLSConnectionState(); err != nil || !st.HandshakeComplete {
			t.Fatalf("connection without a TLS handshake: %v", err)
		}
		return tr
	}
	endToEnd(t, "NATS+TLS", 50, dialTLS(), dialTLS(), dialTLS())

	// Without the CA: the handshake fails on the certificate. (DialNATS
	// retries a failed connect for ever by default; the option after it
	// makes the failure visible here.)
	_, err := fanout.DialNATS(ns.url(), nats.RetryOnFailedConnect(false))
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	if err == nil || !(errors.As(err, &unknown) || errors.As(err, &verify)) {
		t.Fatalf("a client without the CA: err %v, want a certificate verification error", err)
	}
}
