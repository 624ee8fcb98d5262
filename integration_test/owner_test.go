package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/auditexport/auditexport/clients/go/manifest"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

const ownerNotAuthorized = "OWNER_NOT_AUTHORIZED"

// sendNowRefusal calls SendNow over gRPC or REST, follows it to its end and
// returns the code and ErrorInfo reason it was refused with (OK, "" if a run
// was streamed).
func sendNowRefusal(t *testing.T, s *Server, transport, key, scheduleID string) (codes.Code, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(Ctx(key), time.Minute)
	defer cancel()
	var st *testenv.RunStream
	if transport == "grpc" {
		st = testenv.SendNow(t, ctx, pb.NewScheduleServiceClient(s.Conn), scheduleID)
	} else {
		st = testenv.RESTStream(t, ctx, s.HTTPURL, http.MethodPost, "/v1/schedules/"+scheduleID+":sendNow", key, "{}")
	}
	msgs, err := st.Wait()
	if err == nil {
		if len(msgs) == 0 {
			t.Fatalf("SendNow over %s: empty answer (HTTP status %d)", transport, st.HTTPStatus)
		}
		return codes.OK, ""
	}
	stt := status.Convert(err)
	for _, d := range stt.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return stt.Code(), info.GetReason()
		}
	}
	return stt.Code(), ""
}

// ownerEnv is one server with an ADMIN, a LOCAL integration and helpers.
type ownerEnv struct {
	*permEnv
	dir string
}

// scheduleOf creates a schedule as key on a fresh saved workbook of key's
// user, writing file://<dir>/<schedule_id>/<run_id>.csv.
func (e ownerEnv) scheduleOf(t *testing.T, key, cron string) string {
	t.Helper()
	wb, el := e.newWorkbook(t, key, true)
	b := e.must(t, key, "CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"elementId":%q,"format":"FORMAT_CSV",
		"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":%q}},"cron":%q,"timeZone":"UTC"}}`,
		wb, el, e.intName, e.dest+"{schedule_id}/{run_id}.csv", cron))
	return getString(b, "schedule", "id")
}

// creator makes a CREATOR granted the Audit Logs connection, with a key.
func (e ownerEnv) creator(t *testing.T) (id, key string) {
	id = e.newUser(t, "CREATOR")
	e.must(t, e.keys["ADMIN"], "GrantConnectionAccess", e.grantReq(id))
	_, key = e.newKey(t, e.keys["ADMIN"], id)
	return id, key
}

// expectSchedule asserts state and pause reason over both transports.
func (e ownerEnv) expectSchedule(t *testing.T, id, state, reason string) {
	t.Helper()
	for _, tr := range transports(e.s) {
		r := tr.Call(t, "GetSchedule", e.keys["ADMIN"], fmt.Sprintf(`{"id":%q}`, id), "")
		if r.Code != codes.OK {
			t.Fatalf("GetSchedule over %s: %v %s", tr.Name(), r.Code, r.Message)
		}
		got, gotReason := getString(r.Body, "schedule", "state"), getString(r.Body, "schedule", "pauseReason")
		if gotReason == "PAUSE_REASON_UNSPECIFIED" { // the gateway emits unset enums
			gotReason = ""
		}
		if got != state || gotReason != reason {
			t.Errorf("schedule %s over %s: %s/%q, want %s/%q", id, tr.Name(), got, gotReason, state, reason)
		}
	}
}

// refused asserts that rpc is refused over both transports with code and
// ErrorInfo reason OWNER_NOT_AUTHORIZED.
func (e ownerEnv) refused(t *testing.T, key, rpc, req string, code codes.Code) {
	t.Helper()
	for _, tr := range transports(e.s) {
		r := tr.Call(t, rpc, key, req, "")
		if r.Code != code || r.Reason != ownerNotAuthorized {
			t.Errorf("%s over %s: %v (%s: %s), want %v (%s)", rpc, tr.Name(), r.Code, r.Reason, r.Message, code, ownerNotAuthorized)
		}
	}
}

// sendNowRefused asserts that Send now is refused over both transports.
func (e ownerEnv) sendNowRefused(t *testing.T, key, id string, code codes.Code) {
	t.Helper()
	for _, tr := range []string{"grpc", "rest"} {
		if got, reason := sendNowRefusal(t, e.s, tr, key, id); got != code || reason != ownerNotAuthorized {
			t.Errorf("SendNow over %s: %v (%s), want %v (%s)", tr, got, reason, code, ownerNotAuthorized)
		}
	}
}

// runsOf returns the states and error codes of a schedule's runs.
func (e ownerEnv) runsOf(t *testing.T, id string) (states, errs []string) {
	t.Helper()
	b := e.must(t, e.keys["ADMIN"], "ListExportRuns", fmt.Sprintf(`{"scheduleId":%q,"pageSize":1000}`, id))
	runs, _ := b["runs"].([]any)
	for _, r := range runs {
		m, _ := r.(map[string]any)
		st, _ := m["state"].(string)
		states = append(states, st)
		code := ""
		if er, ok := m["error"].(map[string]any); ok {
			code, _ = er["code"].(string)
		}
		errs = append(errs, code)
	}
	return states, errs
}

// files counts the objects written for a schedule.
func (e ownerEnv) files(t *testing.T, id string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.dir, id))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), manifest.Suffix) { // objects only
			n++
		}
	}
	return n
}

// TestOwnerAuthorization: a schedule runs with its owner's authority as it
// is at run time. An owner whose Audit Logs grant is revoked, who is
// deactivated or demoted to VIEWER has their schedules paused
// (OWNER_NOT_AUTHORIZED) in the same change; Send now, resuming and the
// owner's own edits are refused until the authorization is back, an ADMIN
// may still edit (the owner stays the owner) and delete. Behind that, a
// run whose owner lost the grant some other way (here: the grant row is
// deleted in the database) ends FAILED with OWNER_NOT_AUTHORIZED, writes
// nothing and pauses its schedule. SQLite and PostgreSQL, gRPC and REST.
func TestOwnerAuthorization(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend, "--dev-clock-scale", fmt.Sprint(clockScale),
				"--dev-clock-epoch", fmt.Sprint(time.Now().Unix()), "--scheduler-tick", "100ms")
			dir := s.LocalDir("", "owner")
			e := ownerEnv{permEnv: &permEnv{s: s, tr: grpcTransport{s}, keys: map[string]string{"ADMIN": s.AdminKey},
				uids: map[string]string{}, dest: "file://" + dir + "/"}, dir: dir}
			admin := s.AdminKey
			e.intID, e.intName = e.newIntegration(t, admin)
			const never = "0 0 1 1 *"
			const (
				active = "SCHEDULE_STATE_ACTIVE"
				paused = "SCHEDULE_STATE_PAUSED"
				reason = "PAUSE_REASON_OWNER_NOT_AUTHORIZED"
				PD, FP = codes.PermissionDenied, codes.FailedPrecondition
			)
			byID := func(id string) string { return fmt.Sprintf(`{"id":%q}`, id) }
			rename := func(id, name string) string {
				return fmt.Sprintf(`{"schedule":{"id":%q,"name":%q},"updateMask":"name"}`, id, name)
			}

			t.Run("revoked grant", func(t *testing.T) {
				uid, key := e.creator(t)
				id := e.scheduleOf(t, key, never)
				other := e.scheduleOf(t, key, never)
				e.must(t, key, "PauseSchedule", byID(other)) // paused by the user: keeps its reason
				e.must(t, admin, "RevokeConnectionAccess", e.grantReq(uid))
				e.expectSchedule(t, id, paused, reason)
				e.expectSchedule(t, other, paused, "PAUSE_REASON_USER")
				e.sendNowRefused(t, key, id, PD)
				e.sendNowRefused(t, admin, id, FP)
				e.refused(t, key, "UpdateSchedule", rename(id, "mine"), PD)
				e.refused(t, key, "ResumeSchedule", byID(id), PD)
				e.refused(t, admin, "ResumeSchedule", byID(id), FP)
				e.refused(t, key, "ResumeSchedule", byID(other), PD)
				// An ADMIN may edit it; the owner stays the owner and it stays paused.
				for _, tr := range transports(s) {
					r := tr.Call(t, "UpdateSchedule", admin, rename(id, "by admin "+tr.Name()), "")
					if r.Code != codes.OK || getString(r.Body, "schedule", "owner") != uid || getString(r.Body, "schedule", "state") != paused {
						t.Errorf("ADMIN UpdateSchedule over %s: %v %s %v", tr.Name(), r.Code, r.Message, r.Body)
					}
				}
				if states, _ := e.runsOf(t, id); len(states) != 0 || e.files(t, id) != 0 {
					t.Errorf("runs %v, %d files after refused Send now", states, e.files(t, id))
				}
				// Restoring the grant lets the owner resume (over REST) and edit.
				e.must(t, admin, "GrantConnectionAccess", e.grantReq(uid))
				if r := (restTransport{s}).Call(t, "ResumeSchedule", key, byID(id), ""); r.Code != codes.OK {
					t.Fatalf("resume after the grant is back: %v %s", r.Code, r.Message)
				}
				e.expectSchedule(t, id, active, "")
				e.must(t, key, "UpdateSchedule", rename(id, "mine again"))
			})

			t.Run("deactivated", func(t *testing.T) {
				uid, key := e.creator(t)
				id := e.scheduleOf(t, key, never)
				gone := e.scheduleOf(t, key, never)
				if r := (restTransport{s}).Call(t, "UpdateUser", admin, fmt.Sprintf(`{"user":{"id":%q,"active":false},"updateMask":"active"}`, uid), ""); r.Code != codes.OK {
					t.Fatalf("deactivate over REST: %v %s", r.Code, r.Message)
				}
				e.expectSchedule(t, id, paused, reason)
				e.expectSchedule(t, gone, paused, reason)
				if r := e.tr.Call(t, "GetCurrentUser", key, "", ""); r.Code != codes.Unauthenticated {
					t.Errorf("a deactivated user's key: %v", r.Code)
				}
				e.sendNowRefused(t, admin, id, FP)
				e.refused(t, admin, "ResumeSchedule", byID(id), FP)
				e.must(t, admin, "DeleteSchedule", byID(gone))
				e.must(t, admin, "UpdateUser", fmt.Sprintf(`{"user":{"id":%q,"active":true},"updateMask":"active"}`, uid))
				e.expectSchedule(t, id, paused, reason) // reactivating does not resume
				e.must(t, key, "ResumeSchedule", byID(id))
				e.expectSchedule(t, id, active, "")
			})

			t.Run("demoted", func(t *testing.T) {
				uid, key := e.creator(t)
				id := e.scheduleOf(t, key, never)
				e.must(t, admin, "UpdateUser", fmt.Sprintf(`{"user":{"id":%q,"accountType":"ACCOUNT_TYPE_VIEWER"},"updateMask":"accountType"}`, uid))
				e.expectSchedule(t, id, paused, reason)
				e.sendNowRefused(t, key, id, PD)
				e.refused(t, key, "ResumeSchedule", byID(id), PD)
				e.refused(t, key, "UpdateSchedule", rename(id, "viewer's"), PD)
				e.must(t, admin, "UpdateUser", fmt.Sprintf(`{"user":{"id":%q,"accountType":"ACCOUNT_TYPE_CREATOR"},"updateMask":"accountType"}`, uid))
				e.must(t, key, "ResumeSchedule", byID(id))
				e.expectSchedule(t, id, active, "")
			})

			// The safety net: the grant disappears without the API (as if
			// revoked by an older version or by hand), so nothing paused
			// the schedules; their runs refuse to start.
			t.Run("run time", func(t *testing.T) {
				uid, key := e.creator(t)
				minutely := e.scheduleOf(t, key, "* * * * *")
				manual := e.scheduleOf(t, key, never)
				db := s.OpenDB()
				defer db.Close()
				if _, err := db.Exec("DELETE FROM connection_grants WHERE user_id = "+s.Placeholder(1), uid); err != nil {
					t.Fatal(err)
				}
				// A scheduled run (every 2 s on the fast clock) fails and pauses its schedule.
				deadline := time.Now().Add(2 * time.Minute)
				for {
					g := e.must(t, admin, "GetSchedule", byID(minutely))
					if getString(g, "schedule", "state") == paused {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the schedule was not paused by its run: %v", g)
					}
					time.Sleep(100 * time.Millisecond)
				}
				e.expectSchedule(t, minutely, paused, reason)
				states, errs := e.runsOf(t, minutely)
				failed, succeeded := 0, 0
				for i := range states {
					switch {
					case states[i] == "RUN_STATE_FAILED" && errs[i] == ownerNotAuthorized:
						failed++
					case states[i] == "RUN_STATE_SUCCEEDED": // fired before the grant went
						succeeded++
					case states[i] == "RUN_STATE_QUEUED" || states[i] == "RUN_STATE_RUNNING":
					default:
						t.Errorf("run %d: %s (%s)", i, states[i], errs[i])
					}
				}
				if failed == 0 {
					t.Errorf("no run FAILED with %s: %v %v", ownerNotAuthorized, states, errs)
				}
				if n := e.files(t, minutely); n != succeeded {
					t.Errorf("%d objects written by %d succeeded runs", n, succeeded)
				}
				var trigger, code string
				if err := db.QueryRow("SELECT trigger, error_code FROM export_runs WHERE schedule_id = "+s.Placeholder(1)+
					" AND state = 'FAILED' ORDER BY id LIMIT 1", minutely).Scan(&trigger, &code); err != nil || trigger != "SCHEDULED" {
					t.Errorf("first failed run: trigger %q code %q (%v)", trigger, code, err)
				}
				// Send now notices it up front and pauses the schedule too.
				e.expectSchedule(t, manual, active, "")
				e.sendNowRefused(t, key, manual, PD)
				e.expectSchedule(t, manual, paused, reason)
				if states, _ := e.runsOf(t, manual); len(states) != 0 || e.files(t, manual) != 0 {
					t.Errorf("Send now of an unauthorized owner left runs %v / %d files", states, e.files(t, manual))
				}
			})
		})
	}
}
