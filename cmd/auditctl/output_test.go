package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

var t0 = time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)

func sampleSchedule(id string) *pb.Schedule {
	return &pb.Schedule{
		Id: id, Name: "daily " + id, WorkbookId: "wb_1", ElementId: "el_1",
		Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{StorageIntegrationName: "s3main", Uri: "s3://b/p/x.csv.gz"}},
		Format:      pb.Format_FORMAT_CSV, Compression: pb.Compression_COMPRESSION_GZIP, Cron: "0 6 * * *", TimeZone: "Europe/Berlin",
		State: pb.ScheduleState_SCHEDULE_STATE_ACTIVE, NextRunTime: timestamppb.New(t0),
	}
}

func render(t *testing.T, format string, m proto.Message) (string, string) {
	t.Helper()
	out, err := parseOutput(format)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, out: out}
	if err := e.print(m); err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String()
}

func TestTableList(t *testing.T) {
	resp := &pb.ListSchedulesResponse{Schedules: []*pb.Schedule{sampleSchedule("sch_a"), sampleSchedule("sch_bb")}, NextPageToken: "tok"}
	resp.Schedules[1].LastRun = &pb.RunSummary{State: pb.RunState_RUN_STATE_FAILED}
	out, errOut := render(t, "table", resp)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header + 2 rows:\n%s", out)
	}
	want := []string{"ID", "NAME", "STATE", "CRON", "TIME_ZONE", "FORMAT", "COMPRESSION", "URI", "NEXT_RUN_TIME", "LAST_RUN_STATE"}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("header %q", lines[0])
	}
	// Aligned: every column starts at the same offset on every line.
	if strings.Index(lines[1], "ACTIVE") != strings.Index(lines[0], "STATE") || strings.Index(lines[2], "ACTIVE") != strings.Index(lines[0], "STATE") {
		t.Errorf("columns not aligned:\n%s", out)
	}
	// Enums lose their prefix, unset values show as "-", times are RFC 3339.
	if !strings.Contains(lines[1], "CSV") || strings.Contains(out, "FORMAT_CSV") || !strings.HasSuffix(lines[1], "-") ||
		!strings.HasSuffix(lines[2], "FAILED") || !strings.Contains(lines[1], "2026-03-01T06:00:00Z") {
		t.Errorf("cells:\n%s", out)
	}
	if !strings.Contains(errOut, "--page-token tok") {
		t.Errorf("next page hint on stderr: %q", errOut)
	}
	if out, _ := render(t, "table", &pb.ListSchedulesResponse{}); strings.TrimSpace(out) != "(none)" {
		t.Errorf("empty list: %q", out)
	}
}

func TestTableSingle(t *testing.T) {
	out, _ := render(t, "table", &pb.GetScheduleResponse{Schedule: sampleSchedule("sch_a")})
	for _, want := range []string{"id                                               sch_a\n",
		"destination.cloudStorage.uri                     s3://b/p/x.csv.gz\n", "compression                                      GZIP\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lastRun") || strings.Contains(out, "1970") {
		t.Errorf("unset fields shown:\n%s", out)
	}
	// Not a plain wrapper: the response itself, e.g. the key and its secret.
	out, _ = render(t, "table", &pb.CreateApiKeyResponse{ApiKey: &pb.ApiKey{Id: "key_1", Name: "ci"}, Secret: "aek_x"})
	if !strings.Contains(out, "apiKey.id    key_1\n") || !strings.Contains(out, "secret       aek_x\n") {
		t.Errorf("create key:\n%s", out)
	}
	out, _ = render(t, "table", &pb.TestStorageIntegrationResponse{Ok: true, Latency: durationpb.New(1500 * time.Millisecond)})
	if !strings.Contains(out, "ok       true") || !strings.Contains(out, "latency  1.5s") {
		t.Errorf("test integration:\n%s", out)
	}
	if out, _ := render(t, "table", &pb.DeleteScheduleResponse{}); strings.TrimSpace(out) != "ok" {
		t.Errorf("empty response: %q", out)
	}
}

func TestJSONOutput(t *testing.T) {
	out, _ := render(t, "json", &pb.ListSchedulesResponse{Schedules: []*pb.Schedule{sampleSchedule("sch_a")}})
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	s := m["schedules"].([]any)[0].(map[string]any)
	if s["timeZone"] != "Europe/Berlin" || s["format"] != "FORMAT_CSV" || s["nextRunTime"] != "2026-03-01T06:00:00Z" {
		t.Errorf("protojson with lowerCamelCase names and full enum names: %s", out)
	}
}

func TestValueOutput(t *testing.T) {
	out, _ := render(t, "value=id,destination.cloudStorage.uri,state", &pb.ListSchedulesResponse{Schedules: []*pb.Schedule{sampleSchedule("sch_a"), sampleSchedule("sch_b")}})
	if out != "sch_a\ts3://b/p/x.csv.gz\tSCHEDULE_STATE_ACTIVE\nsch_b\ts3://b/p/x.csv.gz\tSCHEDULE_STATE_ACTIVE\n" {
		t.Errorf("values: %q", out)
	}
	wb := &pb.ExploreTableResponse{Workbook: &pb.Workbook{Id: "wb_1", Elements: []*pb.Element{{Id: "el_1"}}}}
	if out, _ := render(t, "value=id,elements.0.id", wb); out != "wb_1\tel_1\n" {
		t.Errorf("indexed path: %q", out)
	}
	if out, _ := render(t, "value=apiKey.id,secret", &pb.CreateApiKeyResponse{ApiKey: &pb.ApiKey{Id: "key_1"}, Secret: "aek_s"}); out != "key_1\taek_s\n" {
		t.Errorf("response-level path: %q", out)
	}
	var e env
	e.out, _ = parseOutput("value=nope")
	e.stdout = &bytes.Buffer{}
	if err := e.print(&pb.GetScheduleResponse{Schedule: sampleSchedule("x")}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown path: %v", err)
	}
	for _, bad := range []string{"yaml", "value="} {
		if _, err := parseOutput(bad); err == nil {
			t.Errorf("parseOutput(%q) accepted", bad)
		}
	}
}

func TestQueryTable(t *testing.T) {
	q := &pb.QueryElementResponse{
		Columns:   []*pb.Column{{Name: "EVENT_ID"}, {Name: "N"}, {Name: "METADATA"}},
		Rows:      []*pb.Row{{Values: []*structpb.Value{structpb.NewStringValue("evt_1"), structpb.NewNumberValue(3), structpb.NewNullValue()}}},
		TotalRows: 10,
	}
	out, _ := render(t, "table", q)
	if !strings.Contains(out, "EVENT_ID  N  METADATA\nevt_1     3  -\n(1 of 10 rows)\n") {
		t.Errorf("query:\n%s", out)
	}
}

func TestFormatError(t *testing.T) {
	st, _ := status.New(codes.InvalidArgument, "schedule.cron: bad hour (and 1 more)").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: "auditexport"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "schedule.cron", Description: "bad hour"}, {Field: "schedule.time_zone", Description: "unknown time zone"}}})
	// Wrapped, as kong returns it.
	got := formatError(fmt.Errorf("wrapped: %w", st.Err()), "a:1")
	want := "Error: INVALID_ARGUMENT: 2 invalid field(s)\nschedule.cron: bad hour\nschedule.time_zone: unknown time zone\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}

	st, _ = status.New(codes.FailedPrecondition, "workbook has 2 schedules").WithDetails(&errdetails.ErrorInfo{Reason: "HAS_SCHEDULES"})
	if got := formatError(st.Err(), "a:1"); got != "Error: FAILED_PRECONDITION: workbook has 2 schedules (reason: HAS_SCHEDULES)\n" {
		t.Errorf("got %q", got)
	}

	unavailable := status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`)
	if got := formatError(unavailable, "127.0.0.1:1"); got != "Error: UNAVAILABLE: cannot reach the server at 127.0.0.1:1 (connection refused)\n" {
		t.Errorf("got %q", got)
	}
	for _, got := range []string{formatError(unavailable, "x"), formatError(fmt.Errorf("x: %w", st.Err()), "x")} {
		if strings.Contains(got, "rpc error") || strings.Contains(got, "desc =") {
			t.Errorf("gRPC noise: %q", got)
		}
	}
}

func TestEnumsAndShorthands(t *testing.T) {
	for _, s := range []string{"csv", "CSV", "FORMAT_CSV", " Csv "} {
		if n, err := parseEnum(pb.Format(0).Descriptor(), "format", s); err != nil || pb.Format(n) != pb.Format_FORMAT_CSV {
			t.Errorf("parseEnum(%q) = %v, %v", s, n, err)
		}
	}
	if n, err := parseEnum(pb.SendCondition(0).Descriptor(), "send-condition", "if-no-data"); err != nil || pb.SendCondition(n) != pb.SendCondition_SEND_CONDITION_IF_NO_DATA {
		t.Errorf("if-no-data: %v %v", n, err)
	}
	if _, err := parseEnum(pb.Format(0).Descriptor(), "format", "unspecified"); err == nil {
		t.Error("UNSPECIFIED accepted")
	}
	for uri, want := range map[string][2]int32{
		"s3://b/x-{date}.csv.gz": {int32(pb.Format_FORMAT_CSV), int32(pb.Compression_COMPRESSION_GZIP)},
		"s3://b/x.jsonl.zst":     {int32(pb.Format_FORMAT_JSONL), int32(pb.Compression_COMPRESSION_ZSTD)},
		"s3://b/x.csv":           {int32(pb.Format_FORMAT_CSV), int32(pb.Compression_COMPRESSION_NONE)},
		"s3://b/x.parquet":       {int32(pb.Format_FORMAT_PARQUET), int32(pb.Compression_COMPRESSION_NONE)},
		"s3://b/x.bin":           {0, 0},
	} {
		f, c := formatFromURI(uri)
		if int32(f) != want[0] || int32(c) != want[1] {
			t.Errorf("formatFromURI(%s) = %v %v", uri, f, c)
		}
	}
	for in, want := range map[string]string{
		"EVENT_STATUS=FAILURE": "EVENT_STATUS FILTER_OPERATOR_EQUALS [FAILURE]",
		"A!=b":                 "A FILTER_OPERATOR_NOT_EQUALS [b]",
		"T>2026-01-01":         "T FILTER_OPERATOR_GREATER_THAN [2026-01-01]",
		"U~bot":                "U FILTER_OPERATOR_CONTAINS [bot]",
		"E:in:A,B":             "E FILTER_OPERATOR_IN [A B]",
		"R:between:1,2":        "R FILTER_OPERATOR_BETWEEN [1 2]",
	} {
		f, err := parseFilter(in)
		if err != nil || fmt.Sprintf("%s %s %v", f.GetColumn(), f.GetOperator(), f.GetValues()) != want {
			t.Errorf("parseFilter(%q) = %v, %v", in, f, err)
		}
	}
	if _, err := parseFilter("nothing"); err == nil {
		t.Error("parseFilter accepted a filter without operator")
	}
	if got := maskKey("aek_abcdefgh_abcdefghijklmnopqrstuvwxyz234567"); got != "aek_abcdefgh_********" {
		t.Errorf("maskKey: %q", got)
	}
	if got := maskKey("hunter2"); got != "********" {
		t.Errorf("maskKey: %q", got)
	}
	if humanBytes(512) != "512 B" || humanBytes(5<<20) != "5.0 MiB" {
		t.Errorf("humanBytes: %s %s", humanBytes(512), humanBytes(5<<20))
	}
}
