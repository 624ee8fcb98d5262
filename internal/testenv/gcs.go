package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// GCS is a fake-gcs-server (in-memory backend) on 127.0.0.1.
type GCS struct {
	Endpoint string // http://127.0.0.1:<port>
	Host     string // 127.0.0.1:<port>, the form STORAGE_EMULATOR_HOST takes
}

// StartFakeGCS starts fake-gcs-server and stops it when the test ends.
func StartFakeGCS(t testing.TB) *GCS {
	t.Helper()
	bin := Require(t, ToolFakeGCS)
	dir := t.TempDir()
	args := func(ports []int) []string {
		hp := hostPort(ports[0])
		return []string{
			"-scheme", "http",
			"-host", "127.0.0.1",
			"-port", fmt.Sprint(ports[0]),
			"-backend", "memory",
			"-filesystem-root", dir, // unused by the memory backend; keeps /storage out of the default
			"-external-url", "http://" + hp,
			"-public-host", hp,
			"-log-level", "warn",
		}
	}
	_, ports := launch(t, server{
		name: "fake-gcs-server", bin: bin, nports: 1, args: args,
		ready: func(ports []int) func(context.Context) error {
			return httpOK(fmt.Sprintf("http://%s/storage/v1/b", hostPort(ports[0])))
		},
	})
	hp := hostPort(ports[0])
	return &GCS{Endpoint: "http://" + hp, Host: hp}
}

// CreateBucket creates a bucket through the JSON API.
func (g *GCS) CreateBucket(t testing.TB, name string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.Endpoint+"/storage/v1/b?project=testenv", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := HTTP.Do(req)
	if err != nil {
		t.Fatalf("testenv: create GCS bucket %q: %v", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("testenv: create GCS bucket %q: %s: %s", name, resp.Status, b)
	}
}
