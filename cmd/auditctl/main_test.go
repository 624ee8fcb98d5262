package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// fakeAPI is an in-process server recording what the CLI sends; the real
// server is exercised by integration_test/auditctl_test.go.
type fakeAPI struct {
	pb.UnimplementedScheduleServiceServer
	pb.UnimplementedIntegrationServiceServer

	mu       sync.Mutex
	updates  []*pb.UpdateScheduleRequest
	creates  []*pb.CreateStorageIntegrationRequest
	auth     []string             // the authorization metadata of GetSchedule calls
	progress []*pb.ExportProgress // what SendNow streams
	sendErr  error                // what SendNow ends with after the progress
	final    *pb.ExportRun
}

func (f *fakeAPI) GetSchedule(ctx context.Context, r *pb.GetScheduleRequest) (*pb.GetScheduleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.auth = append(f.auth, md.Get("authorization")...)
	f.mu.Unlock()
	return &pb.GetScheduleResponse{Schedule: sampleSchedule(r.GetId())}, nil
}

func (f *fakeAPI) UpdateSchedule(_ context.Context, r *pb.UpdateScheduleRequest) (*pb.UpdateScheduleResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, r)
	return &pb.UpdateScheduleResponse{Schedule: r.GetSchedule()}, nil
}

func (f *fakeAPI) CreateStorageIntegration(_ context.Context, r *pb.CreateStorageIntegrationRequest) (*pb.CreateStorageIntegrationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, r)
	in := proto.Clone(r.GetStorageIntegration()).(*pb.StorageIntegration)
	in.Id, in.Credentials = "int_1", nil
	return &pb.CreateStorageIntegrationResponse{StorageIntegration: in}, nil
}

func (f *fakeAPI) SendNow(_ *pb.SendNowRequest, st grpc.ServerStreamingServer[pb.SendNowResponse]) error {
	for _, p := range f.progress {
		if err := st.Send(&pb.SendNowResponse{Progress: p}); err != nil {
			return err
		}
	}
	return f.sendErr
}

func (f *fakeAPI) GetExportRun(context.Context, *pb.GetExportRunRequest) (*pb.GetExportRunResponse, error) {
	return &pb.GetExportRunResponse{Run: f.final}, nil
}

// isolateEnv keeps the developer's environment and config file out.
func isolateEnv(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "AUDITEXPORT_") || strings.HasPrefix(name, "AUDITCTL_") {
			t.Setenv(name, "") // restored after the test
			os.Unsetenv(name)
		}
	}
}

func startFake(t *testing.T, f *fakeAPI) string {
	t.Helper()
	isolateEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterScheduleServiceServer(srv, f)
	pb.RegisterIntegrationServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

type result struct {
	code           int
	stdout, stderr string
}

func run(stdin string, args ...string) result {
	var out, errb bytes.Buffer
	code := realMain(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestUpdateMaskHasOnlyGivenFlags(t *testing.T) {
	f := &fakeAPI{}
	addr := startFake(t, f)
	base := []string{"--addr", addr, "--api-key", "aek_test", "schedules", "update", "sch_1"}
	if r := run("", append(base, "--cron", "0 7 * * *", "--no-csv-escape-formulas")...); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	// --uri alone: the destination is one field, so the integration name is kept from the stored schedule.
	if r := run("", append(base, "--uri", "s3://b/p/y.csv")...); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if r := run("", base...); r.code != exitUsage || !strings.Contains(r.stderr, "nothing to update") {
		t.Errorf("update without flags: %+v", r)
	}
	if len(f.updates) != 2 {
		t.Fatalf("updates: %v", f.updates)
	}
	u := f.updates[0]
	if !slices.Equal(u.GetUpdateMask().GetPaths(), []string{"cron", "csv_escape_formulas"}) ||
		u.GetSchedule().GetCron() != "0 7 * * *" || u.GetSchedule().CsvEscapeFormulas == nil || u.GetSchedule().GetCsvEscapeFormulas() ||
		u.GetSchedule().GetName() != "" || u.GetSchedule().GetTimeZone() != "" {
		t.Errorf("first update: %v", u)
	}
	u = f.updates[1]
	if !slices.Equal(u.GetUpdateMask().GetPaths(), []string{"destination"}) ||
		u.GetSchedule().GetDestination().GetCloudStorage().GetUri() != "s3://b/p/y.csv" ||
		u.GetSchedule().GetDestination().GetCloudStorage().GetStorageIntegrationName() != "s3main" {
		t.Errorf("second update: %v", u)
	}
}

func TestFromFileAndFlags(t *testing.T) {
	f := &fakeAPI{}
	addr := startFake(t, f)
	req := filepath.Join(t.TempDir(), "req.json")
	os.WriteFile(req, []byte(`{"schedule": {"notifyEmails": ["a@example.com"], "mode": "EXPORT_MODE_INCREMENTAL"}, "updateMask": "notifyEmails,mode"}`), 0o600)
	r := run("", "--addr", addr, "--api-key", "aek_test", "schedules", "update", "sch_1", "--from-file", req, "--cron", "1 2 * * *")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	u := f.updates[0]
	if !slices.Equal(u.GetUpdateMask().GetPaths(), []string{"notify_emails", "mode", "cron"}) || u.GetSchedule().GetMode() != pb.ExportMode_EXPORT_MODE_INCREMENTAL ||
		u.GetSchedule().GetCron() != "1 2 * * *" || u.GetSchedule().GetId() != "sch_1" {
		t.Errorf("update from file + flag: %v", u)
	}
	r = run("{not json", "--addr", addr, "--api-key", "aek_test", "schedules", "update", "sch_1", "--from-file", "-")
	if r.code != exitUsage || !strings.Contains(r.stderr, "UpdateScheduleRequest") {
		t.Errorf("bad request file: %+v", r)
	}
}

func TestSecretsFromStdinFileOrEnv(t *testing.T) {
	f := &fakeAPI{}
	addr := startFake(t, f)
	args := []string{"--addr", addr, "--api-key", "aek_test", "integrations", "create", "--name", "s3main", "--provider", "s3",
		"--destination", "s3://bucket/p/", "--access-key-id", "AKIA1"}
	if r := run("from-stdin\n", append(args, "--secret-access-key-file", "-")...); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	t.Setenv("AUDITEXPORT_SECRET_ACCESS_KEY", "from-env")
	r := run("", args...)
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "from-env") {
		t.Errorf("secret echoed: %+v", r)
	}
	for i, want := range []string{"from-stdin", "from-env"} {
		k := f.creates[i].GetStorageIntegration().GetCredentials().GetAwsAccessKey()
		if k.GetAccessKeyId() != "AKIA1" || k.GetSecretAccessKey() != want || f.creates[i].GetStorageIntegration().GetProvider() != pb.Provider_PROVIDER_S3 {
			t.Errorf("create %d: %v", i, f.creates[i])
		}
	}
}

func progressSeq(final pb.ExportPhase) []*pb.ExportProgress {
	var ps []*pb.ExportProgress
	for i, ph := range []pb.ExportPhase{pb.ExportPhase_EXPORT_PHASE_QUEUED, pb.ExportPhase_EXPORT_PHASE_QUERYING,
		pb.ExportPhase_EXPORT_PHASE_UPLOADING, pb.ExportPhase_EXPORT_PHASE_UPLOADING, pb.ExportPhase_EXPORT_PHASE_UPLOADING, final} {
		ps = append(ps, &pb.ExportProgress{RunId: "run_1", Phase: ph, RowsExported: int64(i * 200), BytesUploaded: int64(i * 20000), TotalRows: 1000})
	}
	return ps
}

func TestSendNowBar(t *testing.T) {
	f := &fakeAPI{progress: progressSeq(pb.ExportPhase_EXPORT_PHASE_SUCCEEDED),
		final: &pb.ExportRun{Id: "run_1", State: pb.RunState_RUN_STATE_SUCCEEDED, Rows: 1000, Bytes: 100000, ObjectUri: "s3://b/p/x.run_1.csv",
			Note: "s3://b/p/x.csv already held an export and exports are never replaced; this Send now was written to s3://b/p/x.run_1.csv"}}
	addr := startFake(t, f)
	r := run("", "--addr", addr, "--api-key", "aek_test", "schedules", "send-now", "sch_1", "--progress", "bar")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if strings.Count(r.stdout, "\r") < 5 {
		t.Errorf("bar does not redraw:\n%q", r.stdout)
	}
	var seen []int
	for _, m := range regexp.MustCompile(`\((\d+)/1000,`).FindAllStringSubmatch(r.stdout, -1) {
		n, _ := strconv.Atoi(m[1])
		seen = append(seen, n)
	}
	if len(seen) < 5 || !slices.IsSorted(seen) || seen[len(seen)-1] != 1000 {
		t.Errorf("row counts in the frames: %v\n%q", seen, r.stdout)
	}
	for _, want := range []string{"100%", "UPLOADING", "rows/s", "SUCCEEDED run_1: 1000 rows, 97.7 KiB\nobject: s3://b/p/x.run_1.csv\nnote: s3://b/p/x.csv already held an export"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("lacks %q:\n%q", want, r.stdout)
		}
	}
}

func TestSendNowLinesAndFailure(t *testing.T) {
	f := &fakeAPI{progress: progressSeq(pb.ExportPhase_EXPORT_PHASE_FAILED),
		final: &pb.ExportRun{Id: "run_1", State: pb.RunState_RUN_STATE_FAILED, Rows: 1000,
			Error: &pb.ExportError{Code: "UPLOAD_FAILED", Message: "upload failed", ProviderMessage: "AccessDenied: Access Denied."}}}
	addr := startFake(t, f)
	r := run("", "--addr", addr, "--api-key", "aek_test", "schedules", "send-now", "sch_1")
	if r.code != exitError {
		t.Fatalf("FAILED run must exit %d: %+v", exitError, r)
	}
	want := "QUEUED     rows=0 bytes=0 total_rows=1000\nQUERYING   rows=200 bytes=20000 total_rows=1000\n"
	if !strings.HasPrefix(r.stdout, want) || strings.Contains(r.stdout, "\r") || !strings.Contains(r.stdout, "\nFAILED     rows=1000 bytes=100000") ||
		!strings.Contains(r.stdout, "FAILED run_1: 1000 rows") {
		t.Errorf("lines:\n%s", r.stdout)
	}
	if r.stderr != "error: UPLOAD_FAILED: upload failed\nprovider message: AccessDenied: Access Denied.\n" {
		t.Errorf("stderr: %q", r.stderr)
	}
	// -o json: the progress messages as NDJSON, as the REST API streams them.
	r = run("", "--addr", addr, "--api-key", "aek_test", "-o", "json", "schedules", "send-now", "sch_1")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last map[string]any
	if len(lines) != 6 || json.Unmarshal([]byte(lines[5]), &last) != nil || last["phase"] != "EXPORT_PHASE_FAILED" || last["rowsExported"] != "1000" {
		t.Errorf("NDJSON: %q", r.stdout)
	}
}

// TestSendNowLostStreamNamesRun: when following breaks off for good after
// the run started, the run id and how to go on following it are printed
// (the run goes on on the server), so a script does not start another.
func TestSendNowLostStreamNamesRun(t *testing.T) {
	f := &fakeAPI{
		progress: []*pb.ExportProgress{{RunId: "run_7", Phase: pb.ExportPhase_EXPORT_PHASE_QUERYING, TotalRows: 10}},
		sendErr:  status.Error(codes.Unavailable, "replica going away"),
		// WatchExportRun, with which the client reattaches, is not
		// implemented by the fake: UNIMPLEMENTED ends the following.
	}
	addr := startFake(t, f)
	r := run("", "--addr", addr, "--api-key", "aek_test", "schedules", "send-now", "sch_1")
	if r.code != exitError || !strings.Contains(r.stdout, "QUERYING") || !strings.Contains(r.stderr, "Error: ") ||
		!strings.Contains(r.stderr, "run run_7 goes on on the server") || !strings.Contains(r.stderr, "auditctl runs watch run_7\n") {
		t.Errorf("%+v", r)
	}
}

func TestConfigPrecedence(t *testing.T) {
	isolateEnv(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("addr: file:1\napi_key: aek_filefile_secretsecretsecretsecretsecretsecre\noutput: json\ntimeout: 7s\ntls: true\n"), 0o600)
	show := func(args ...string) map[string]map[string]string {
		t.Helper()
		r := run("", append(append([]string{"--config", file}, args...), "config", "-o", "json")...)
		if r.code != 0 {
			t.Fatalf("%+v", r)
		}
		if strings.Contains(r.stdout, "secretsecret") {
			t.Errorf("key shown: %s", r.stdout)
		}
		return configJSON(t, r.stdout)
	}
	c := show()
	if c["addr"]["value"] != "file:1" || c["addr"]["source"] != "file "+file || c["timeout"]["value"] != "7s" || c["tls"]["value"] != "true" ||
		c["api_key"]["value"] != "aek_filefile_********" || c["tls_server_name"]["source"] != "default" {
		t.Errorf("file: %v", c)
	}
	t.Setenv("AUDITEXPORT_ADDR", "env:2")
	t.Setenv("AUDITCTL_TIMEOUT", "9s")
	c = show("--timeout", "11s")
	if c["addr"]["value"] != "env:2" || c["addr"]["source"] != "env AUDITEXPORT_ADDR" || c["timeout"]["value"] != "11s" || c["timeout"]["source"] != "flag --timeout" {
		t.Errorf("env over file, flag over env: %v", c)
	}
	c = show("--addr", "flag:3")
	if c["addr"]["value"] != "flag:3" || c["timeout"]["value"] != "9s" {
		t.Errorf("flag over env: %v", c)
	}
	// Without any config file: the defaults.
	os.Remove(file)
	r := run("", "config", "-o", "json")
	if r.code != 0 {
		t.Fatalf("config without a file: %+v", r)
	}
	m := configJSON(t, r.stdout)
	if m["addr"]["value"] != "env:2" || m["api_key"]["value"] != "" || m["api_key"]["source"] != "default" || m["tls"]["source"] != "default" ||
		m["timeout"]["value"] != "9s" || m["tls"]["value"] != "false" || !strings.HasSuffix(m["configFile"]["value"], "config.yaml (absent)") {
		t.Errorf("defaults: %v", m)
	}
	if r := run("", "--config", file, "config"); r.code != exitUsage || !strings.Contains(r.stderr, file) {
		t.Errorf("missing explicit config file: %+v", r)
	}
}

// configJSON reads `auditctl config -o json`: each setting's value and
// source, and the config file as configFile's value.
func configJSON(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("config -o json: %v\n%s", err, out)
	}
	m := map[string]map[string]string{}
	for k, v := range raw {
		var row map[string]string
		if k == "configFile" {
			var path string
			if err := json.Unmarshal(v, &path); err != nil {
				t.Fatalf("configFile: %v\n%s", err, out)
			}
			row = map[string]string{"value": path}
		} else if err := json.Unmarshal(v, &row); err != nil {
			t.Fatalf("%s: %v\n%s", k, err, out)
		}
		m[k] = row
	}
	return m
}

func TestUsage(t *testing.T) {
	isolateEnv(t)
	if r := run("", "--help"); r.code != 0 || !strings.Contains(r.stdout, "schedules") || !strings.Contains(r.stdout, "AUDITEXPORT_ADDR") {
		t.Errorf("--help: %+v", r)
	}
	if r := run("", "schedules", "frobnicate"); r.code != exitUsage {
		t.Errorf("unknown command: %+v", r)
	}
	if r := run("", "users", "me"); r.code != exitUsage || !strings.Contains(r.stderr, "no API key") {
		t.Errorf("no key: %+v", r)
	}
	if r := run("", "--api-key", "aek_x", "-o", "yaml", "users", "me"); r.code != exitUsage || !strings.Contains(r.stderr, "--output") {
		t.Errorf("bad output: %+v", r)
	}
}
