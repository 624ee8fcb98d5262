package integration_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/auditexport/auditexport/internal/testenv"
)

// localSchedule creates a LOCAL integration, a saved AUDIT_LOGS workbook and
// a schedule on it; it returns the integration and schedule ids.
func localSchedule(t *testing.T, s *Server, name string) (intID, schID string) {
	t.Helper()
	tr := grpcTransport{s}
	must := func(rpc, req string) Result {
		t.Helper()
		r := tr.Call(t, rpc, s.AdminKey, req, "")
		if r.Code != codes.OK {
			t.Fatalf("%s: %v %s", rpc, r.Code, r.Message)
		}
		return r
	}
	dir := "file://" + s.LocalDir("", name) + "/"
	in := must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":"PROVIDER_LOCAL","destination":%q}}`, name, dir))
	ex := must("ExploreTable", `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`)
	wb := getString(ex.Body, "workbook", "id")
	el := getPath(ex.Body, "workbook", "elements").([]any)[0].(map[string]any)["id"].(string)
	must("SaveWorkbookAs", fmt.Sprintf(`{"id":%q,"name":"wb-%s"}`, wb, name))
	sc := must("CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":"sched-%s","elementId":%q,"format":"FORMAT_CSV",
		"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":"%sx-{run_id}.csv"}},"cron":"0 0 1 1 *","timeZone":"UTC"}}`, wb, name, el, name, dir))
	return getString(in.Body, "storageIntegration", "id"), getString(sc.Body, "schedule", "id")
}

// TestIntegrationChangeEmailsOwners: updating or deleting an integration
// pauses linked schedules and e-mails their owners through real SMTP.
func TestIntegrationChangeEmailsOwners(t *testing.T) {
	t.Parallel()
	mp := testenv.StartMailpit(t)
	s := StartServer(t, "sqlite", "--smtp-url", mp.SMTPURL, "--mail-from", "auditexport@example.com", "--notify-allowed-domains", "alerts.example.org")
	intID, schID := localSchedule(t, s, "mailed")
	tr := grpcTransport{s}
	// The schedule's own recipients hear about the pause too (an allowed domain).
	if r := tr.Call(t, "UpdateSchedule", s.AdminKey, `{"schedule":{"id":"`+schID+`","notifyEmails":["oncall@alerts.example.org"]},"updateMask":"notifyEmails"}`, ""); r.Code != codes.OK {
		t.Fatalf("set notify_emails: %v %s", r.Code, r.Message)
	}
	if r := tr.Call(t, "UpdateStorageIntegration", s.AdminKey, `{"storageIntegration":{"id":"`+intID+`","name":"mailed2"},"updateMask":"name"}`, ""); r.Code != codes.OK {
		t.Fatalf("update: %v %s", r.Code, r.Message)
	} else if ids, _ := getPath(r.Body, "pausedScheduleIds").([]any); len(ids) != 1 || ids[0] != schID {
		t.Fatalf("update answer names paused schedules %v, want [%s]", ids, schID)
	}
	m := mp.WaitFor(t, func(m testenv.Message) bool {
		return strings.Contains(m.Text, "INTEGRATION_UPDATED") && slices.Contains(m.To, "admin@example.com")
	}, 20*time.Second)
	if !strings.Contains(m.Text, schID) || !strings.Contains(m.Subject, "mailed2") {
		t.Fatalf("pause mail: to=%v subject=%q\n%s", m.To, m.Subject, m.Text)
	}
	m = mp.WaitFor(t, func(m testenv.Message) bool {
		return strings.Contains(m.Text, "INTEGRATION_UPDATED") && slices.Contains(m.To, "oncall@alerts.example.org")
	}, 20*time.Second)
	if !strings.Contains(m.Text, schID) {
		t.Fatalf("pause mail to the schedule's notify_emails lacks the schedule:\n%s", m.Text)
	}
	if r := tr.Call(t, "DeleteStorageIntegration", s.AdminKey, `{"id":"`+intID+`"}`, ""); r.Code != codes.OK {
		t.Fatalf("delete: %v %s", r.Code, r.Message)
	}
	m = mp.WaitFor(t, func(m testenv.Message) bool { return strings.Contains(m.Text, "INTEGRATION_DELETED") }, 20*time.Second)
	if !strings.Contains(m.Text, schID) {
		t.Fatalf("delete mail lacks the schedule:\n%s", m.Text)
	}
	g := tr.Call(t, "GetSchedule", s.AdminKey, `{"id":"`+schID+`"}`, "")
	if getString(g.Body, "schedule", "pauseReason") != "PAUSE_REASON_INTEGRATION_DELETED" {
		t.Fatalf("schedule after delete: %v", g.Body)
	}
	if strings.Contains(s.Logs(), "mail is disabled") {
		t.Error("server with --smtp-url claims mail is disabled")
	}
}

// TestMailDisabledSaysSo: without --smtp-url the service works and logs that
// mail is disabled.
func TestMailDisabledSaysSo(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	intID, _ := localSchedule(t, s, "nomail")
	if r := (grpcTransport{s}).Call(t, "DeleteStorageIntegration", s.AdminKey, `{"id":"`+intID+`"}`, ""); r.Code != codes.OK {
		t.Fatalf("delete: %v %s", r.Code, r.Message)
	}
	if !s.WaitLogs("mail is disabled", 10*time.Second) {
		t.Fatal("no log line says mail is disabled")
	}
}
