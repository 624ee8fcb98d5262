package integration_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// badCase is one request the server must refuse without changing the database.
type badCase struct {
	name, rpc string
	key       string // "" = admin, "creator" = the CREATOR user
	req       string // JSON, lowerCamelCase
	code      codes.Code
	field     string // BadRequest field path that must be among the violations
}

// fixtures are the objects the bad requests refer to.
type fixtures struct {
	adminEmail, creatorKey          string
	s3ID, localID, localDest        string
	wb1, el1, wb2, el2, schID, crID string
}

// obj builds a JSON object from base and "dotted.path", value pairs (nil deletes).
func obj(base map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		path := strings.Split(kv[i].(string), ".")
		m := base
		for _, p := range path[:len(path)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		if kv[i+1] == nil {
			delete(m, path[len(path)-1])
		} else {
			m[path[len(path)-1]] = kv[i+1]
		}
	}
	return base
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type M = map[string]any

func (fx fixtures) createSchedule(kv ...any) string {
	sc := obj(M{"name": "bad", "elementId": fx.el1, "format": "FORMAT_CSV", "cron": "0 0 1 1 *", "timeZone": "UTC",
		"destination": M{"cloudStorage": M{"storageIntegrationName": "s3main", "uri": "s3://exports/audit/x.csv"}}}, kv...)
	return js(M{"workbookId": fx.wb1, "schedule": sc})
}

func (fx fixtures) createIntegration(kv ...any) string {
	in := obj(M{"name": "newint", "provider": "PROVIDER_S3", "destination": "s3://exports/new/", "endpoint": "http://127.0.0.1:9000",
		"credentials": M{"awsAccessKey": M{"accessKeyId": "AKIABAD", "secretAccessKey": "bad-secret"}}}, kv...)
	return js(M{"storageIntegration": in})
}

func (fx fixtures) updateWorkbookElement(kv ...any) string {
	el := obj(M{"id": fx.el1, "source": M{"connectionId": "con_audit_logs", "table": "AUDIT_LOGS"}}, kv...)
	return js(M{"workbook": M{"id": fx.wb1, "elements": []any{el}}, "updateMask": "elements"})
}

// orgDir is the admin organization's LOCAL directory, <local-root>/<org id>.
func badRequestTable(fx fixtures, orgDir string) []badCase {
	root := filepath.Dir(orgDir)
	const ia, sched = codes.InvalidArgument, "CreateSchedule"
	const uriF = "schedule.destination.cloud_storage.uri"
	const si = "storage_integration."
	long := func(n int) string { return strings.Repeat("a", n) }
	upSch := func(mask string, kv ...any) string {
		return js(M{"schedule": obj(M{"id": fx.schID}, kv...), "updateMask": mask})
	}
	upInt := func(id, mask string, kv ...any) string {
		return js(M{"storageIntegration": obj(M{"id": id}, kv...), "updateMask": mask})
	}
	upUser := func(mask string, kv ...any) string {
		return js(M{"user": obj(M{"id": fx.crID}, kv...), "updateMask": mask})
	}
	return []badCase{
		// Schedules: cron and time zone.
		{"cron minute 61", sched, "", fx.createSchedule("cron", "61 * * * *"), ia, "schedule.cron"},
		{"cron six fields", sched, "", fx.createSchedule("cron", "0 0 0 1 1 *"), ia, "schedule.cron"},
		{"cron never fires", sched, "", fx.createSchedule("cron", "0 0 31 2 *"), ia, "schedule.cron"},
		{"zone Mars/Phobos", sched, "", fx.createSchedule("timeZone", "Mars/Phobos"), ia, "schedule.time_zone"},
		{"zone empty", sched, "", fx.createSchedule("timeZone", nil), ia, "schedule.time_zone"},
		{"update cron minute 61", "UpdateSchedule", "", upSch("cron", "cron", "61 * * * *"), ia, "schedule.cron"},
		{"update zone Mars/Phobos", "UpdateSchedule", "", upSch("timeZone", "timeZone", "Mars/Phobos"), ia, "schedule.time_zone"},
		// Schedules: where the file goes.
		{"uri other prefix", sched, "", fx.createSchedule("destination.cloudStorage.uri", "s3://exports/other/x.csv"), ia, uriF},
		{"uri prefix sibling", sched, "", fx.createSchedule("destination.cloudStorage.uri", "s3://exports/audit2/x.csv"), ia, uriF},
		{"uri other bucket", sched, "", fx.createSchedule("destination.cloudStorage.uri", "s3://elsewhere/audit/x.csv"), ia, uriF},
		{"uri dot-dot segment", sched, "", fx.createSchedule("destination.cloudStorage.uri", "s3://exports/audit/../other/x.csv"), ia, uriF},
		{"uri gs scheme on S3", sched, "", fx.createSchedule("destination.cloudStorage.uri", "gs://exports/audit/x.csv"), ia, uriF},
		{"uri is the directory", sched, "", fx.createSchedule("destination.cloudStorage.uri", "s3://exports/audit/day/"), ia, uriF},
		{"uri unknown token", sched, "", fx.createSchedule("destination.cloudStorage.uri", "s3://exports/audit/{nope}.csv"), ia, uriF},
		{"uri longer than 1024", sched, "", fx.createSchedule("destination.cloudStorage.uri", "s3://exports/audit/"+long(1100)+".csv"), ia, uriF},
		{"local uri outside", sched, "", fx.createSchedule("destination.cloudStorage.storageIntegrationName", "localmain",
			"destination.cloudStorage.uri", "file://"+orgDir+"/other/x.csv"), ia, uriF},
		{"csv gzip with .csv", sched, "", fx.createSchedule("compression", "COMPRESSION_GZIP"), ia, uriF},
		{"parquet gzip", sched, "", fx.createSchedule("format", "FORMAT_PARQUET", "compression", "COMPRESSION_GZIP",
			"destination.cloudStorage.uri", "s3://exports/audit/x.parquet.gz"), ia, "schedule.compression"},
		{"update uri outside", "UpdateSchedule", "", upSch("destination", "destination", M{"cloudStorage": M{"storageIntegrationName": "s3main", "uri": "s3://exports/x.csv"}}), ia, uriF},
		// Schedules: references and other fields.
		{"unknown element id", sched, "", fx.createSchedule("elementId", "el_01NOSUCHELEMENT"), ia, "schedule.element_id"},
		{"element of another workbook", sched, "", fx.createSchedule("elementId", fx.el2), ia, "schedule.element_id"},
		{"unknown integration name", sched, "", fx.createSchedule("destination.cloudStorage.storageIntegrationName", "nosuch"), ia, "schedule.destination.cloud_storage.storage_integration_name"},
		{"unspecified format", sched, "", fx.createSchedule("format", nil), ia, "schedule.format"},
		{"bad notify email", sched, "", fx.createSchedule("notifyEmails", []string{"ops@example.com", "not an email"}), ia, "schedule.notify_emails[1]"},
		{"schedule name 300 chars", sched, "", fx.createSchedule("name", long(300)), ia, "schedule.name"},
		{"unsaved workbook", sched, "", js(M{"workbookId": fx.wb2, "schedule": obj(M{"elementId": fx.el2, "format": "FORMAT_CSV", "cron": "0 0 1 1 *", "timeZone": "UTC",
			"destination": M{"cloudStorage": M{"storageIntegrationName": "s3main", "uri": "s3://exports/audit/x.csv"}}})}), codes.FailedPrecondition, ""},
		{"unknown workbook", sched, "", js(M{"workbookId": "wb_01NOSUCHWORKBOOK", "schedule": M{"elementId": fx.el1}}), codes.NotFound, ""},
		{"update schedule unknown mask path", "UpdateSchedule", "", upSch("bogus", "name", "x"), ia, "update_mask"},
		{"update schedule empty name", "UpdateSchedule", "", upSch("name"), ia, "schedule.name"},
		{"update schedule by non-owner", "UpdateSchedule", "creator", upSch("name", "name", "mine"), codes.PermissionDenied, ""},
		{"get unknown schedule", "GetSchedule", "", `{"id":"sch_01NOSUCHSCHEDULE"}`, codes.NotFound, ""},
		// Storage integrations.
		{"empty integration name", "CreateStorageIntegration", "", fx.createIntegration("name", ""), ia, si + "name"},
		{"name with spaces", "CreateStorageIntegration", "", fx.createIntegration("name", "my integration"), ia, si + "name"},
		{"name starts with digit", "CreateStorageIntegration", "", fx.createIntegration("name", "1st"), ia, si + "name"},
		{"name 129 chars", "CreateStorageIntegration", "", fx.createIntegration("name", "n"+long(128)), ia, si + "name"},
		{"duplicate integration name", "CreateStorageIntegration", "", fx.createIntegration("name", "s3main"), codes.AlreadyExists, si + "name"},
		{"unspecified provider", "CreateStorageIntegration", "", fx.createIntegration("provider", nil), ia, si + "provider"},
		{"gcs credentials on S3", "CreateStorageIntegration", "", fx.createIntegration("credentials", M{"gcsServiceAccount": M{"jsonKey": `{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"k"}`}}), ia, si + "credentials"},
		{"S3 without credentials", "CreateStorageIntegration", "", fx.createIntegration("credentials", nil), ia, si + "credentials"},
		{"LOCAL with credentials", "CreateStorageIntegration", "", fx.createIntegration("provider", "PROVIDER_LOCAL", "endpoint", nil,
			"destination", "file://"+orgDir+"/l2/"), ia, si + "credentials"},
		{"LOCAL outside root", "CreateStorageIntegration", "", fx.createIntegration("provider", "PROVIDER_LOCAL", "endpoint", nil, "credentials", nil,
			"destination", "file:///tmp/elsewhere/"), ia, si + "destination"},
		{"LOCAL root sibling", "CreateStorageIntegration", "", fx.createIntegration("provider", "PROVIDER_LOCAL", "endpoint", nil, "credentials", nil,
			"destination", "file://"+root+"2/"), ia, si + "destination"},
		{"LOCAL shared root", "CreateStorageIntegration", "", fx.createIntegration("provider", "PROVIDER_LOCAL", "endpoint", nil, "credentials", nil,
			"destination", "file://"+root+"/"), ia, si + "destination"},
		{"LOCAL another organization's directory", "CreateStorageIntegration", "", fx.createIntegration("provider", "PROVIDER_LOCAL", "endpoint", nil, "credentials", nil,
			"destination", "file://"+root+"/org_01OTHERORGANIZATION/"), ia, si + "destination"},
		{"LOCAL org dir sibling", "CreateStorageIntegration", "", fx.createIntegration("provider", "PROVIDER_LOCAL", "endpoint", nil, "credentials", nil,
			"destination", "file://"+orgDir+"x/"), ia, si + "destination"},
		{"LOCAL dot-dot escape", "CreateStorageIntegration", "", fx.createIntegration("provider", "PROVIDER_LOCAL", "endpoint", nil, "credentials", nil,
			"destination", "file://"+orgDir+"/../secret/"), ia, si + "destination"},
		{"S3 destination wrong scheme", "CreateStorageIntegration", "", fx.createIntegration("destination", "gs://exports/new/"), ia, si + "destination"},
		{"endpoint ftp", "CreateStorageIntegration", "", fx.createIntegration("endpoint", "ftp://x"), ia, si + "endpoint"},
		{"destination longer than 1024", "CreateStorageIntegration", "", fx.createIntegration("destination", "s3://exports/"+long(1100)+"/"), ia, si + "destination"},
		{"creator creates integration", "CreateStorageIntegration", "creator", fx.createIntegration(), codes.PermissionDenied, ""},
		{"update integration unknown mask path", "UpdateStorageIntegration", "", upInt(fx.s3ID, "bogus", "region", "eu-west-1"), ia, "update_mask"},
		{"update integration provider", "UpdateStorageIntegration", "", upInt(fx.s3ID, "provider", "provider", "PROVIDER_GCS"), ia, si + "provider"},
		{"update integration bad destination", "UpdateStorageIntegration", "", upInt(fx.s3ID, "destination", "destination", "s3://exports/a/../b/"), ia, si + "destination"},
		{"rename integration to taken name", "UpdateStorageIntegration", "", upInt(fx.localID, "name", "name", "s3main"), codes.AlreadyExists, si + "name"},
		{"update unknown integration", "UpdateStorageIntegration", "", upInt("int_01NOSUCHINTEGRATION", "region", "region", "eu-west-1"), codes.NotFound, ""},
		// Workbooks.
		{"update workbook unknown mask path", "UpdateWorkbook", "", js(M{"workbook": M{"id": fx.wb1, "name": "x"}, "updateMask": "title"}), ia, "update_mask"},
		{"workbook name 300 chars", "UpdateWorkbook", "", js(M{"workbook": M{"id": fx.wb1, "name": long(300)}, "updateMask": "name"}), ia, "workbook.name"},
		{"save as name 300 chars", "SaveWorkbookAs", "", js(M{"id": fx.wb1, "name": long(300)}), ia, "name"},
		{"filter unknown column", "UpdateWorkbook", "", fx.updateWorkbookElement("filters", []any{M{"column": "NO_SUCH_COLUMN", "operator": "FILTER_OPERATOR_EQUALS", "values": []string{"x"}}}), ia, "workbook.elements[0].filters[0].column"},
		{"between with one value", "UpdateWorkbook", "", fx.updateWorkbookElement("filters", []any{M{"column": "REQUEST_TIME", "operator": "FILTER_OPERATOR_BETWEEN", "values": []string{"2024-01-01T00:00:00Z"}}}), ia, "workbook.elements[0].filters[0].values"},
		{"sort unknown column", "UpdateWorkbook", "", fx.updateWorkbookElement("sort", []any{M{"column": "NO_SUCH_COLUMN"}}), ia, "workbook.elements[0].sort[0].column"},
		{"unknown element id in workbook", "UpdateWorkbook", "", fx.updateWorkbookElement("id", "el_01NOSUCHELEMENT"), ia, "workbook.elements[0].id"},
		{"query page_size -1", "QueryElement", "", js(M{"workbookId": fx.wb1, "elementId": fx.el1, "pageSize": -1}), ia, "page_size"},
		{"query garbage page_token", "QueryElement", "", js(M{"workbookId": fx.wb1, "elementId": fx.el1, "pageToken": "%%garbage%%"}), ia, "page_token"},
		// Users.
		{"create user bad email", "CreateUser", "", js(M{"user": M{"email": "not-an-email", "accountType": "ACCOUNT_TYPE_VIEWER"}}), ia, "user.email"},
		{"create user display-name email", "CreateUser", "", js(M{"user": M{"email": "Bob <bob@example.com>", "accountType": "ACCOUNT_TYPE_VIEWER"}}), ia, "user.email"},
		{"create user unspecified account_type", "CreateUser", "", js(M{"user": M{"email": "new@example.com"}}), ia, "user.account_type"},
		{"create user duplicate email", "CreateUser", "", js(M{"user": M{"email": "creator@example.com", "accountType": "ACCOUNT_TYPE_VIEWER"}}), codes.AlreadyExists, "user.email"},
		{"creator creates user", "CreateUser", "creator", js(M{"user": M{"email": "new@example.com", "accountType": "ACCOUNT_TYPE_VIEWER"}}), codes.PermissionDenied, ""},
		{"update user unknown mask path", "UpdateUser", "", upUser("password", "email", "x@example.com"), ia, "update_mask"},
		{"update user bad email", "UpdateUser", "", upUser("email", "email", "nope"), ia, "user.email"},
		{"update user to taken email", "UpdateUser", "", upUser("email", "email", fx.adminEmail), codes.AlreadyExists, "user.email"},
		// Paging.
		{"list schedules page_size -1", "ListSchedules", "", `{"pageSize":-1}`, ia, "page_size"},
		{"list workbooks page_size -1", "ListWorkbooks", "", `{"pageSize":-1}`, ia, "page_size"},
		{"list integrations garbage page_token", "ListStorageIntegrations", "", `{"pageToken":"!!garbage!!"}`, ia, "page_token"},
		{"list users token of another list", "ListUsers", "", js(M{"pageToken": base64.RawURLEncoding.EncodeToString([]byte("int:" + fx.s3ID))}), ia, "page_token"},
	}
}

// snapshotTables are every table but audit_logs (ent's names, ent/migrate/schema.go).
var snapshotTables = []string{"organizations", "users", "api_keys", "connections", "connection_grants",
	"storage_integrations", "workbooks", "elements", "schedules"}

// snapshot serialises every row of every table; api_keys.last_used_time is
// skipped because authentication refreshes it (at most once a minute).
func snapshot(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range snapshotTables {
		rows, err := db.Query("SELECT * FROM " + table + " ORDER BY id")
		if err != nil {
			t.Fatalf("snapshot %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		var sb strings.Builder
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("snapshot %s: %v", table, err)
			}
			for i, c := range cols {
				if table == "api_keys" && c == "last_used_time" {
					continue
				}
				fmt.Fprintf(&sb, "%s=%v ", c, vals[i])
			}
			sb.WriteString("\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("snapshot %s: %v", table, err)
		}
		rows.Close()
		out[table] = sb.String()
	}
	return out
}

func compareSnapshots(t *testing.T, before, after map[string]string) {
	t.Helper()
	for _, table := range snapshotTables {
		if before[table] == after[table] {
			continue
		}
		b, a := strings.Split(before[table], "\n"), strings.Split(after[table], "\n")
		var diff []string
		for _, l := range b {
			if !slices.Contains(a, l) {
				diff = append(diff, "- "+l)
			}
		}
		for _, l := range a {
			if !slices.Contains(b, l) {
				diff = append(diff, "+ "+l)
			}
		}
		t.Errorf("table %s changed:\n%s", table, strings.Join(diff, "\n"))
	}
}

// checkRefusal asserts the error shape of one bad request.
func checkRefusal(t *testing.T, res Result, code codes.Code, field string) {
	t.Helper()
	if res.Code != code {
		t.Errorf("code %v (%q), want %v; body %v", res.Code, res.Message, code, res.Body)
	}
	if res.Code == codes.OK {
		return
	}
	if res.Domain != "auditexport" || res.Reason == "" {
		t.Errorf("ErrorInfo domain %q reason %q, want domain auditexport and a reason", res.Domain, res.Reason)
	}
	if field != "" && !slices.Contains(res.Violations, field) {
		t.Errorf("violations %q do not name %s (message %q)", res.Violations, field, res.Message)
	}
}

func setupBadRequestFixtures(t *testing.T, s *Server) fixtures {
	t.Helper()
	g := grpcTransport{s}
	call := func(rpc, req string) Result {
		t.Helper()
		res := g.Call(t, rpc, s.AdminKey, req, "")
		if res.Code != codes.OK {
			t.Fatalf("fixture %s %s: %v %s", rpc, req, res.Code, res.Message)
		}
		return res
	}
	fx := fixtures{localDest: "file://" + s.LocalDir("", "local") + "/"}
	fx.adminEmail = getString(call("GetCurrentUser", "").Body, "user", "email")
	fx.s3ID = getString(call("CreateStorageIntegration", `{"storageIntegration":{"name":"s3main","provider":"PROVIDER_S3",
		"destination":"s3://exports/audit/","region":"us-east-1","endpoint":"http://127.0.0.1:9000",
		"credentials":{"awsAccessKey":{"accessKeyId":"AKIAFIXTURE","secretAccessKey":"fixture-secret"}}}}`).Body, "storageIntegration", "id")
	fx.localID = getString(call("CreateStorageIntegration", js(M{"storageIntegration": M{"name": "localmain",
		"provider": "PROVIDER_LOCAL", "destination": fx.localDest}})).Body, "storageIntegration", "id")
	explore := func() (string, string) {
		wb := call("ExploreTable", `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`).Body
		els, _ := getPath(wb, "workbook", "elements").([]any)
		if len(els) != 1 {
			t.Fatalf("exploration: %v", wb)
		}
		el, _ := els[0].(map[string]any)["id"].(string)
		return getString(wb, "workbook", "id"), el
	}
	fx.wb1, fx.el1 = explore()
	call("SaveWorkbookAs", js(M{"id": fx.wb1, "name": "wb1"}))
	fx.wb2, fx.el2 = explore()
	fx.schID = getString(call("CreateSchedule", js(M{"workbookId": fx.wb1, "schedule": M{"name": "yearly", "elementId": fx.el1,
		"format": "FORMAT_CSV", "cron": "0 0 1 1 *", "timeZone": "UTC",
		"destination": M{"cloudStorage": M{"storageIntegrationName": "s3main", "uri": "s3://exports/audit/{date}/x.csv"}}}})).Body, "schedule", "id")
	fx.crID = getString(call("CreateUser", `{"user":{"email":"creator@example.com","accountType":"ACCOUNT_TYPE_CREATOR"}}`).Body, "user", "id")
	fx.creatorKey = getString(call("CreateApiKey", js(M{"userId": fx.crID, "name": "creator"})).Body, "secret")
	// Authentication records a key's last use (at most once a minute), which
	// also moves api_keys.update_time: use the new key once before the table.
	if res := g.Call(t, "GetCurrentUser", fx.creatorKey, "", ""); res.Code != codes.OK {
		t.Fatalf("creator key: %v %s", res.Code, res.Message)
	}
	for _, v := range []string{fx.s3ID, fx.localID, fx.wb1, fx.el1, fx.wb2, fx.el2, fx.schID, fx.crID, fx.creatorKey} {
		if v == "" {
			t.Fatalf("incomplete fixtures: %+v", fx)
		}
	}
	return fx
}

// TestBadRequests sends requests the server must refuse, over gRPC and REST
// on SQLite and PostgreSQL, and checks the code, the ErrorInfo, the
// BadRequest field path, and that no table (but audit_logs) changed.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend)
			fx := setupBadRequestFixtures(t, s)
			db := s.OpenDB()
			keys := map[string]string{"": s.AdminKey, "creator": fx.creatorKey}
			table := badRequestTable(fx, s.LocalDir(""))
			if len(table) < 35 {
				t.Fatalf("only %d rows", len(table))
			}
			for _, tr := range transports(s) {
				t.Run(tr.Name(), func(t *testing.T) {
					for _, c := range table {
						t.Run(c.name, func(t *testing.T) {
							before := snapshot(t, db)
							res := tr.Call(t, c.rpc, keys[c.key], c.req, "")
							checkRefusal(t, res, c.code, c.field)
							compareSnapshots(t, before, snapshot(t, db))
						})
					}
				})
			}
			t.Run("grpc-invalid-utf8", func(t *testing.T) { invalidUTF8Cases(t, s, fx, db) })
		})
	}
}

// Invalid UTF-8 cannot be written as JSON, and protobuf-go refuses to marshal
// it into a proto3 string, so these requests are built as Go messages holding
// a marker that is swapped for invalid bytes in the encoded request.
const (
	utf8Marker = "MARKER!!"
	badUTF8    = "ok\xff\xfeok\xc0!"
)

// rawCodec sends pre-encoded request bytes and decodes responses as proto.
type rawCodec struct{}

type rawRequest []byte

func (rawCodec) Marshal(v any) ([]byte, error) {
	if r, ok := v.(rawRequest); ok {
		return r, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

func invalidUTF8Cases(t *testing.T, s *Server, fx fixtures, db *sql.DB) {
	sched := &pb.Schedule{Name: "x" + utf8Marker, ElementId: fx.el1, Format: pb.Format_FORMAT_CSV, Cron: "0 0 1 1 *", TimeZone: "UTC",
		Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{StorageIntegrationName: "s3main", Uri: "s3://exports/audit/x.csv"}}}
	cases := []struct {
		name, method, field string
		req, resp           proto.Message
	}{
		{"integration name", "IntegrationService/CreateStorageIntegration", "storage_integration.name",
			&pb.CreateStorageIntegrationRequest{StorageIntegration: &pb.StorageIntegration{Name: "n" + utf8Marker, Provider: pb.Provider_PROVIDER_LOCAL,
				Destination: "file://" + s.LocalDir("", "utf8") + "/"}}, &pb.CreateStorageIntegrationResponse{}},
		{"workbook name", "WorkbookService/UpdateWorkbook", "workbook.name",
			&pb.UpdateWorkbookRequest{Workbook: &pb.Workbook{Id: fx.wb1, Name: "w" + utf8Marker}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}},
			&pb.UpdateWorkbookResponse{}},
		{"save as name", "WorkbookService/SaveWorkbookAs", "name", &pb.SaveWorkbookAsRequest{Id: fx.wb1, Name: "w" + utf8Marker}, &pb.SaveWorkbookAsResponse{}},
		{"schedule name", "ScheduleService/CreateSchedule", "schedule.name",
			&pb.CreateScheduleRequest{WorkbookId: fx.wb1, Schedule: sched}, &pb.CreateScheduleResponse{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := proto.Marshal(c.req)
			if err != nil || bytes.Count(raw, []byte(utf8Marker)) != 1 {
				t.Fatalf("encoding %s: %v", c.name, err)
			}
			raw = bytes.Replace(raw, []byte(utf8Marker), []byte(badUTF8), 1)
			before := snapshot(t, db)
			ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 30*time.Second)
			defer cancel()
			err = s.Conn.Invoke(ctx, "/auditexport.v1."+c.method, rawRequest(raw), c.resp, grpc.ForceCodec(rawCodec{}), grpc.WaitForReady(true))
			checkRefusal(t, resultOf(err), codes.InvalidArgument, c.field)
			compareSnapshots(t, before, snapshot(t, db))
		})
	}
}

// resultOf turns a gRPC error into a Result (as grpcTransport does).
func resultOf(err error) Result {
	st := status.Convert(err)
	res := Result{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		switch x := d.(type) {
		case *errdetails.ErrorInfo:
			res.Reason, res.Domain = x.GetReason(), x.GetDomain()
		case *errdetails.BadRequest:
			for _, v := range x.GetFieldViolations() {
				res.Violations = append(res.Violations, v.GetField())
			}
		}
	}
	return res
}
