package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// TestParseFilterColons: values may hold colons (RFC 3339 timestamps);
// the colon form is only taken with a plain column and a known operator.
func TestParseFilterColons(t *testing.T) {
	const ts = "2026-01-01T10:00:00Z"
	for in, want := range map[string]*pb.Filter{
		"REQUEST_TIME>" + ts:                       {Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_GREATER_THAN, Values: []string{ts}},
		"REQUEST_TIME<" + ts:                       {Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_LESS_THAN, Values: []string{ts}},
		"request_time < 2026-01-01T10:00:00+02:00": {Column: "request_time", Operator: pb.FilterOperator_FILTER_OPERATOR_LESS_THAN, Values: []string{"2026-01-01T10:00:00+02:00"}},
		"REQUEST_TIME:GREATER_THAN:" + ts:          {Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_GREATER_THAN, Values: []string{ts}},
		"REQUEST_TIME:less_than:" + ts:             {Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_LESS_THAN, Values: []string{ts}},
		"EVENT_STATUS:IN:FAILURE,ERROR":            {Column: "EVENT_STATUS", Operator: pb.FilterOperator_FILTER_OPERATOR_IN, Values: []string{"FAILURE", "ERROR"}},
		"URL=https://example.com/a":                {Column: "URL", Operator: pb.FilterOperator_FILTER_OPERATOR_EQUALS, Values: []string{"https://example.com/a"}},
		"NOTE~a:b:c":                               {Column: "NOTE", Operator: pb.FilterOperator_FILTER_OPERATOR_CONTAINS, Values: []string{"a:b:c"}},
	} {
		got, err := parseFilter(in)
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("parseFilter(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	// An unknown operator in the colon form still says which ones exist.
	if _, err := parseFilter("EVENT_STATUS:EQUAL:FAILURE"); err == nil || !strings.Contains(err.Error(), "not_equals") {
		t.Errorf("unknown operator: %v", err)
	}
	if _, err := parseFilter("REQUEST_TIME " + ts); err == nil {
		t.Error("no operator: no error")
	}
}

// TestFromFileErrorHidesSecrets: protojson quotes the offending token in
// its errors; a request file's secret must not reach the terminal.
func TestFromFileErrorHidesSecrets(t *testing.T) {
	isolateEnv(t)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unquoted": `{"storageIntegration": {"credentials": {"awsAccessKey": {"accessKeyId": "AKIA1", "secretAccessKey": wJalrXUtnFEMI}}}}`,
		"number":   `{"storageIntegration": {"credentials": {"awsAccessKey": {"accessKeyId": "AKIA1", "secretAccessKey": 8675309123}}}}`,
		"token":    `{"storageIntegration": {"credentials": {"azureSas": {"token": "sv=x" sig=wJalrXUtnFEMI}}}}`,
	} {
		file := filepath.Join(dir, name+".json")
		os.WriteFile(file, []byte(body), 0o600)
		r := run("", "--api-key", "aek_x", "integrations", "create", "--from-file", file)
		if r.code != exitUsage || !strings.Contains(r.stderr, file) || !strings.Contains(r.stderr, "line 1, column ") {
			t.Errorf("%s: %+v", name, r)
		}
		for _, secret := range []string{"wJalrXUtnFEMI", "8675309123"} {
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("%s: secret echoed: %q", name, r.stderr)
			}
		}
		if name == "number" && !strings.Contains(r.stderr, "field secretAccessKey") {
			t.Errorf("number: the field is not named: %q", r.stderr)
		}
	}
}

// TestCredentialEnvKeepsFileCredentials: with --provider gcs or azure-blob
// an exported AUDITEXPORT_GCS_JSON_KEY / AUDITEXPORT_AZURE_SAS fills in
// credentials only when --from-file has none; the file flags still win.
func TestCredentialEnvKeepsFileCredentials(t *testing.T) {
	f := &fakeAPI{}
	addr := startFake(t, f)
	t.Setenv("AUDITEXPORT_GCS_JSON_KEY", "gcs-from-env")
	t.Setenv("AUDITEXPORT_AZURE_SAS", "sas-from-env")
	dir := t.TempDir()
	gcsReq := filepath.Join(dir, "gcs.json")
	os.WriteFile(gcsReq, []byte(`{"storageIntegration": {"name": "g", "destination": "gcs://b/p/", "credentials": {"gcsServiceAccount": {"jsonKey": "gcs-from-file"}}}}`), 0o600)
	sasReq := filepath.Join(dir, "sas.json")
	os.WriteFile(sasReq, []byte(`{"storageIntegration": {"name": "a", "destination": "azure://acc.blob.core.windows.net/c/p/", "credentials": {"azureSas": {"token": "sas-from-file"}}}}`), 0o600)
	base := []string{"--addr", addr, "--api-key", "aek_test", "integrations", "create"}
	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{"", []string{"--provider", "gcs", "--from-file", gcsReq}},
		{"", []string{"--provider", "azure-blob", "--from-file", sasReq}},
		{"gcs-from-flag\n", []string{"--provider", "gcs", "--from-file", gcsReq, "--gcs-json-key-file", "-"}},
		{"sas-from-flag\n", []string{"--provider", "azure-blob", "--from-file", sasReq, "--azure-sas-file", "-"}},
		{"", []string{"--provider", "gcs", "--name", "g2", "--destination", "gcs://b/q/"}},
		{"", []string{"--provider", "azure-blob", "--name", "a2", "--destination", "azure://acc.blob.core.windows.net/c/q/"}},
	} {
		if r := run(c.stdin, append(base, c.args...)...); r.code != 0 {
			t.Fatalf("%v: %+v", c.args, r)
		}
	}
	var got []string
	for _, cr := range f.creates {
		cred := cr.GetStorageIntegration().GetCredentials()
		got = append(got, cred.GetGcsServiceAccount().GetJsonKey()+cred.GetAzureSas().GetToken())
	}
	want := []string{"gcs-from-file", "sas-from-file", "gcs-from-flag", "sas-from-flag", "gcs-from-env", "sas-from-env"}
	if !slices.Equal(got, want) {
		t.Errorf("credentials sent: %q, want %q", got, want)
	}
}
