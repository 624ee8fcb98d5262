package destination_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/testenv"
)

// Secrets the failure tests plant; none may appear in any text that leaves
// destination.
const (
	fxSASSig    = "SASSIGNATUREabcdefghijklmnopqrstuvwxyz0123456+/="
	fxS3Secret  = "S3SECRETKEYabcdefghijklmnopqrstuvwxyz0123"
	fxBodyToken = "TOKENBODYMARKER"          // what a token endpoint answers
	fxBodyStore = "STORAGEBODYMARKER-s3cr3t" // what a non-provider storage host answers
)

func fxSASToken() string {
	return "sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2099-01-01T00:00:00Z&st=2020-01-01T00:00:00Z&spr=https,http&sig=" + url.QueryEscape(fxSASSig)
}

// fxServiceAccountKey is a real (throw-away) service account key whose
// token_uri is tokenURI.
func fxServiceAccountKey(t *testing.T, tokenURI string) (jsonKey, pemKey string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pemKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "p", "private_key_id": "fxprivatekeyid0123456789",
		"private_key": pemKey, "client_email": "export@p.iam.gserviceaccount.com", "client_id": "1",
		"token_uri": tokenURI,
	})
	return string(b), pemKey
}

// fxEndpoints are the failure modes a provider's host can show.
type fxEndpoints struct {
	refused, dns, tls, status500, tokenBody string
	hits                                    *atomic.Int64 // requests the local servers received
}

func startFxEndpoints(t *testing.T) fxEndpoints {
	t.Helper()
	var e fxEndpoints
	e.hits = new(atomic.Int64)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.refused = "http://" + l.Addr().String()
	l.Close()
	e.dns = "http://auditexport-no-such-host.invalid:9000"
	// A plain HTTP server called over https: a TLS handshake failure.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.hits.Add(1) }))
	t.Cleanup(plain.Close)
	e.tls = "https://" + plain.Listener.Addr().String()
	// A host that answers 500 with a body quoting the request (as a proxy
	// or an internal admin page might).
	s500 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "%s %s\nAuthorization: %s\n%s", r.Method, r.URL, r.Header.Get("Authorization"), fxBodyStore)
	}))
	t.Cleanup(s500.Close)
	e.status500 = s500.URL
	// A token endpoint answering 403 with a body of its own.
	tok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<html>%s %s</html>", fxBodyToken, fxBodyStore)
	}))
	t.Cleanup(tok.Close)
	e.tokenBody = tok.URL + "/token"
	return e
}

// fxCheck runs what a TestStorageIntegration and a run do (Probe; Open +
// Upload + Describe/Message) and checks that no text holds a secret and
// every text is bounded.
func fxCheck(t *testing.T, in destination.Integration, o destination.OpenOptions, secrets []string, wantAny ...string) {
	t.Helper()
	fxCheckRaw(t, in, o, secrets, true, wantAny...)
}

// fxCheckRaw is fxCheck; checkRaw false skips the SDK's own error text,
// which quotes the body of a host that echoes the request (that text never
// leaves destination: Describe and Message do).
func fxCheckRaw(t *testing.T, in destination.Integration, o destination.OpenOptions, secrets []string, checkRaw bool, wantAny ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res := destination.Probe(ctx, in, o)
	if res.OK {
		t.Fatalf("probe succeeded against a failing host")
	}
	texts := map[string]string{"probe message": res.Message}
	if res.Provider != nil {
		texts["probe provider code"], texts["probe provider message"] = res.Provider.Code, res.Provider.Message
	}
	b, _, err := destination.Open(ctx, in, o)
	if err == nil {
		defer b.Close()
		err = b.Upload(ctx, "p/x.csv", bytes.NewReader([]byte("a,b\n")), &blob.WriterOptions{ContentType: "text/csv"})
	}
	if err == nil {
		t.Fatal("upload succeeded against a failing host")
	}
	texts["raw error"] = err.Error()
	if pe, _ := destination.Describe(b, err); pe != nil {
		texts["run provider message"] = pe.Code + ": " + pe.Message
	} else {
		texts["run provider message"] = destination.Message(err)
	}
	texts["message"] = destination.Message(err)
	all := ""
	for what, s := range texts {
		all += s + "\n"
		if what == "raw error" && !checkRaw {
			continue
		}
		for _, sec := range secrets {
			if sec != "" && strings.Contains(s, sec) {
				t.Errorf("%s holds secret %q: %s", what, sec, s)
			}
		}
		for _, bad := range []string{"sig=" + url.QueryEscape(fxSASSig)[:8], "BEGIN PRIVATE KEY", fxBodyToken, fxBodyStore} {
			if what == "raw error" && bad == fxBodyStore {
				continue // gocloud's own text of a storage error quotes the body; it never leaves as is
			}
			if strings.Contains(s, bad) {
				t.Errorf("%s holds %q: %s", what, bad, s)
			}
		}
		if what != "raw error" && len(s) > destination.MaxMessageLen {
			t.Errorf("%s is %d bytes long", what, len(s))
		}
	}
	if len(wantAny) > 0 {
		found := false
		for _, w := range wantAny {
			found = found || strings.Contains(strings.ToLower(all), strings.ToLower(w))
		}
		if !found {
			t.Errorf("no text says %q:\n%s", wantAny, all)
		}
	}
	t.Logf("probe: step=%s message=%q provider=%+v", res.FailedStep, res.Message, res.Provider)
}

// TestProviderFailuresLeakNothing: every provider's failure modes (DNS
// failure, refused connection, TLS error, 403, 5xx from a host that echoes
// the request) against real servers on 127.0.0.1: the probe answer and
// the run's provider message name the failure, hold no signature, key,
// token or foreign response body, and are bounded.
func TestProviderFailuresLeakNothing(t *testing.T) {
	ep := startFxEndpoints(t)
	allow := destination.OpenOptions{AllowPrivateEndpoints: true}
	modes := []struct{ name, endpoint, want string }{
		{"dns", ep.dns, "no such host"},
		{"refused", ep.refused, "refused"},
		{"tls", ep.tls, "http response to https client"},
		{"500", ep.status500, "500"},
	}

	t.Run("azure_sas", func(t *testing.T) {
		t.Parallel()
		az := testenv.StartAzurite(t)
		az.CreateContainer(t, "fxbucket")
		dest := "azure://" + testenv.AzuriteAccount + ".blob.core.windows.net/fxbucket/p/"
		creds := destination.Credentials{Kind: "azure_sas", SASToken: fxSASToken()}
		secrets := []string{fxSASSig, url.QueryEscape(fxSASSig), "2099-01-01"}
		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				in := destination.Integration{Provider: destination.AzureBlob, Destination: dest, Endpoint: m.endpoint + "/" + testenv.AzuriteAccount, Creds: creds}
				fxCheckRaw(t, in, allow, secrets, m.endpoint != ep.status500, m.want)
			})
		}
		t.Run("403", func(t *testing.T) {
			in := destination.Integration{Provider: destination.AzureBlob, Destination: dest, Endpoint: az.Endpoint, Creds: creds}
			fxCheck(t, in, allow, secrets, "AuthorizationFailure", "AuthenticationFailed")
		})
		t.Run("shared key 403", func(t *testing.T) {
			key := "V1JPTkdLRVl3cm9uZ2tleXdyb25na2V5d3JvbmdrZXl3cm9uZ2tleXdyb25nPT0="
			in := destination.Integration{Provider: destination.AzureBlob, Destination: dest, Endpoint: az.Endpoint,
				Creds: destination.Credentials{Kind: "azure_shared_key", AccountName: testenv.AzuriteAccount, AccountKey: key}}
			fxCheck(t, in, allow, []string{key}, "AuthorizationFailure", "AuthenticationFailed")
		})
	})

	t.Run("s3", func(t *testing.T) {
		t.Parallel()
		minio := testenv.StartMinIO(t)
		minio.CreateBucket(t, "fxbucket")
		creds := destination.Credentials{Kind: "aws_access_key", AccessKeyID: minio.AccessKey, SecretAccessKey: fxS3Secret}
		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				in := destination.Integration{Provider: destination.S3, Destination: "s3://fxbucket/p/", Endpoint: m.endpoint, Creds: creds}
				fxCheck(t, in, allow, []string{fxS3Secret}, m.want)
			})
		}
		t.Run("403", func(t *testing.T) {
			in := destination.Integration{Provider: destination.S3, Destination: "s3://fxbucket/p/", Endpoint: minio.Endpoint, Creds: creds}
			fxCheck(t, in, allow, []string{fxS3Secret}, "SignatureDoesNotMatch")
		})
	})

	t.Run("gcs", func(t *testing.T) {
		t.Parallel()
		// The storage host's failures (the emulator path: no token).
		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				jsonKey, pemKey := fxServiceAccountKey(t, ep.refused+"/token")
				in := destination.Integration{Provider: destination.GCS, Destination: "gs://fxbucket/p/", Endpoint: m.endpoint,
					Creds: destination.Credentials{Kind: "gcs_service_account", JSONKey: jsonKey}}
				fxCheck(t, in, allow, []string{pemKey[40:80]}, m.want)
			})
		}
		// The token endpoint's failures: the key's token_uri.
		tokenModes := []struct{ name, uri, want string }{
			{"token dns", ep.dns + "/token", "no such host"},
			{"token refused", ep.refused + "/token", "refused"},
			{"token tls", ep.tls + "/token", "http response to https client"},
			{"token 403 with a body", ep.tokenBody, "HTTP 403"},
			{"token 500 with a body", ep.status500 + "/token", "HTTP 500"},
		}
		for _, m := range tokenModes {
			t.Run(m.name, func(t *testing.T) {
				jsonKey, pemKey := fxServiceAccountKey(t, m.uri)
				in := destination.Integration{Provider: destination.GCS, Destination: "gs://fxbucket/p/",
					Creds: destination.Credentials{Kind: "gcs_service_account", JSONKey: jsonKey}}
				fxCheck(t, in, allow, []string{pemKey[40:80], "fxprivatekeyid0123456789"}, m.want)
			})
		}
	})
}

// TestGCSTokenURIIsGuarded: with private endpoints off, the OAuth token
// exchange of a service account key whose token_uri is a loopback server
// is refused at dial time: the server never receives a request, and the
// answer says the address is refused (without any response body).
func TestGCSTokenURIIsGuarded(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"ya29.%s","token_type":"Bearer","expires_in":3600}`, fxBodyToken)
	}))
	defer srv.Close()
	jsonKey, pemKey := fxServiceAccountKey(t, srv.URL+"/token")
	in := destination.Integration{Provider: destination.GCS, Destination: "gs://fxbucket/p/",
		Creds: destination.Credentials{Kind: "gcs_service_account", JSONKey: jsonKey}}
	fxCheck(t, in, destination.OpenOptions{AllowPrivateEndpoints: false}, []string{pemKey[40:80]},
		"loopback address; private endpoints are not allowed")
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback token endpoint received %d requests", n)
	}
}
