package integration_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// testCA is a throw-away certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	return ca
}

// issue signs a leaf certificate for 127.0.0.1 (server) or a client and
// returns its PEM certificate and key.
func (ca *testCA) issue(t *testing.T, serial int64, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "auditexport test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	if client {
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.DNSNames = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil
		tmpl.Subject.CommonName = "auditexport test client"
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// writeAtomically replaces path as a deployment tool would (temp + rename).
func writeAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeServerCert writes a server certificate of ca with serial into dir.
func writeServerCert(t *testing.T, dir string, ca *testCA, serial int64) (certFile, keyFile string) {
	t.Helper()
	c, k := ca.issue(t, serial, false)
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	writeAtomically(t, certFile, c)
	writeAtomically(t, keyFile, k)
	return certFile, keyFile
}

func httpsURL(s *Server) string { return "https://" + strings.TrimPrefix(s.HTTPURL, "http://") }

// tlsCall makes one authenticated gRPC call over a new TLS connection and
// returns the serial of the certificate the server presented.
func tlsCall(t *testing.T, s *Server, cfg *tls.Config) (serial string, err error) {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 10*time.Second)
	defer cancel()
	var p peer.Peer
	me, err := pb.NewAccountServiceClient(conn).GetCurrentUser(ctx, &pb.GetCurrentUserRequest{}, grpc.Peer(&p))
	if err != nil {
		return "", err
	}
	if me.GetUser().GetEmail() != "admin@example.com" {
		t.Errorf("GetCurrentUser over TLS: %v", me)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("gRPC call without a TLS peer: %#v", p.AuthInfo)
	}
	return info.State.PeerCertificates[0].SerialNumber.String(), nil
}

// httpsCall GETs /v1/users/me over a new TLS connection and returns the
// serial of the server's certificate.
func httpsCall(t *testing.T, s *Server, cfg *tls.Config) (serial string, err error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", httpsURL(s)+"/v1/users/me", nil)
	req.Header.Set("Authorization", "Bearer "+s.AdminKey)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "admin@example.com") {
		t.Fatalf("GET /v1/users/me over TLS: %d %s", resp.StatusCode, body)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

// TestTLSServe: with --tls-cert-file/--tls-key-file both listeners speak
// TLS only; gRPC (TLS credentials), REST (https) and auditctl --tls-ca-file
// work; plaintext gets nothing. SIGHUP after the files are replaced serves
// the new certificate to new connections; a broken replacement is refused
// and the current certificate stays.
func TestTLSServe(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "auditexport test CA")
	dir := t.TempDir()
	certFile, keyFile := writeServerCert(t, dir, ca, 1001)
	caFile := filepath.Join(dir, "ca.pem")
	writeAtomically(t, caFile, ca.pem)
	s := StartServer(t, "sqlite", "--tls-cert-file", certFile, "--tls-key-file", keyFile)
	client := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}

	if serial, err := tlsCall(t, s, client); err != nil || serial != "1001" {
		t.Fatalf("gRPC over TLS: serial %q, %v", serial, err)
	}
	if serial, err := httpsCall(t, s, client); err != nil || serial != "1001" {
		t.Fatalf("REST over TLS: serial %q, %v", serial, err)
	}

	// Plaintext is refused on both listeners, and the key never gets an answer.
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 5*time.Second)
	defer cancel()
	if _, err := pb.NewAccountServiceClient(s.Conn).GetCurrentUser(ctx, &pb.GetCurrentUserRequest{}); err == nil {
		t.Error("a plaintext gRPC call to the TLS listener succeeded")
	}
	req, _ := http.NewRequest("GET", s.HTTPURL+"/v1/users/me", nil)
	req.Header.Set("Authorization", "Bearer "+s.AdminKey)
	if resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: testenv.HTTP.Transport}).Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), "admin@example.com") {
			t.Errorf("a plaintext REST call to the TLS listener answered %d %s", resp.StatusCode, body)
		}
	}
	// A client that does not trust the CA refuses the server.
	if _, err := tlsCall(t, s, &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("a client without the test CA accepted the server's certificate")
	}

	// auditctl (over clients/go) with the CA file; without it, the system
	// roots do not know the test CA.
	c := newCtl(t, s)
	mustContain(t, "auditctl --tls-ca-file users me", c.ok("--tls-ca-file", caFile, "users", "me"), "admin@example.com")
	c.fails(1, "--tls", "users", "me")

	// Replace the files and reload: new connections see the new serial.
	writeServerCert(t, dir, ca, 2002)
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	tlsWaitFor(t, 10*time.Second, "the reloaded certificate", func() bool {
		serial, err := tlsCall(t, s, client)
		return err == nil && serial == "2002"
	})
	for i := 0; i < 3; i++ {
		if serial, err := tlsCall(t, s, client); err != nil || serial != "2002" {
			t.Errorf("gRPC after reload: serial %q, %v; want 2002 only", serial, err)
		}
		if serial, err := httpsCall(t, s, client); err != nil || serial != "2002" {
			t.Errorf("REST after reload: serial %q, %v; want 2002 only", serial, err)
		}
	}

	// A broken replacement: logged, and the server goes on with 2002.
	writeAtomically(t, certFile, []byte("not a certificate\n"))
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	tlsWaitFor(t, 10*time.Second, "the failed reload to be logged", func() bool {
		return strings.Contains(s.Logs(), "tls reload failed")
	})
	if serial, err := httpsCall(t, s, client); err != nil || serial != "2002" {
		t.Errorf("REST after a failed reload: serial %q, %v; want 2002", serial, err)
	}
	if serial, err := tlsCall(t, s, client); err != nil || serial != "2002" {
		t.Errorf("gRPC after a failed reload: serial %q, %v; want 2002", serial, err)
	}
	if strings.Contains(s.Logs(), "PRIVATE KEY") {
		t.Error("the server logged key material")
	}
}

// TestTLSClientCA: with --tls-client-ca-file, gRPC and REST clients need a
// certificate of that CA.
func TestTLSClientCA(t *testing.T) {
	t.Parallel()
	ca, clientCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "other CA")
	dir := t.TempDir()
	certFile, keyFile := writeServerCert(t, dir, ca, 3003)
	clientCAFile := filepath.Join(dir, "client-ca.pem")
	writeAtomically(t, clientCAFile, clientCA.pem)
	s := StartServer(t, "sqlite", "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-client-ca-file", clientCAFile)

	var clientCert, clientKey []byte
	withCert := func(ca *testCA) *tls.Config {
		c, k := ca.issue(t, 4004, true)
		if clientCert == nil {
			clientCert, clientKey = c, k
		}
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	good, wrong := withCert(clientCA), withCert(otherCA)
	good.RootCAs, wrong.RootCAs = ca.pool, ca.pool
	none := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}

	if _, err := tlsCall(t, s, good); err != nil {
		t.Errorf("gRPC with a valid client certificate: %v", err)
	}
	if _, err := httpsCall(t, s, good); err != nil {
		t.Errorf("REST with a valid client certificate: %v", err)
	}
	// auditctl with --tls-client-cert-file / --tls-client-key-file.
	caFile, ccFile, ckFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	writeAtomically(t, caFile, ca.pem)
	writeAtomically(t, ccFile, clientCert)
	writeAtomically(t, ckFile, clientKey)
	c := newCtl(t, s)
	mustContain(t, "auditctl with a client certificate",
		c.ok("--tls-ca-file", caFile, "--tls-client-cert-file", ccFile, "--tls-client-key-file", ckFile, "users", "me"), "admin@example.com")
	c.fails(1, "--tls-ca-file", caFile, "users", "me")
	mustContain(t, "auditctl with half a client certificate",
		c.fails(2, "--tls-ca-file", caFile, "--tls-client-cert-file", ccFile, "users", "me"), "--tls-client-key-file")

	for name, cfg := range map[string]*tls.Config{"no client certificate": none, "a certificate of another CA": wrong} {
		if _, err := tlsCall(t, s, cfg); err == nil {
			t.Errorf("gRPC with %s succeeded", name)
		}
		if _, err := httpsCall(t, s, cfg); err == nil {
			t.Errorf("REST with %s succeeded", name)
		}
	}
}

// TestTLSFlagErrors: half a TLS configuration or unreadable files stop the
// start with a message naming the flag.
func TestTLSFlagErrors(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "CA")
	dir := t.TempDir()
	certFile, keyFile := writeServerCert(t, dir, ca, 5005)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert-file", certFile}, "--tls-key-file"},
		{[]string{"--tls-key-file", keyFile}, "--tls-cert-file"},
		{[]string{"--tls-client-ca-file", certFile}, "--tls-client-ca-file"},
		{[]string{"--tls-cert-file", missing, "--tls-key-file", keyFile}, missing},
		{[]string{"--tls-cert-file", certFile, "--tls-key-file", certFile}, "--tls-key-file"},
		{[]string{"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-client-ca-file", missing}, missing},
		{[]string{"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-client-ca-file", keyFile}, "no PEM certificates"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)
		out, err := exec.CommandContext(ctx, toolPath, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("serve %s: %v, output:\n%s\nwant a failed start naming %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}

// tlsWaitFor polls cond until it holds or the timeout passes.
func tlsWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReadmeTLS runs the README's TLS blocks as written: a certificate
// made with openssl, a server started with it (as the README says), curl,
// grpcurl and auditctl over TLS, plaintext refused, and a renewal reloaded
// with SIGHUP (the served serial must be the new file's).
func TestReadmeTLS(t *testing.T) {
	t.Parallel()
	certScript, script := readmeBlock(t, "tls-cert", "sh"), readmeBlock(t, "tls", "sh")
	dir := t.TempDir()
	bin := t.TempDir()
	for _, tool := range []string{grpcurl(t), auditctlBin(t)} {
		if err := os.Symlink(tool, filepath.Join(bin, filepath.Base(tool))); err != nil {
			t.Fatal(err)
		}
	}
	run := func(label, script string, env []string) string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Env = append(env, "TLS_DIR="+dir, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("README %s failed: %v\n%s", label, err, out)
		}
		return string(out)
	}
	run("tls-cert", certScript, os.Environ())
	first := readSerial(t, filepath.Join(dir, "server.crt"))

	s := StartServer(t, "sqlite", "--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"))
	out := run("tls", script, append(newCtl(t, s).env, "GRPC="+s.GRPCAddr, "HTTPS="+httpsURL(s),
		"AUDITEXPORT_PID="+strconv.Itoa(s.Pid())))
	mustContain(t, "README TLS", out, `"status":"SERVING"`, `"status": "SERVING"`, "plaintext refused")
	if n := strings.Count(out, "admin@example.com"); n < 2 {
		t.Errorf("README TLS: users/me answered %d times, want curl and auditctl:\n%s", n, out)
	}
	var file, served string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "file:   serial="); ok {
			file = v
		}
		if v, ok := strings.CutPrefix(line, "served: serial="); ok {
			served = v
		}
	}
	if file == "" || served != file || strings.EqualFold(file, first) {
		t.Errorf("README TLS reload: file serial %q, served %q, first %q; want the renewed file's serial served\n%s", file, served, first, out)
	}
}

func readSerial(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(c.SerialNumber.Text(16))
}
