package integration_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// nullPaths returns the JSON paths under v that hold null.
func nullPaths(v any, path string) []string {
	switch x := v.(type) {
	case nil:
		return []string{path}
	case map[string]any:
		var out []string
		for k, e := range x {
			out = append(out, nullPaths(e, path+"."+k)...)
		}
		return out
	case []any:
		var out []string
		for i, e := range x {
			out = append(out, nullPaths(e, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	return nil
}

// TestRESTJSONConventions: REST answers carry no JSON null (unset scalars
// are their zero value, unset messages left out) in resources, lists and
// errors; field violations over REST name lowerCamelCase JSON paths, the
// same refusal over gRPC the proto path.
func TestRESTJSONConventions(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	intID, schID := localSchedule(t, s, "restjson")
	sc := mustAs(t, s, s.AdminKey, "GetSchedule", fmt.Sprintf(`{"id":%q}`, schID))
	wbID := getString(sc, "schedule", "workbookId")
	for _, path := range []string{
		"/v1/schedules/" + schID,
		"/v1/schedules",
		"/v1/workbooks/" + wbID + "/schedules",
		"/v1/workbooks/" + wbID,
		"/v1/workbooks",
		"/v1/storageIntegrations/" + intID,
		"/v1/storageIntegrations",
		"/v1/users/me",
		"/v1/schedules/" + schID + "/runs",
		"/v1/exportRuns",
		"/v1/connections",
		"/v1/apiKeys",
		"/v1/schedules/sch_doesnotexist",
	} {
		code, body, _ := s.REST(http.MethodGet, path, s.AdminKey, nil)
		if code != http.StatusOK && code != http.StatusNotFound {
			t.Errorf("GET %s: %d %v", path, code, body)
			continue
		}
		if len(body) == 0 {
			t.Errorf("GET %s: empty body", path)
		}
		if nulls := nullPaths(map[string]any(body), ""); len(nulls) > 0 {
			t.Errorf("GET %s: JSON null at %s", path, strings.Join(nulls, ", "))
		}
	}
	// A schedule read over REST names its unset scalars with their zero
	// value rather than leaving them out or null.
	_, body, _ := s.REST(http.MethodGet, "/v1/schedules/"+schID, s.AdminKey, nil)
	if sch, _ := body["schedule"].(map[string]any); sch == nil {
		t.Fatalf("GET schedule: %v", body)
	} else if _, ok := sch["pauseReason"]; !ok {
		t.Errorf("GET schedule: pauseReason missing (unset scalars are emitted): %v", sch)
	}

	// The same bad time zone: lowerCamelCase over REST, snake_case over gRPC.
	req := fmt.Sprintf(`{"schedule":{"id":%q,"timeZone":"Mars/Olympus"},"updateMask":"timeZone"}`, schID)
	code, body, _ := s.REST(http.MethodPatch, "/v1/schedules/"+schID+"?updateMask=timeZone", s.AdminKey,
		`{"timeZone":"Mars/Olympus"}`)
	fields := violationFields(body)
	if code != http.StatusBadRequest || len(fields) != 1 || fields[0] != "schedule.timeZone" ||
		!strings.HasPrefix(fmt.Sprint(body["message"]), "schedule.timeZone: ") {
		t.Errorf("REST PATCH with a bad time zone: %d %v (violations %q), want 400 naming schedule.timeZone", code, body, fields)
	}
	if r := (grpcTransport{s}).Call(t, "UpdateSchedule", s.AdminKey, req, ""); len(r.Violations) != 1 || r.Violations[0] != "schedule.time_zone" ||
		!strings.HasPrefix(r.Message, "schedule.time_zone: ") {
		t.Errorf("gRPC UpdateSchedule with a bad time zone: %v %q %q, want schedule.time_zone", r.Code, r.Violations, r.Message)
	}
}

// violationFields lists the BadRequest field paths of a REST error body.
func violationFields(body map[string]any) []string {
	var out []string
	details, _ := body["details"].([]any)
	for _, d := range details {
		dm, _ := d.(map[string]any)
		fvs, _ := dm["fieldViolations"].([]any)
		for _, fv := range fvs {
			f, _ := fv.(map[string]any)["field"].(string)
			out = append(out, f)
		}
	}
	return out
}

// TestStaleUpdateTimeRefused: two browser tabs read a schedule; the first
// saves, the second — sending the update_time it read — is refused with
// 409 ABORTED STALE_UPDATE_TIME and changes nothing. The other PATCH
// resources refuse a stale update_time the same way over gRPC; without
// update_time an update goes through as before.
func TestStaleUpdateTimeRefused(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	intID, schID := localSchedule(t, s, "stale")
	_, tab, _ := s.REST(http.MethodGet, "/v1/schedules/"+schID, s.AdminKey, nil)
	read, _ := tab["schedule"].(map[string]any)
	updateTime, _ := read["updateTime"].(string)
	if updateTime == "" {
		t.Fatalf("GET schedule: no updateTime in %v", tab)
	}
	patch := func(name string) (int, map[string]any) {
		code, body, _ := s.REST(http.MethodPatch, "/v1/schedules/"+schID+"?updateMask=name", s.AdminKey,
			fmt.Sprintf(`{"name":%q,"updateTime":%q}`, name, updateTime))
		return code, body
	}
	if code, body := patch("tab one"); code != http.StatusOK {
		t.Fatalf("first tab's PATCH: %d %v", code, body)
	}
	code, body := patch("tab two")
	if code != http.StatusConflict || !strings.Contains(fmt.Sprint(body), "STALE_UPDATE_TIME") {
		t.Errorf("second tab's PATCH with the update_time it read: %d %v, want 409 STALE_UPDATE_TIME", code, body)
	}
	if got := getString(mustAs(t, s, s.AdminKey, "GetSchedule", fmt.Sprintf(`{"id":%q}`, schID)), "schedule", "name"); got != "tab one" {
		t.Errorf("name after the refused PATCH: %q, want tab one", got)
	}
	// No update_time: last writer wins, as before.
	if code, body, _ := s.REST(http.MethodPatch, "/v1/schedules/"+schID+"?updateMask=name", s.AdminKey, `{"name":"no revision"}`); code != http.StatusOK {
		t.Errorf("PATCH without update_time: %d %v", code, body)
	}

	wb := getString(mustAs(t, s, s.AdminKey, "GetSchedule", fmt.Sprintf(`{"id":%q}`, schID)), "schedule", "workbookId")
	me := getString(mustAs(t, s, s.AdminKey, "GetCurrentUser", `{}`), "user", "id")
	const old = "2020-01-01T00:00:00Z"
	for _, c := range []struct{ rpc, req string }{
		{"UpdateSchedule", fmt.Sprintf(`{"schedule":{"id":%q,"name":"x","updateTime":%q},"updateMask":"name"}`, schID, old)},
		{"UpdateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"id":%q,"name":"renamed","updateTime":%q},"updateMask":"name"}`, intID, old)},
		{"UpdateWorkbook", fmt.Sprintf(`{"workbook":{"id":%q,"name":"renamed","updateTime":%q},"updateMask":"name"}`, wb, old)},
		{"UpdateUser", fmt.Sprintf(`{"user":{"id":%q,"email":"other@example.com","updateTime":%q},"updateMask":"email"}`, me, old)},
	} {
		for _, tr := range transports(s) {
			r := tr.Call(t, c.rpc, s.AdminKey, c.req, "")
			if r.Code != codes.Aborted || r.Reason != "STALE_UPDATE_TIME" {
				t.Errorf("%s %s with a stale update_time: %v %s %q, want ABORTED STALE_UPDATE_TIME", tr.Name(), c.rpc, r.Code, r.Reason, r.Message)
			}
		}
	}
}
