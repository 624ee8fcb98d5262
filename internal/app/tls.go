package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
)

// tlsFiles serves the certificate of --tls-cert-file / --tls-key-file (and
// verifies clients against --tls-client-ca-file) on both listeners. The
// files are read at start (an error stops the start) and again on reload
// (SIGHUP): a reload that fails is logged and the previous certificate stays
// in use, so a half-copied certificate never takes the server down.
type tlsFiles struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger
	cur                       atomic.Pointer[tls.Config]
}

func newTLSFiles(certFile, keyFile, caFile string, log *slog.Logger) (*tlsFiles, error) {
	t := &tlsFiles{certFile: certFile, keyFile: keyFile, caFile: caFile, log: log}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// load reads the files into the per-connection configuration.
func (t *tlsFiles) load() (*tls.Config, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-cert-file %s / --tls-key-file %s: %w", t.certFile, t.keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("--tls-cert-file %s: %w", t.certFile, err)
		}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--tls-client-ca-file %s: no PEM certificates in it", t.caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, leaf, nil
}

// reload swaps in the files' current contents, or returns why it could not
// (the previous configuration then stays).
func (t *tlsFiles) reload() error {
	cfg, leaf, err := t.load()
	if err != nil {
		return err
	}
	t.cur.Store(cfg)
	t.log.Info("tls certificate loaded", "cert_file", t.certFile, "subject", leaf.Subject.String(),
		"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter, "client_ca_file", t.caFile)
	return nil
}

// reloadOrKeep is the SIGHUP handler.
func (t *tlsFiles) reloadOrKeep() {
	if err := t.reload(); err != nil {
		t.log.Error("tls reload failed; still serving the previous certificate", "err", err)
	}
}

// config is the listener configuration: every handshake picks up the
// configuration current at that moment; connections already open keep
// theirs.
func (t *tlsFiles) config(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := t.cur.Load().Clone()
			c.NextProtos = nextProtos
			return c, nil
		},
	}
}

// listener wraps l so its connections speak TLS. The gRPC server is given
// TLS at the listener rather than with grpc.Creds because the same server
// also serves the REST gateway's in-process connection, which stays
// plaintext (it never leaves the process).
func (t *tlsFiles) listener(l net.Listener, nextProtos ...string) net.Listener {
	return tls.NewListener(l, t.config(nextProtos...))
}
