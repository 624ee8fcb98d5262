package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// badEnumTable has an out-of-range number (JSON and protobuf both carry any
// int32 for an enum) in every enum field of every request, including the
// output-only ones a client may send back. Each used to reach a converter
// that panicked (INTERNAL/500) or was silently ignored.
func badEnumTable(fx fixtures) []badCase {
	const ia = codes.InvalidArgument
	const si = "storage_integration."
	upSch := func(mask string, kv ...any) string {
		return js(M{"schedule": obj(M{"id": fx.schID}, kv...), "updateMask": mask})
	}
	var cases []badCase
	for _, n := range []int{99, -1} {
		sfx := fmt.Sprintf(" %d", n)
		cases = append(cases,
			badCase{"create user account_type" + sfx, "CreateUser", "", js(M{"user": M{"email": "enum@example.com", "accountType": n}}), ia, "user.account_type"},
			badCase{"update user account_type" + sfx, "UpdateUser", "", js(M{"user": M{"id": fx.crID, "accountType": n}, "updateMask": "accountType"}), ia, "user.account_type"},
			badCase{"create integration provider" + sfx, "CreateStorageIntegration", "", fx.createIntegration("provider", n), ia, si + "provider"},
			badCase{"update integration provider" + sfx, "UpdateStorageIntegration", "", js(M{"storageIntegration": M{"id": fx.s3ID, "region": "eu-west-1", "provider": n}, "updateMask": "region"}), ia, si + "provider"},
			badCase{"create schedule format" + sfx, "CreateSchedule", "", fx.createSchedule("format", n), ia, "schedule.format"},
			badCase{"create schedule compression" + sfx, "CreateSchedule", "", fx.createSchedule("compression", n), ia, "schedule.compression"},
			badCase{"create schedule send_condition" + sfx, "CreateSchedule", "", fx.createSchedule("sendCondition", n), ia, "schedule.send_condition"},
			badCase{"create schedule mode" + sfx, "CreateSchedule", "", fx.createSchedule("mode", n), ia, "schedule.mode"},
			badCase{"create schedule catch_up" + sfx, "CreateSchedule", "", fx.createSchedule("catchUp", n), ia, "schedule.catch_up"},
			badCase{"create schedule state" + sfx, "CreateSchedule", "", fx.createSchedule("state", n), ia, "schedule.state"},
			badCase{"create schedule pause_reason" + sfx, "CreateSchedule", "", fx.createSchedule("pauseReason", n), ia, "schedule.pause_reason"},
			badCase{"create schedule last_run.state" + sfx, "CreateSchedule", "", fx.createSchedule("lastRun", M{"state": n}), ia, "schedule.last_run.state"},
			badCase{"update schedule format" + sfx, "UpdateSchedule", "", upSch("format", "format", n), ia, "schedule.format"},
			badCase{"update schedule compression" + sfx, "UpdateSchedule", "", upSch("compression", "compression", n), ia, "schedule.compression"},
			badCase{"update schedule send_condition" + sfx, "UpdateSchedule", "", upSch("sendCondition", "sendCondition", n), ia, "schedule.send_condition"},
			badCase{"update schedule mode" + sfx, "UpdateSchedule", "", upSch("mode", "mode", n), ia, "schedule.mode"},
			badCase{"update schedule catch_up" + sfx, "UpdateSchedule", "", upSch("catchUp", "catchUp", n), ia, "schedule.catch_up"},
			badCase{"update schedule state (output only)" + sfx, "UpdateSchedule", "", upSch("name", "name", "n", "state", n), ia, "schedule.state"},
			badCase{"update schedule pause_reason (output only)" + sfx, "UpdateSchedule", "", upSch("name", "name", "n", "pauseReason", n), ia, "schedule.pause_reason"},
			badCase{"list schedules state" + sfx, "ListSchedules", "", js(M{"state": n}), ia, "state"},
			badCase{"filter operator" + sfx, "UpdateWorkbook", "", fx.updateWorkbookElement("filters", []any{
				M{"column": "EVENT_TYPE", "operator": "FILTER_OPERATOR_EQUALS", "values": []string{"x"}},
				M{"column": "EVENT_TYPE", "operator": n, "values": []string{"x"}}}), ia, "workbook.elements[0].filters[1].operator"},
		)
	}
	return cases
}

// TestOutOfRangeEnums sends every enum field of every request with a number
// its enum does not declare, over gRPC and REST on each backend: each is
// INVALID_ARGUMENT naming the field, and no table changes.
func TestOutOfRangeEnums(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend)
			fx := setupBadRequestFixtures(t, s)
			db := s.OpenDB()
			table := badEnumTable(fx)
			for _, tr := range transports(s) {
				t.Run(tr.Name(), func(t *testing.T) {
					for _, c := range table {
						t.Run(c.name, func(t *testing.T) {
							before := snapshot(t, db)
							res := tr.Call(t, c.rpc, s.AdminKey, c.req, "")
							checkRefusal(t, res, c.code, c.field)
							compareSnapshots(t, before, snapshot(t, db))
						})
					}
				})
			}
		})
	}
}

// filterValues builds n filters on EVENT_TYPE with per values each.
func filterValues(n, per int) []any {
	out := make([]any, n)
	for i := range out {
		vals := make([]string, per)
		for j := range vals {
			vals[j] = fmt.Sprintf("T%d_%d", i, j)
		}
		vals[per-1] = "CREATE_STORAGE_INTEGRATION"
		out[i] = M{"column": "EVENT_TYPE", "operator": "FILTER_OPERATOR_IN", "values": vals}
	}
	return out
}

// TestFilterValuesFitTheDatabase: an element whose filters hold more values
// in all than one query may bind (33 IN filters of 1000 values: 33,000 bind
// variables, SQLite takes 32,766) is refused when saved, naming the filter
// that crosses the limit; the largest element accepted (10,000 values) is
// queryable on every backend, over gRPC and REST.
func TestFilterValuesFitTheDatabase(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend)
			fx := setupBadRequestFixtures(t, s)
			db := s.OpenDB()
			for _, tr := range transports(s) {
				t.Run(tr.Name(), func(t *testing.T) {
					before := snapshot(t, db)
					res := tr.Call(t, "UpdateWorkbook", s.AdminKey, fx.updateWorkbookElement("filters", filterValues(33, 1000)), "")
					checkRefusal(t, res, codes.InvalidArgument, "workbook.elements[0].filters[10].values")
					if !strings.Contains(res.Message, "10000") {
						t.Errorf("message %q does not give the limit", res.Message)
					}
					compareSnapshots(t, before, snapshot(t, db))

					res = tr.Call(t, "UpdateWorkbook", s.AdminKey, fx.updateWorkbookElement("filters", filterValues(10, 1000)), "")
					checkRefusal(t, res, codes.OK, "")
					res = tr.Call(t, "QueryElement", s.AdminKey, js(M{"workbookId": fx.wb1, "elementId": fx.el1, "pageSize": 5}), "")
					checkRefusal(t, res, codes.OK, "")
					if rows, _ := getPath(res.Body, "rows").([]any); len(rows) == 0 {
						t.Errorf("QueryElement at the limit returned no rows: %v", res.Body)
					}
				})
			}
			// An element stored before the limit existed is refused as
			// invalid when queried, not answered INTERNAL.
			spec, err := json.Marshal(M{"filters": filterValues(33, 1000)})
			if err != nil {
				t.Fatal(err)
			}
			spec = bytes.ReplaceAll(spec, []byte(`"operator":"FILTER_OPERATOR_IN"`), []byte(`"op":"IN"`))
			if _, err := db.Exec("UPDATE elements SET spec = "+s.Placeholder(1)+" WHERE id = "+s.Placeholder(2), string(spec), fx.el1); err != nil {
				t.Fatal(err)
			}
			for _, tr := range transports(s) {
				res := tr.Call(t, "QueryElement", s.AdminKey, js(M{"workbookId": fx.wb1, "elementId": fx.el1}), "")
				if res.Code != codes.FailedPrecondition || res.Reason != "ELEMENT_INVALID" {
					t.Errorf("%s: QueryElement of a stored over-limit element: %v %s %q, want FAILED_PRECONDITION ELEMENT_INVALID", tr.Name(), res.Code, res.Reason, res.Message)
				}
			}
		})
	}
}
