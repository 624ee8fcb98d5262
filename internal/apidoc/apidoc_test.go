package apidoc

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestScalarPinned: the vendored bundle is the pinned one.
func TestScalarPinned(t *testing.T) {
	sum := sha256.Sum256(scalarJS)
	if got := hex.EncodeToString(sum[:]); got != ScalarSHA256 {
		t.Fatalf("internal/apidoc/scalar/standalone.js has SHA-256 %s, want %s (run scripts/vendor-scalar.sh)", got, ScalarSHA256)
	}
	if !bytes.Contains(scalarJS, []byte("`"+ScalarVersion+"`")) {
		t.Errorf("the bundle does not name version %s", ScalarVersion)
	}
}

func load(t *testing.T) map[string]any {
	t.Helper()
	swagger, err := os.ReadFile("../../gen/openapi/auditexport.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Convert(swagger)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../../gen/openapi/auditexport.openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, committed) {
		t.Error("gen/openapi/auditexport.openapi.json is stale: run make generate")
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestConvert: the document's shape beyond what the linter checks.
func TestConvert(t *testing.T) {
	doc := load(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v", doc["openapi"])
	}
	info := doc["info"].(map[string]any)
	if info["title"] != "auditexport API" || info["version"] != DevVersion {
		t.Errorf("info = %v", info)
	}
	if sec, _ := json.Marshal(doc["security"]); string(sec) != `[{"apiKey":[]}]` {
		t.Errorf("security = %s", sec)
	}
	paths := doc["paths"].(map[string]any)
	norm := regexp.MustCompile(`\{[^}]*\}`)
	seen := map[string]string{}
	ops := 0
	for p, item := range paths {
		if strings.Contains(p, ".") && !strings.Contains(p, ":") {
			t.Errorf("path %s has a dotted parameter", p)
		}
		k := norm.ReplaceAllString(p, "{}")
		if other, dup := seen[k]; dup {
			t.Errorf("paths %s and %s differ only by parameter names", p, other)
		}
		seen[k] = p
		for method, op := range item.(map[string]any) {
			ops++
			op := op.(map[string]any)
			resp := op["responses"].(map[string]any)
			want := []string{"200", "400", "401", "403", "404", "429", "500", "503", "default"}
			if method != "get" {
				want = append(want, "409")
			}
			for _, code := range want {
				if _, ok := resp[code]; !ok {
					t.Errorf("%s %s: no %s response", method, p, code)
				}
			}
			if s, _ := op["summary"].(string); s == "" || strings.Contains(s, "\n") {
				t.Errorf("%s %s: summary %q", method, p, s)
			}
		}
	}
	if ops < 39 {
		t.Errorf("%d operations, want all 39", ops)
	}
	patch := paths["/v1/schedules/{id}"].(map[string]any)["patch"].(map[string]any)
	if p := patch["parameters"].([]any)[0].(map[string]any); p["name"] != "id" || p["in"] != "path" {
		t.Errorf("UpdateSchedule's path parameter: %v", p)
	}
	for id := range requestExamples {
		found := false
		for _, item := range paths {
			for _, op := range item.(map[string]any) {
				op := op.(map[string]any)
				if op["operationId"] == id {
					found = true
					ex := op["requestBody"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["examples"]
					if ex == nil {
						t.Errorf("%s: no examples", id)
					}
				}
			}
		}
		if !found {
			t.Errorf("examples for unknown operation %s", id)
		}
	}
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct{ id, summary, description, wantS, wantD string }{
		{"S_GetThing", "Gets a thing.", "", "Gets a thing.", ""},
		{"S_ListThings2", "", "", "List things", ""},
		{"S_Do", "Does it, e.g. now. Then more\ntext.", "", "Does it, e.g. now.", "Does it, e.g. now. Then more\ntext."},
		{"S_Do", "Does\nit", "", "Does it", ""},
	} {
		s, d := summarize(c.id, c.summary, c.description)
		if s != c.wantS || d != c.wantD {
			t.Errorf("summarize(%q, %q, %q) = %q, %q; want %q, %q", c.id, c.summary, c.description, s, d, c.wantS, c.wantD)
		}
	}
}

func TestHandler(t *testing.T) {
	spec, err := os.ReadFile("../../gen/openapi/auditexport.openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Handler(spec, "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, hdr ...string) *http.Response {
		req := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	var doc struct {
		Info struct{ Version string }
	}
	if r := get("/openapi.json"); r.StatusCode != 200 || json.NewDecoder(r.Body).Decode(&doc) != nil || doc.Info.Version != "v1.2.3" {
		t.Errorf("openapi.json: %d, info.version %q", r.StatusCode, doc.Info.Version)
	}
	r := get("/docs")
	page, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") != ContentSecurityPolicy ||
		!bytes.Contains(page, []byte(`src="docs/scalar-`+ScalarVersion+`.js"`)) || bytes.Contains(page, []byte("http")) {
		t.Errorf("docs: %d %v\n%s", r.StatusCode, r.Header, page)
	}
	if r := get("/docs/init.js"); r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("init.js: %d %v", r.StatusCode, r.Header)
	}
	r = get("/docs/scalar-"+ScalarVersion+".js", "Accept-Encoding", "gzip, deflate")
	if r.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("bundle not gzipped: %v", r.Header)
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); !bytes.Equal(b, scalarJS) {
		t.Error("gzipped bundle differs")
	}
	r = get("/docs/scalar-" + ScalarVersion + ".js")
	if b, _ := io.ReadAll(r.Body); r.Header.Get("Content-Encoding") != "" || !bytes.Equal(b, scalarJS) {
		t.Error("plain bundle differs")
	}
	if r := get("/docs/nope.js"); r.StatusCode != 404 {
		t.Errorf("unknown asset: %d", r.StatusCode)
	}
}
