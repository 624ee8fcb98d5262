package integration_test

// Issue 9, items 1 and 3: no credential material in any error text (probe
// answer, run history, stored row, failure mail, logs), provider messages
// bounded, and the GCS key's token_uri fetched through the guarded dialer.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// rdServiceAccountKey is a throw-away service account key naming tokenURI.
func rdServiceAccountKey(t *testing.T, tokenURI string) (jsonKey string, secrets []string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "p", "private_key_id": "rdprivatekeyid0123456789",
		"private_key": pemKey, "client_email": "export@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": tokenURI,
	})
	lines := strings.Split(pemKey, "\n")
	return string(b), []string{lines[1], lines[5], "rdprivatekeyid0123456789", "BEGIN PRIVATE KEY"}
}

// rdRecorder is a hostile or broken host: it answers with a body quoting
// what it received (the request line, Authorization, the form body).
type rdRecorder struct {
	mu   sync.Mutex
	seen []string // Authorization values and bodies received
	hits atomic.Int64
}

func (r *rdRecorder) record(req *http.Request) string {
	r.hits.Add(1)
	body, _ := io.ReadAll(req.Body)
	got := req.Method + " " + req.URL.String() + " Authorization: " + req.Header.Get("Authorization") + " " + string(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := req.Header.Get("Authorization"); a != "" {
		r.seen = append(r.seen, a)
	}
	if len(body) > 0 {
		r.seen = append(r.seen, string(body))
	}
	return got
}

// secretsSeen are the credential values the host received: signatures
// from the Authorization header, the JWT assertion of a token request.
func (r *rdRecorder) secretsSeen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	sigRE := regexp.MustCompile(`Signature=([0-9a-f]{16,})`)
	jwtRE := regexp.MustCompile(`assertion=([A-Za-z0-9_\-.]{40,})`)
	for _, s := range r.seen {
		for _, m := range sigRE.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		for _, m := range jwtRE.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1][:40])
		}
	}
	return out
}

// TestNoCredentialInErrors: for every cloud provider, a failing
// destination (Azure: refused connection with a SAS; S3: a host whose 403
// message quotes the signed Authorization header; GCS: a token endpoint
// answering 400 with a body quoting the signed assertion) yields a
// TestStorageIntegration answer (gRPC and REST), a Send now run
// (stream, GetExportRun over gRPC and REST), an export_runs row, a failure
// mail and server logs that hold no signature, key, token or foreign body.
func TestNoCredentialInErrors(t *testing.T) {
	t.Parallel()
	mp := testenv.StartMailpit(t)
	s := StartServer(t, "sqlite", "--smtp-url", mp.SMTPURL, "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(50)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	const sasSig = "RDSASSIGNATUREabcdefghijklmnopqrstuvwxyz012345+/="
	const s3Secret = "RDS3SECRETabcdefghijklmnopqrstuvwxyz0123456"
	const bodyMarker = "RDFOREIGNBODYMARKER"

	s3Host := &rdRecorder{}
	s3Srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := s3Host.record(r)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<Error><Code>AccessDenied</Code><Message>denied: %s</Message></Error>", xmlEscape(got))
	}))
	defer s3Srv.Close()
	tokHost := &rdRecorder{}
	tokSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := tokHost.record(r)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "%s %s", bodyMarker, got)
	}))
	defer tokSrv.Close()
	gcsKey, gcsSecrets := rdServiceAccountKey(t, tokSrv.URL+"/token")

	cases := []struct {
		name, provider, dest, endpoint, creds string
		secrets                               func() []string
		wantProvider                          string // in the provider message
	}{
		{"azure", "PROVIDER_AZURE_BLOB", "azure://" + testenv.AzuriteAccount + ".blob.core.windows.net/rdbucket/exports/",
			"http://" + closed + "/" + testenv.AzuriteAccount,
			fmt.Sprintf(`{"azureSas":{"token":%q}}`, "sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2099-01-01T00:00:00Z&spr=https,http&sig="+url.QueryEscape(sasSig)),
			func() []string { return []string{sasSig, url.QueryEscape(sasSig), "sig=RDSAS", "2099-01-01"} }, "refused"},
		{"s3", "PROVIDER_S3", "s3://rdbucket/exports/", s3Srv.URL,
			fmt.Sprintf(`{"awsAccessKey":{"accessKeyId":"AKIARDEXAMPLE","secretAccessKey":%q}}`, s3Secret),
			func() []string { return append([]string{s3Secret}, s3Host.secretsSeen()...) }, "AccessDenied"},
		{"gcs", "PROVIDER_GCS", "gs://rdbucket/exports/", "",
			fmt.Sprintf(`{"gcsServiceAccount":{"jsonKey":%q}}`, gcsKey),
			func() []string { return append(append([]string{bodyMarker}, gcsSecrets...), tokHost.secretsSeen()...) }, "HTTP 400"},
	}
	db := s.OpenDB()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := xfEnv{t, s}
			id := e.integration("rd"+tc.name, tc.provider, tc.dest, tc.endpoint, tc.creds)
			texts := map[string]string{}
			for _, tr := range []Transport{grpcTransport{s}, restTransport{s}} {
				r := tr.Call(t, "TestStorageIntegration", s.AdminKey, fmt.Sprintf(`{"id":%q}`, id), "")
				if r.Code != codes.OK || r.Body["ok"] == true {
					t.Fatalf("%s TestStorageIntegration: %v %s %v", tr.Name(), r.Code, r.Message, r.Body)
				}
				b, _ := json.Marshal(r.Body)
				texts[tr.Name()+" TestStorageIntegration"] = string(b)
				if pm, _ := r.Body["providerMessage"].(string); len(pm) > 1024 {
					t.Errorf("%s TestStorageIntegration provider message is %d bytes", tr.Name(), len(pm))
				}
			}
			uri := strings.Replace(tc.dest, "exports/", "exports/x-{run_id}.csv", 1)
			schID, _ := e.schedule("rd"+tc.name, uri, "COMPRESSION_NONE")
			xs := e.sendNow(schID)
			end := xs.Terminal(2 * time.Minute)
			if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED {
				t.Fatalf("terminal phase %v, want FAILED: %v", end.GetPhase(), end)
			}
			texts["stream error"] = end.GetError().String()
			texts["GetExportRun grpc"] = e.getRun(xs.RunID()).GetError().String()
			r := restTransport{s}.Call(t, "GetExportRun", s.AdminKey, fmt.Sprintf(`{"id":%q}`, xs.RunID()), "")
			b, _ := json.Marshal(r.Body)
			texts["GetExportRun rest"] = string(b)
			var errMsg, provMsg string
			if err := db.QueryRow("SELECT COALESCE(error_message, ''), COALESCE(provider_message, '') FROM export_runs WHERE id = ?", xs.RunID()).Scan(&errMsg, &provMsg); err != nil {
				t.Fatal(err)
			}
			texts["export_runs row"] = errMsg + "\n" + provMsg
			if len(provMsg) > 1024 {
				t.Errorf("stored provider_message is %d bytes", len(provMsg))
			}
			if !strings.Contains(provMsg, tc.wantProvider) {
				t.Errorf("stored provider_message %q does not say %q", provMsg, tc.wantProvider)
			}
			m := mp.WaitFor(t, func(m testenv.Message) bool { return strings.Contains(m.Text, xs.RunID()) }, time.Minute)
			texts["failure mail"] = m.Subject + "\n" + m.Text
			texts["server log"] = s.Logs()
			secrets := tc.secrets()
			if tc.name != "azure" && len(secrets) < 2 {
				t.Fatalf("the hostile host saw no credential to look for: %v", secrets)
			}
			for what, text := range texts {
				for _, sec := range secrets {
					if sec != "" && strings.Contains(text, sec) {
						t.Errorf("%s holds %q:\n%s", what, sec, text)
					}
				}
			}
			t.Logf("stored provider_message: %s", provMsg)
		})
	}
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// TestGCSTokenURIGuarded: a GCS key whose token_uri is a loopback address
// is refused at save time, and one stored while private endpoints were
// allowed (or whose host later resolves inward) is refused at dial time:
// the token endpoint never receives a request, over gRPC and REST.
func TestGCSTokenURIGuarded(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	tok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "INTERNALSERVICEBODY")
	}))
	defer tok.Close()
	key, _ := rdServiceAccountKey(t, tok.URL+"/token")
	creds := fmt.Sprintf(`{"gcsServiceAccount":{"jsonKey":%q}}`, key)

	s := StartServer(t, "sqlite", "--notify-allowed-domains", "example.com")
	xfLogsOnFailure(t, s)
	e := xfEnv{t, s}
	e.seed(10)
	id := e.integration("tokenguard", "PROVIDER_GCS", "gs://rdbucket/exports/", "", creds)
	schID, _ := e.schedule("tokenguard", "gs://rdbucket/exports/x-{run_id}.csv", "COMPRESSION_NONE")

	s.Stop()
	s.start("--allow-private-endpoints=false", "--notify-allowed-domains", "example.com")
	e = xfEnv{t, s}

	for _, tr := range []Transport{grpcTransport{s}, restTransport{s}} {
		r := tr.Call(t, "TestStorageIntegration", s.AdminKey, fmt.Sprintf(`{"id":%q}`, id), "")
		pm, _ := r.Body["providerMessage"].(string)
		if r.Code != codes.OK || r.Body["ok"] == true || !strings.Contains(pm, "loopback address; private endpoints are not allowed") || strings.Contains(pm, "INTERNALSERVICEBODY") {
			t.Errorf("%s TestStorageIntegration: %v %s %v", tr.Name(), r.Code, r.Message, r.Body)
		}
		// Saving such a key is refused, naming the field.
		res := tr.Call(t, "CreateStorageIntegration", s.AdminKey, fmt.Sprintf(`{"storageIntegration":{"name":"tokenguard2-%s","provider":"PROVIDER_GCS",
			"destination":"gs://rdbucket/exports/","credentials":%s}}`, tr.Name(), creds), "")
		checkRefusal(t, res, codes.InvalidArgument, "storage_integration.credentials.gcs_service_account.json_key")
		if !strings.Contains(res.Message, "token_uri") {
			t.Errorf("%s CreateStorageIntegration refusal does not name token_uri: %s", tr.Name(), res.Message)
		}
	}
	xs := e.sendNow(schID)
	end := xs.Terminal(2 * time.Minute)
	if pm := end.GetError().GetProviderMessage(); end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED ||
		!strings.Contains(pm, "private endpoints are not allowed") || strings.Contains(pm, "INTERNALSERVICEBODY") {
		t.Errorf("run: %v", end)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback token endpoint received %d requests", n)
	}
}
