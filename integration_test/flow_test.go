package integration_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// auditExpect is what one call must have left in AUDIT_LOGS.
type auditExpect struct {
	requestID, eventType, status, userID, objectID string
}

// flow runs calls over one transport and remembers what AUDIT_LOGS must hold.
type flow struct {
	t       *testing.T
	s       *Server
	tr      Transport
	key     string
	userID  string
	expects []auditExpect
	n       int
}

// call makes an RPC expecting want; objectID (if known) must be the audit object id.
func (f *flow) call(rpc, req string, want codes.Code, objectID string) Result {
	f.t.Helper()
	f.n++
	rid := fmt.Sprintf("it-%s-%s-%d-%s", f.s.Backend, f.tr.Name(), f.n, randHex(3))
	res := f.tr.Call(f.t, rpc, f.key, req, rid)
	if res.Code != want {
		f.t.Fatalf("%s over %s: code %v (%s), want %v", rpc, f.tr.Name(), res.Code, res.Message, want)
	}
	st := "SUCCESS"
	if want != codes.OK {
		st = "FAILURE"
	}
	typ := strings.ToUpper(strings.Join(splitCamel(rpc), "_"))
	f.expects = append(f.expects, auditExpect{rid, typ, st, f.userID, objectID})
	return res
}

func splitCamel(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

// TestFlow is the acceptance walk: bootstrap key -> integration ->
// credentials -> explore -> save -> schedule -> update integration (pauses
// the schedule) -> resume -> delete integration with its schedules. It runs
// on SQLite and PostgreSQL, over gRPC and REST, and then checks that every
// call left exactly one matching AUDIT_LOGS row.
func TestFlow(t *testing.T) {
	t.Parallel()
	raceTest(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend, "--notify-allowed-domains", "example.com") // ops@example.com is notified
			for _, tr := range transports(s) {
				t.Run(tr.Name(), func(t *testing.T) {
					f := &flow{t: t, s: s, tr: tr, key: s.AdminKey}
					me := f.call("GetCurrentUser", "", codes.OK, "")
					f.userID = getString(me.Body, "user", "id")
					f.expects[0].userID, f.expects[0].objectID = f.userID, f.userID
					runFlow(t, f)
					checkAudit(t, s, f.expects)
				})
			}
		})
	}
}

func runFlow(t *testing.T, f *flow) {
	name := "s3exports_" + f.tr.Name()
	bucket := "exports-" + f.tr.Name()
	in := f.call("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":"PROVIDER_S3",
		"destination":"s3://%s/audit/","region":"us-east-1","endpoint":"http://127.0.0.1:9000",
		"credentials":{"awsAccessKey":{"accessKeyId":"AKIAFLOWTEST","secretAccessKey":"flow-secret-never-shown"}}}}`, name, bucket), codes.OK, "")
	intID := getString(in.Body, "storageIntegration", "id")
	if !strings.HasPrefix(intID, "int_") || getPath(in.Body, "storageIntegration", "credentials") != nil {
		t.Fatalf("create integration answered %v", in.Body)
	}
	f.expects[len(f.expects)-1].objectID = intID

	cred := f.call("GetStorageIntegrationCredentials", fmt.Sprintf(`{"id":%q}`, intID), codes.OK, intID)
	if ext := getString(cred.Body, "credentials", "externalId"); !strings.HasPrefix(ext, "auditexport-") {
		t.Fatalf("credentials view has no external id: %v", cred.Body)
	}
	if getString(cred.Body, "credentials", "integrationName") != name || strings.Contains(fmt.Sprint(cred.Body), "flow-secret") {
		t.Fatalf("credentials view: %v", cred.Body)
	}

	conns := f.call("ListConnections", "", codes.OK, "")
	if !strings.Contains(fmt.Sprint(conns.Body), "AUDIT_LOGS") {
		t.Fatalf("no AUDIT_LOGS table in %v", conns.Body)
	}
	ex := f.call("ExploreTable", `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`, codes.OK, "")
	wbID := getString(ex.Body, "workbook", "id")
	f.expects[len(f.expects)-1].objectID = wbID
	if saved, _ := getPath(ex.Body, "workbook", "saved").(bool); saved || !strings.HasPrefix(wbID, "wb_") {
		t.Fatalf("exploration: %v", ex.Body)
	}
	elems, _ := getPath(ex.Body, "workbook", "elements").([]any)
	if len(elems) != 1 {
		t.Fatalf("exploration elements: %v", ex.Body)
	}
	elID, _ := elems[0].(map[string]any)["id"].(string)

	// A schedule on an unsaved exploration is refused.
	f.call("CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"elementId":%q,"format":"FORMAT_CSV",
		"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":"s3://%s/audit/x.csv"}},"cron":"0 * * * *","timeZone":"UTC"}}`,
		wbID, elID, name, bucket), codes.FailedPrecondition, wbID)

	q := f.call("QueryElement", fmt.Sprintf(`{"workbookId":%q,"elementId":%q,"pageSize":5}`, wbID, elID), codes.OK, elID)
	if rows, _ := getPath(q.Body, "rows").([]any); len(rows) == 0 {
		t.Fatalf("AUDIT_LOGS is empty after several calls: %v", q.Body)
	}

	sv := f.call("SaveWorkbookAs", fmt.Sprintf(`{"id":%q,"name":"Audit export","folder":"ops"}`, wbID), codes.OK, wbID)
	if saved, _ := getPath(sv.Body, "workbook", "saved").(bool); !saved {
		t.Fatalf("saved workbook: %v", sv.Body)
	}

	sc := f.call("CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":"hourly","elementId":%q,"format":"FORMAT_CSV",
		"compression":"COMPRESSION_GZIP","destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":"s3://%s/audit/{date}/logs.csv.gz"}},
		"cron":"0 * * * *","timeZone":"Europe/Berlin","notifyEmails":["ops@example.com"]}}`, wbID, elID, name, bucket), codes.OK, "")
	schID := getString(sc.Body, "schedule", "id")
	f.expects[len(f.expects)-1].objectID = schID
	if getString(sc.Body, "schedule", "state") != "SCHEDULE_STATE_ACTIVE" || getString(sc.Body, "schedule", "nextRunTime") == "" {
		t.Fatalf("new schedule: %v", sc.Body)
	}

	up := f.call("UpdateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"id":%q,"region":"eu-central-1"},"updateMask":"region"}`, intID), codes.OK, intID)
	if getString(up.Body, "storageIntegration", "region") != "eu-central-1" {
		t.Fatalf("update: %v", up.Body)
	}
	g := f.call("GetSchedule", fmt.Sprintf(`{"id":%q}`, schID), codes.OK, schID)
	if getString(g.Body, "schedule", "state") != "SCHEDULE_STATE_PAUSED" || getString(g.Body, "schedule", "pauseReason") != "PAUSE_REASON_INTEGRATION_UPDATED" {
		t.Fatalf("after integration update the schedule is %v", g.Body)
	}
	r := f.call("ResumeSchedule", fmt.Sprintf(`{"id":%q}`, schID), codes.OK, schID)
	if getString(r.Body, "schedule", "state") != "SCHEDULE_STATE_ACTIVE" || strings.TrimPrefix(getString(r.Body, "schedule", "pauseReason"), "PAUSE_REASON_UNSPECIFIED") != "" {
		t.Fatalf("resumed: %v", r.Body)
	}
	d := f.call("DeleteStorageIntegration", fmt.Sprintf(`{"id":%q,"deleteLinkedSchedules":true}`, intID), codes.OK, intID)
	if ids, _ := getPath(d.Body, "deletedScheduleIds").([]any); len(ids) != 1 || ids[0] != schID {
		t.Fatalf("delete answered %v", d.Body)
	}
	f.call("GetSchedule", fmt.Sprintf(`{"id":%q}`, schID), codes.NotFound, schID)
	f.call("GetStorageIntegration", fmt.Sprintf(`{"id":%q}`, intID), codes.NotFound, intID)
}

// checkAudit asserts exactly one AUDIT_LOGS row per call, with the right
// type, status, user and object.
func checkAudit(t *testing.T, s *Server, expects []auditExpect) {
	t.Helper()
	db := s.OpenDB()
	for _, e := range expects {
		rows, err := db.Query("SELECT event_type, event_status, user_id, object_id FROM audit_logs WHERE request_id = "+s.Placeholder(1), e.requestID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
			var typ, st, uid, oid string
			if err := rows.Scan(&typ, &st, &uid, &oid); err != nil {
				t.Fatal(err)
			}
			if typ != e.eventType || st != e.status || uid != e.userID || (e.objectID != "" && oid != e.objectID) {
				t.Errorf("audit row for %s = (%s %s %s %s), want (%s %s %s %s)", e.requestID, typ, st, uid, oid, e.eventType, e.status, e.userID, e.objectID)
			}
		}
		rows.Close()
		if n != 1 {
			t.Errorf("request %s (%s) left %d AUDIT_LOGS rows, want 1", e.requestID, e.eventType, n)
		}
	}
}
