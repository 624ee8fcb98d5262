package integration_test

import (
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/auditexport/auditexport/internal/testenv"
)

// TestHTTPEndpoints: health, OpenAPI, request ids and CORS on the HTTP listener.
func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite", "--cors-allowed-origins", "https://console.example.com")
	code, body, _ := s.REST("GET", "/healthz", "", nil)
	if code != 200 || body["status"] != "SERVING" {
		t.Fatalf("healthz: %d %v", code, body)
	}
	code, body, _ = s.REST("GET", "/openapi.json", "", nil)
	paths, _ := body["paths"].(map[string]any)
	for _, p := range []string{"/v1/storageIntegrations", "/v1/workbooks/{id}:saveAs", "/v1/workbooks/{workbookId}/schedules", "/v1/users/me"} {
		if _, ok := paths[p]; code != 200 || !ok {
			t.Errorf("openapi.json (%d) lacks path %s", code, p)
		}
	}
	_, _, hdr := s.REST("GET", "/v1/users/me", s.AdminKey, nil, "X-Request-Id", "my-req-123")
	if hdr.Get("X-Request-Id") != "my-req-123" {
		t.Errorf("request id not echoed: %q", hdr.Get("X-Request-Id"))
	}
	_, _, hdr = s.REST("GET", "/v1/users/me", s.AdminKey, nil, "X-Request-Id", "bad id with spaces")
	if got := hdr.Get("X-Request-Id"); !strings.HasPrefix(got, "req_") {
		t.Errorf("invalid request id should be replaced, got %q", got)
	}
	if !s.WaitLogs(`"request_id":"my-req-123"`, 10*time.Second) {
		t.Error("request id missing from the log")
	}
	for origin, allowed := range map[string]bool{"https://console.example.com": true, "https://evil.example.com": false} {
		req, _ := http.NewRequest("OPTIONS", s.HTTPURL+"/v1/schedules", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := testenv.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin") == origin; got != allowed {
			t.Errorf("CORS preflight from %s: allowed=%v, want %v", origin, got, allowed)
		}
	}
}

// TestRestartKeepsData: migration on start is idempotent, data and keys
// survive a restart, and the bootstrap key is not re-created.
func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend)
			tr := grpcTransport{s}
			r := tr.Call(t, "CreateStorageIntegration", s.AdminKey, `{"storageIntegration":{"name":"keep","provider":"PROVIDER_S3",
				"destination":"s3://keep/x/","credentials":{"awsAccessKey":{"accessKeyId":"A","secretAccessKey":"B"}}}}`, "")
			if r.Code != codes.OK {
				t.Fatalf("create: %v %s", r.Code, r.Message)
			}
			id := getString(r.Body, "storageIntegration", "id")
			s.Restart()
			s.Restart()
			if g := (grpcTransport{s}).Call(t, "GetStorageIntegration", s.AdminKey, `{"id":"`+id+`"}`, ""); g.Code != codes.OK {
				t.Fatalf("after restart: %v %s", g.Code, g.Message)
			}
			if u := (grpcTransport{s}).Call(t, "ListUsers", s.AdminKey, "", ""); len(getPath(u.Body, "users").([]any)) != 1 {
				t.Fatalf("bootstrap ran again: %v", u.Body)
			}
			if strings.Contains(s.Logs(), "Bootstrap admin API key") {
				t.Error("a bootstrap key was printed although one was given")
			}
		})
	}
}

// TestAuthFailuresAudited: a call that fails authentication still leaves
// exactly one AUDIT_LOGS row (ACCESS / API_KEY_AUTH / FAILURE).
func TestAuthFailuresAudited(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	revoked := (grpcTransport{s}).Call(t, "CreateApiKey", s.AdminKey, `{"name":"tmp"}`, "")
	secret := getString(revoked.Body, "secret")
	(grpcTransport{s}).Call(t, "RevokeApiKey", s.AdminKey, `{"id":"`+getString(revoked.Body, "apiKey", "id")+`"}`, "")
	cases := map[string]string{"none": "", "garbage": "not-a-key", "revoked": secret, "wrong-secret": s.AdminKey[:len(s.AdminKey)-4] + "aaaa"}
	for name, key := range cases {
		for _, tr := range transports(s) {
			rid := "auth-" + name + "-" + tr.Name()
			if r := tr.Call(t, "ListSchedules", key, "", rid); r.Code != codes.Unauthenticated || r.Domain != "auditexport" {
				t.Fatalf("%s over %s: %v %s", name, tr.Name(), r.Code, r.Domain)
			}
			checkAudit(t, s, []auditExpect{{requestID: rid, eventType: "API_KEY_AUTH", status: "FAILURE"}})
		}
	}
}

// TestSeedCommand: `auditexport seed` appends events that AUDIT_LOGS shows.
func TestSeedCommand(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	out, err := exec.Command(toolPath, "seed", "--events", "5000", "--db", s.DSN).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "seeded 5000 events") {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	tr := grpcTransport{s}
	ex := tr.Call(t, "ExploreTable", s.AdminKey, `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`, "")
	wb := getString(ex.Body, "workbook", "id")
	el := getPath(ex.Body, "workbook", "elements").([]any)[0].(map[string]any)["id"].(string)
	q := tr.Call(t, "QueryElement", s.AdminKey, `{"workbookId":"`+wb+`","elementId":"`+el+`","pageSize":1}`, "")
	if total, _ := strconv.Atoi(getString(q.Body, "totalRows")); total < 5000 {
		t.Fatalf("AUDIT_LOGS has %d rows after seeding 5000", total)
	}
}
