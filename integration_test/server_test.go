package integration_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestHTTPEndpoints: health, OpenAPI, request ids and CORS on the HTTP listener.
func TestHTTPEndpoints(t *testing.T) {
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
	if !strings.Contains(s.Logs(), `"request_id":"my-req-123"`) {
		t.Error("request id missing from the log")
	}
	for origin, allowed := range map[string]bool{"https://console.example.com": true, "https://evil.example.com": false} {
		req, _ := http.NewRequest("OPTIONS", s.HTTPURL+"/v1/schedules", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
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
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
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
