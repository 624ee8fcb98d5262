package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// fuzzSeed is one entry of FuzzRPCs's seed corpus.
type fuzzSeed struct {
	file, rpc string
	req       proto.Message
	mut       uint64
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// fuzzSeeds are a valid request of every RPC (ids are placeholders for the
// fuzz server's fixtures) and the out-of-range enum requests that answered
// INTERNAL before enums were checked. Requests that delete fixtures come
// last (file names sort), so the others still find them.
func fuzzSeeds() []fuzzSeed {
	const bad = 99
	dest := func(uri string) *pb.ScheduleDestination {
		return &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{StorageIntegrationName: "fuzzlocal", Uri: uri}}
	}
	sched := func(edit func(*pb.Schedule)) *pb.Schedule {
		s := &pb.Schedule{Name: "seed", ElementId: "@el", Format: pb.Format_FORMAT_CSV, Compression: pb.Compression_COMPRESSION_GZIP,
			Cron: "0 3 * * *", TimeZone: "Europe/Paris", SendCondition: pb.SendCondition_SEND_CONDITION_IF_DATA,
			Mode: pb.ExportMode_EXPORT_MODE_INCREMENTAL, CatchUp: pb.CatchUp_CATCH_UP_NONE, NotifyEmails: []string{"ops@example.com"},
			Destination: dest("file://@root/fuzz/{date}.csv.gz")}
		if edit != nil {
			edit(s)
		}
		return s
	}
	element := func(edit func(*pb.Element)) *pb.UpdateWorkbookRequest {
		e := &pb.Element{Id: "@el", Name: "e", Source: &pb.TableSource{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"},
			Columns: []string{"EVENT_ID", "USER_EMAIL", "REQUEST_TIME"},
			Filters: []*pb.Filter{
				{Column: "EVENT_STATUS", Operator: pb.FilterOperator_FILTER_OPERATOR_IN, Values: []string{"SUCCESS", "FAILURE"}},
				{Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_BETWEEN, Values: []string{"2020-01-01T00:00:00Z", "2030-01-01T00:00:00Z"}},
				{Column: "METADATA", Operator: pb.FilterOperator_FILTER_OPERATOR_CONTAINS, Values: []string{"%_x"}},
			},
			RelativeTimeRange: &pb.RelativeTimeRange{Column: "REQUEST_TIME", Last: durationpb.New(86400e9)},
			Sort:              []*pb.SortKey{{Column: "USER_EMAIL", Descending: true}}}
		if edit != nil {
			edit(e)
		}
		return &pb.UpdateWorkbookRequest{Workbook: &pb.Workbook{Id: "@wb", Elements: []*pb.Element{e}}, UpdateMask: mask("elements")}
	}
	local := &pb.StorageIntegration{Name: "seedlocal", Provider: pb.Provider_PROVIDER_LOCAL, Destination: "file://@root/seed/"}
	s3 := &pb.StorageIntegration{Name: "seeds3", Provider: pb.Provider_PROVIDER_S3, Destination: "s3://bucket/prefix/", Region: "us-east-1",
		Credentials: &pb.StorageCredentials{Kind: &pb.StorageCredentials_AwsAccessKey{AwsAccessKey: &pb.AwsAccessKey{AccessKeyId: "AKIASEED", SecretAccessKey: "seed"}}}}
	withProvider := func(p pb.Provider) *pb.StorageIntegration {
		c := proto.Clone(local).(*pb.StorageIntegration)
		c.Provider = p
		return c
	}
	return []fuzzSeed{
		// Accounts.
		{"CreateApiKey", "CreateApiKey", &pb.CreateApiKeyRequest{UserId: "@usr", Name: "k"}, 0},
		{"CreateUser", "CreateUser", &pb.CreateUserRequest{User: &pb.User{Email: "new@example.com", AccountType: pb.AccountType_ACCOUNT_TYPE_VIEWER}}, 0},
		{"CreateUser-account-type-99", "CreateUser", &pb.CreateUserRequest{User: &pb.User{Email: "bad@example.com", AccountType: bad}}, 0},
		{"GetCurrentUser", "GetCurrentUser", &pb.GetCurrentUserRequest{}, 0},
		{"GetUser", "GetUser", &pb.GetUserRequest{Id: "@usr"}, 0},
		{"GrantConnectionAccess", "GrantConnectionAccess", &pb.GrantConnectionAccessRequest{ConnectionId: "con_audit_logs", UserId: "@usr"}, 0},
		{"ListApiKeys", "ListApiKeys", &pb.ListApiKeysRequest{UserId: "@usr", PageSize: 2}, 0},
		{"ListUsers", "ListUsers", &pb.ListUsersRequest{PageSize: 1}, 0},
		{"RevokeConnectionAccess", "RevokeConnectionAccess", &pb.RevokeConnectionAccessRequest{ConnectionId: "con_audit_logs", UserId: "@usr"}, 0},
		{"UpdateUser", "UpdateUser", &pb.UpdateUserRequest{User: &pb.User{Id: "@usr", AccountType: pb.AccountType_ACCOUNT_TYPE_CREATOR}, UpdateMask: mask("account_type")}, 0},
		{"UpdateUser-account-type-99", "UpdateUser", &pb.UpdateUserRequest{User: &pb.User{Id: "@usr", AccountType: bad}, UpdateMask: mask("account_type")}, 0},
		{"ListSigningKeys", "ListSigningKeys", &pb.ListSigningKeysRequest{}, 0},
		{"RotateSigningKey", "RotateSigningKey", &pb.RotateSigningKeyRequest{}, 0},
		{"zz-RevokeApiKey", "RevokeApiKey", &pb.RevokeApiKeyRequest{Id: "@key"}, 0},
		// Integrations.
		{"CreateStorageIntegration", "CreateStorageIntegration", &pb.CreateStorageIntegrationRequest{StorageIntegration: local}, 0},
		{"CreateStorageIntegration-s3", "CreateStorageIntegration", &pb.CreateStorageIntegrationRequest{StorageIntegration: s3}, 0},
		{"CreateStorageIntegration-provider-99", "CreateStorageIntegration", &pb.CreateStorageIntegrationRequest{StorageIntegration: withProvider(bad)}, 0},
		{"CreateStorageIntegration-provider-negative", "CreateStorageIntegration", &pb.CreateStorageIntegrationRequest{StorageIntegration: withProvider(-1)}, 0},
		{"GetStorageIntegration", "GetStorageIntegration", &pb.GetStorageIntegrationRequest{Id: "@int"}, 0},
		{"GetStorageIntegrationCredentials", "GetStorageIntegrationCredentials", &pb.GetStorageIntegrationCredentialsRequest{Id: "@int"}, 0},
		{"ListStorageIntegrations", "ListStorageIntegrations", &pb.ListStorageIntegrationsRequest{PageSize: 1}, 0},
		{"TestStorageIntegration", "TestStorageIntegration", &pb.TestStorageIntegrationRequest{Id: "@int"}, 0},
		{"UpdateStorageIntegration", "UpdateStorageIntegration", &pb.UpdateStorageIntegrationRequest{StorageIntegration: &pb.StorageIntegration{
			Id: "@int", Name: "fuzzlocal", Destination: "file://@root/fuzz/"}, UpdateMask: mask("name", "destination"), UpdateLinkedSchedules: true}, 0},
		{"UpdateStorageIntegration-provider-99", "UpdateStorageIntegration", &pb.UpdateStorageIntegrationRequest{StorageIntegration: &pb.StorageIntegration{
			Id: "@int", Provider: bad}, UpdateMask: mask("name"), UpdateLinkedSchedules: true}, 0},
		{"zz-DeleteStorageIntegration", "DeleteStorageIntegration", &pb.DeleteStorageIntegrationRequest{Id: "@int"}, 0},
		// Workbooks.
		{"ExploreTable", "ExploreTable", &pb.ExploreTableRequest{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"}, 0},
		{"GetWorkbook", "GetWorkbook", &pb.GetWorkbookRequest{Id: "@wb"}, 0},
		{"ListConnections", "ListConnections", &pb.ListConnectionsRequest{}, 0},
		{"ListWorkbooks", "ListWorkbooks", &pb.ListWorkbooksRequest{Folder: "f", PageSize: 5}, 0},
		{"QueryElement", "QueryElement", &pb.QueryElementRequest{WorkbookId: "@wb", ElementId: "@el", PageSize: 3}, 0},
		{"SaveWorkbookAs", "SaveWorkbookAs", &pb.SaveWorkbookAsRequest{Id: "@wb", Name: "copy", Folder: "f"}, 0},
		{"UpdateWorkbook", "UpdateWorkbook", element(nil), 0},
		{"UpdateWorkbook-filter-operator-99", "UpdateWorkbook", element(func(e *pb.Element) { e.Filters[0].Operator = bad }), 0},
		{"UpdateWorkbook-filter-operator-negative", "UpdateWorkbook", element(func(e *pb.Element) { e.Filters[2].Operator = -7 }), 0},
		{"zz-DeleteWorkbook", "DeleteWorkbook", &pb.DeleteWorkbookRequest{Id: "@wb", Force: true}, 0},
		// Schedules and runs.
		{"CancelExportRun", "CancelExportRun", &pb.CancelExportRunRequest{Id: "@run"}, 0},
		{"CreateSchedule", "CreateSchedule", &pb.CreateScheduleRequest{WorkbookId: "@wb", Schedule: sched(nil)}, 0},
		{"CreateSchedule-catch-up-99", "CreateSchedule", &pb.CreateScheduleRequest{WorkbookId: "@wb", Schedule: sched(func(s *pb.Schedule) { s.CatchUp = bad })}, 0},
		{"CreateSchedule-compression-99", "CreateSchedule", &pb.CreateScheduleRequest{WorkbookId: "@wb", Schedule: sched(func(s *pb.Schedule) { s.Compression = bad })}, 0},
		{"CreateSchedule-format-99", "CreateSchedule", &pb.CreateScheduleRequest{WorkbookId: "@wb", Schedule: sched(func(s *pb.Schedule) { s.Format = bad })}, 0},
		{"CreateSchedule-mode-99", "CreateSchedule", &pb.CreateScheduleRequest{WorkbookId: "@wb", Schedule: sched(func(s *pb.Schedule) { s.Mode = bad })}, 0},
		{"CreateSchedule-send-condition-99", "CreateSchedule", &pb.CreateScheduleRequest{WorkbookId: "@wb", Schedule: sched(func(s *pb.Schedule) { s.SendCondition = bad })}, 0},
		{"CreateSchedule-output-only-enums-99", "CreateSchedule", &pb.CreateScheduleRequest{WorkbookId: "@wb", Schedule: sched(func(s *pb.Schedule) {
			s.State, s.PauseReason, s.LastRun = bad, bad, &pb.RunSummary{State: bad}
		})}, 0},
		{"GetExportRun", "GetExportRun", &pb.GetExportRunRequest{Id: "@run"}, 0},
		{"GetSchedule", "GetSchedule", &pb.GetScheduleRequest{Id: "@sch"}, 0},
		{"ListExportRuns", "ListExportRuns", &pb.ListExportRunsRequest{ScheduleId: "@sch", PageSize: 1}, 0},
		{"ListSchedules", "ListSchedules", &pb.ListSchedulesRequest{WorkbookId: "@wb", State: pb.ScheduleState_SCHEDULE_STATE_ACTIVE}, 0},
		{"ListSchedules-state-99", "ListSchedules", &pb.ListSchedulesRequest{State: bad}, 0},
		{"PauseSchedule", "PauseSchedule", &pb.PauseScheduleRequest{Id: "@sch"}, 0},
		{"PreviewSchedule", "PreviewSchedule", &pb.PreviewScheduleRequest{Cron: "30 2 * * *", TimeZone: "Europe/Berlin", Count: 5}, 0},
		{"ResumeSchedule", "ResumeSchedule", &pb.ResumeScheduleRequest{Id: "@sch"}, 0},
		{"SendNow", "SendNow", &pb.SendNowRequest{Id: "@sch"}, 0},
		{"UpdateSchedule", "UpdateSchedule", &pb.UpdateScheduleRequest{Schedule: sched(func(s *pb.Schedule) { s.Id = "@sch" }),
			UpdateMask: mask("format", "compression", "mode", "send_condition", "catch_up", "destination", "cron")}, 0},
		{"UpdateSchedule-format-99", "UpdateSchedule", &pb.UpdateScheduleRequest{Schedule: sched(func(s *pb.Schedule) { s.Id, s.Format = "@sch", bad }), UpdateMask: mask("format")}, 0},
		{"UpdateSchedule-mode-99", "UpdateSchedule", &pb.UpdateScheduleRequest{Schedule: sched(func(s *pb.Schedule) { s.Id, s.Mode = "@sch", bad }), UpdateMask: mask("mode")}, 0},
		{"UpdateSchedule-structured-mutation", "UpdateSchedule", &pb.UpdateScheduleRequest{Schedule: sched(func(s *pb.Schedule) { s.Id = "@sch" }), UpdateMask: mask("catch_up")}, 0x7fff_0003},
		{"WatchExportRun", "WatchExportRun", &pb.WatchExportRunRequest{Id: "@run"}, 0},
		{"zz-DeleteSchedule", "DeleteSchedule", &pb.DeleteScheduleRequest{Id: "@sch"}, 0},
		// Bytes that are no message at all: a truncated varint, a wrong wire type.
		{"malformed-truncated", "CreateSchedule", nil, 0},
		{"malformed-wire-type", "UpdateWorkbook", nil, 0},
	}
}

// seedBytes encodes a seed; the malformed ones are fixed bytes.
func seedBytes(t *testing.T, s fuzzSeed) []byte {
	switch s.file {
	case "malformed-truncated":
		return []byte{0x0a, 0xff}
	case "malformed-wire-type":
		return []byte{0x0f, 0x01, 0x02}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.req)
	if err != nil {
		t.Fatalf("seed %s: %v", s.file, err)
	}
	return b
}

// TestFuzzSeedCorpus keeps testdata/fuzz/FuzzRPCs equal to fuzzSeeds and
// checks that it holds a request of every RPC. AUDITEXPORT_WRITE_FUZZ_SEEDS=1
// rewrites the files.
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRPCs")
	write := os.Getenv("AUDITEXPORT_WRITE_FUZZ_SEEDS") == "1"
	seeds := fuzzSeeds()
	covered := map[string]bool{}
	var files []string
	for _, s := range seeds {
		covered[s.rpc] = true
		files = append(files, s.file)
		want := fmt.Sprintf("go test fuzz v1\nstring(%q)\n[]byte(%q)\nuint64(%d)\n", s.rpc, seedBytes(t, s), s.mut)
		path := filepath.Join(dir, s.file)
		if write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale (%v): run AUDITEXPORT_WRITE_FUZZ_SEEDS=1 go test -run TestFuzzSeedCorpus ./server/", path, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(files, e.Name()) {
			t.Errorf("%s is not in fuzzSeeds (a crasher the fuzzer found? add it there)", filepath.Join(dir, e.Name()))
		}
	}
	for _, m := range fuzzMethods(t) {
		if !covered[m.name] {
			t.Errorf("no seed request for %s", m.full)
		}
	}
	if t.Failed() {
		t.Log("seeds: " + strings.Join(files, ", "))
	}
}
