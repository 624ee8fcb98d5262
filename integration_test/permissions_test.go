package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// principals of the permission matrix, in the order of permRow.want. The
// last three carry no usable key and are always UNAUTHENTICATED
// (deactivated: a CREATOR who owns a schedule, then was deactivated).
// NOGRANT is a CREATOR without access to the Audit Logs connection;
// otherOrg is the ADMIN of a second organization calling with the main
// organization's ids.
var principals = []string{"ADMIN", "CREATOR", "VIEWER", "NOGRANT", "otherOrg", "none", "revoked", "deactivated"}

type (
	reqFn   func(t *testing.T, p string) string
	checkFn func(t *testing.T, p string, body map[string]any)
)

// permRow is one RPC (or one variant of it, e.g. on an object another user
// owns) across all principals.
type permRow struct {
	rpc, variant string
	want         [5]codes.Code // ADMIN, CREATOR, VIEWER, NOGRANT, otherOrg
	req          reqFn         // builds the request, creating throw-away objects when needed
	check        checkFn       // optional: inspects a successful answer
	after        func(t *testing.T, succeeded bool)
}

// permEnv holds the fixtures of one server.
type permEnv struct {
	s     *Server
	tr    Transport // fixtures go over gRPC
	n     int
	dest  string            // LOCAL integration destination (the main organization's directory)
	oDest string            // the other organization's
	keys  map[string]string // principal -> API key ("" for none)
	uids  map[string]string // principal -> user id
	// main organization: objects owned by the ADMIN and by the CREATOR
	mainOrgID, intID, intName, wbID, elID, explID, schID string
	crWbID, crElID, crSchID                              string
	runID, crRunID                                       string // finished runs of schSchID / crSchID
	targetID                                             string // a CREATOR whose only key is revoked
	// schedules whose owner lost their authorization: NOGRANT's (made while
	// granted, then revoked) and the deactivated CREATOR's
	ngSchID, deSchID, deUserID string
	// the other organization's own objects
	otherOrgID, oIntID, oIntName, oWbID, oElID, oSchID, oKeyID string
}

func (e *permEnv) uniq(prefix string) string {
	e.n++
	return fmt.Sprintf("%s%d%s", prefix, e.n, randHex(2))
}

// must calls rpc over gRPC and fails the test unless it succeeds.
func (e *permEnv) must(t *testing.T, key, rpc, req string) map[string]any {
	t.Helper()
	res := e.tr.Call(t, rpc, key, req, "")
	if res.Code != codes.OK {
		t.Fatalf("fixture %s %s: %v (%s)", rpc, req, res.Code, res.Message)
	}
	return res.Body
}

func (e *permEnv) newIntegration(t *testing.T, key string) (id, name string) {
	name = e.uniq("perm")
	b := e.must(t, key, "CreateStorageIntegration", fmt.Sprintf(
		`{"storageIntegration":{"name":%q,"provider":"PROVIDER_LOCAL","destination":%q}}`, name, e.destOf(key)))
	return getString(b, "storageIntegration", "id"), name
}

// destOf is the LOCAL destination in the organization of key: each
// organization's lie under its own directory.
func (e *permEnv) destOf(key string) string {
	if key == e.keys["otherOrg"] {
		return e.oDest
	}
	return e.dest
}

// newWorkbook explores AUDIT_LOGS and, if save, saves the exploration.
func (e *permEnv) newWorkbook(t *testing.T, key string, save bool) (wbID, elID string) {
	b := e.must(t, key, "ExploreTable", `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`)
	wbID = getString(b, "workbook", "id")
	if els, _ := getPath(b, "workbook", "elements").([]any); len(els) == 1 {
		elID, _ = els[0].(map[string]any)["id"].(string)
	}
	if wbID == "" || elID == "" {
		t.Fatalf("exploration without workbook/element id: %v", b)
	}
	if save {
		e.must(t, key, "SaveWorkbookAs", fmt.Sprintf(`{"id":%q,"name":%q,"folder":"perm"}`, wbID, e.uniq("wb ")))
	}
	return wbID, elID
}

func (e *permEnv) scheduleReq(wbID, elID, intName string) string {
	dest := e.dest
	if intName == e.oIntName {
		dest = e.oDest
	}
	return fmt.Sprintf(`{"workbookId":%q,"schedule":{"elementId":%q,"format":"FORMAT_CSV",
		"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":%q}},"cron":"0 0 1 1 *","timeZone":"UTC"}}`,
		wbID, elID, intName, dest+"out.csv")
}

func (e *permEnv) newSchedule(t *testing.T, key, wbID, elID, intName string) string {
	return getString(e.must(t, key, "CreateSchedule", e.scheduleReq(wbID, elID, intName)), "schedule", "id")
}

func (e *permEnv) newUser(t *testing.T, accountType string) string {
	b := e.must(t, e.keys["ADMIN"], "CreateUser", fmt.Sprintf(
		`{"user":{"email":%q,"accountType":"ACCOUNT_TYPE_%s"}}`, e.uniq("u")+"@example.com", accountType))
	return getString(b, "user", "id")
}

func (e *permEnv) newKey(t *testing.T, key, userID string) (id, secret string) {
	b := e.must(t, key, "CreateApiKey", fmt.Sprintf(`{"userId":%q,"name":%q}`, userID, e.uniq("k")))
	return getString(b, "apiKey", "id"), getString(b, "secret")
}

func (e *permEnv) grantReq(userID string) string {
	return fmt.Sprintf(`{"connectionId":"con_audit_logs","userId":%q}`, userID)
}

// ownedByRevokedGrant creates a schedule as NOGRANT while granted, then
// revokes the grant again (which pauses the schedule).
func (e *permEnv) ownedByRevokedGrant(t *testing.T) string {
	admin, u := e.keys["ADMIN"], e.uids["NOGRANT"]
	e.must(t, admin, "GrantConnectionAccess", e.grantReq(u))
	wb, el := e.newWorkbook(t, e.keys["NOGRANT"], true)
	id := e.newSchedule(t, e.keys["NOGRANT"], wb, el, e.intName)
	e.must(t, admin, "RevokeConnectionAccess", e.grantReq(u))
	return id
}

// ownedByDeactivated creates a schedule as the deactivated CREATOR (active
// for the moment), then deactivates them again.
func (e *permEnv) ownedByDeactivated(t *testing.T) string {
	active := func(on bool) {
		e.must(t, e.keys["ADMIN"], "UpdateUser", fmt.Sprintf(`{"user":{"id":%q,"active":%v},"updateMask":"active"}`, e.deUserID, on))
	}
	active(true)
	id := e.newSchedule(t, e.keys["deactivated"], e.crWbID, e.crElID, e.intName)
	active(false)
	return id
}

func setupPermissions(t *testing.T, s *Server) *permEnv {
	e := &permEnv{s: s, tr: grpcTransport{s}, keys: map[string]string{}, uids: map[string]string{},
		dest: "file://" + s.LocalDir("", "perm") + "/"}
	admin := s.AdminKey
	e.keys["ADMIN"] = admin
	me := e.must(t, admin, "GetCurrentUser", "")
	e.uids["ADMIN"], e.mainOrgID = getString(me, "user", "id"), getString(me, "user", "organizationId")
	for _, p := range []string{"CREATOR", "VIEWER", "NOGRANT"} {
		typ := p
		if p == "NOGRANT" {
			typ = "CREATOR"
		}
		id := e.newUser(t, typ)
		if p != "NOGRANT" {
			e.must(t, admin, "GrantConnectionAccess", e.grantReq(id))
		}
		_, e.keys[p] = e.newKey(t, admin, id)
		e.uids[p] = id
	}
	// A revoked key: it works, then its revocation locks it out.
	e.targetID = e.newUser(t, "CREATOR")
	kid, secret := e.newKey(t, admin, e.targetID)
	e.must(t, secret, "GetCurrentUser", "")
	e.must(t, admin, "RevokeApiKey", fmt.Sprintf(`{"id":%q}`, kid))
	e.keys["revoked"], e.uids["revoked"] = secret, e.targetID
	e.keys["none"], e.uids["none"] = "", e.uids["CREATOR"]

	e.intID, e.intName = e.newIntegration(t, admin)
	e.wbID, e.elID = e.newWorkbook(t, admin, true)
	e.explID, _ = e.newWorkbook(t, admin, false)
	e.schID = e.newSchedule(t, admin, e.wbID, e.elID, e.intName)
	e.crWbID, e.crElID = e.newWorkbook(t, e.keys["CREATOR"], true)
	e.crSchID = e.newSchedule(t, e.keys["CREATOR"], e.crWbID, e.crElID, e.intName)
	e.runID = sendNowToEnd(t, s, admin, e.schID)
	e.crRunID = sendNowToEnd(t, s, e.keys["CREATOR"], e.crSchID)
	e.ngSchID = e.ownedByRevokedGrant(t)
	e.deUserID = e.newUser(t, "CREATOR")
	e.must(t, admin, "GrantConnectionAccess", e.grantReq(e.deUserID))
	_, e.keys["deactivated"] = e.newKey(t, admin, e.deUserID)
	e.uids["deactivated"] = e.uids["CREATOR"] // for rows that act on the caller's own user: it must be active
	e.deSchID = e.ownedByDeactivated(t)

	okey := s.CreateOrg("other")
	e.keys["otherOrg"] = okey
	e.oDest = "file://" + s.LocalDir(okey, "perm") + "/"
	ome := e.must(t, okey, "GetCurrentUser", "")
	e.uids["otherOrg"], e.otherOrgID = getString(ome, "user", "id"), getString(ome, "user", "organizationId")
	if !strings.HasPrefix(e.otherOrgID, "org_") || e.otherOrgID == e.mainOrgID ||
		getString(ome, "user", "accountType") != "ACCOUNT_TYPE_ADMIN" {
		t.Fatalf("org create's key belongs to %v (main org %s)", ome, e.mainOrgID)
	}
	e.oIntID, e.oIntName = e.newIntegration(t, okey)
	e.oWbID, e.oElID = e.newWorkbook(t, okey, true)
	e.oSchID = e.newSchedule(t, okey, e.oWbID, e.oElID, e.oIntName)
	if ks, _ := e.must(t, okey, "ListApiKeys", "")["apiKeys"].([]any); len(ks) > 0 {
		e.oKeyID, _ = ks[0].(map[string]any)["id"].(string)
	}
	if e.oKeyID == "" {
		t.Fatal("the other org's admin has no listed API key")
	}
	return e
}

// items returns the id -> item of a list answer's field.
func items(body map[string]any, field string) map[string]map[string]any {
	out := map[string]map[string]any{}
	list, _ := body[field].([]any)
	for _, it := range list {
		m, _ := it.(map[string]any)
		id, _ := m["id"].(string)
		out[id] = m
	}
	return out
}

// listCheck: main-org callers see mainWant (and neither absent ids nor the
// other org's object); otherOrg sees its own object and nothing the main
// ADMIN sees.
func (e *permEnv) listCheck(rpc, field string, mainWant []string, otherOwn string, absent ...string) checkFn {
	return func(t *testing.T, p string, body map[string]any) {
		got := items(body, field)
		org, mustNot := e.mainOrgID, append([]string{}, absent...)
		if p == "otherOrg" {
			org = e.otherOrgID
			if got[otherOwn] == nil {
				t.Errorf("%s as otherOrg lacks the org's own %s: %v", rpc, otherOwn, body)
			}
			mainView := items(e.must(t, e.keys["ADMIN"], rpc, `{"pageSize":1000}`), field)
			for id := range got {
				if mainView[id] != nil {
					t.Errorf("%s as otherOrg returned main-org object %s", rpc, id)
				}
			}
			mustNot = append(mustNot, mainWant...)
		} else {
			for _, id := range mainWant {
				if got[id] == nil {
					t.Errorf("%s as %s lacks %s: %v", rpc, p, id, body)
				}
			}
			mustNot = append(mustNot, otherOwn)
		}
		for _, id := range mustNot {
			if got[id] != nil {
				t.Errorf("%s as %s returned %s, which it must not see", rpc, p, id)
			}
		}
		for id, it := range got {
			if o, has := it["organizationId"]; has && o != org {
				t.Errorf("%s as %s returned %s of organization %v", rpc, p, id, o)
			}
		}
	}
}

// exists asserts (via key) that an object is still there, or gone with code gone.
func (e *permEnv) exists(t *testing.T, key, rpc, req string, deleted bool, gone codes.Code) {
	t.Helper()
	want := codes.OK
	if deleted {
		want = gone
	}
	if res := e.tr.Call(t, rpc, key, req, ""); res.Code != want {
		t.Errorf("after the call, %s %s = %v (%s), want %v", rpc, req, res.Code, res.Message, want)
	}
}

func permRows(e *permEnv) []permRow {
	const (
		OK = codes.OK
		PD = codes.PermissionDenied
		NF = codes.NotFound
		FP = codes.FailedPrecondition
	)
	var (
		all         = [5]codes.Code{OK, OK, OK, OK, OK}
		anyMember   = [5]codes.Code{OK, OK, OK, OK, NF}
		adminOnly   = [5]codes.Code{OK, PD, PD, PD, NF}
		adminCreate = [5]codes.Code{OK, PD, PD, PD, OK} // creates in the caller's own org
		ownerAdmin  = [5]codes.Code{OK, OK, PD, PD, NF} // object owned by CREATOR
		explOwner   = [5]codes.Code{OK, NF, NF, NF, NF} // ADMIN's unsaved exploration
	)
	admin := e.keys["ADMIN"]
	fixed := func(format string, a ...any) reqFn {
		s := fmt.Sprintf(format, a...)
		return func(*testing.T, string) string { return s }
	}
	byID := func(id string) reqFn { return fixed(`{"id":%q}`, id) }
	list := fixed(`{"pageSize":1000}`)
	// last is the throw-away object of the current cell, for the after hooks.
	var last, lastSecret string
	after := func(rpc, tmpl string, gone codes.Code) func(*testing.T, bool) {
		return func(t *testing.T, ok bool) { e.exists(t, admin, rpc, fmt.Sprintf(tmpl, last), ok, gone) }
	}
	// forced is the schedule in the workbook last of a force-delete cell:
	// refused, both stay; allowed, both are gone.
	var forced string
	forceAfter := func(t *testing.T, ok bool) {
		e.exists(t, admin, "GetWorkbook", fmt.Sprintf(`{"id":%q}`, last), ok, NF)
		e.exists(t, admin, "GetSchedule", fmt.Sprintf(`{"id":%q}`, forced), ok, NF)
	}
	// stillUnauthorized: an ADMIN's edit leaves the owner and the pause.
	stillUnauthorized := func(id, owner string) checkFn {
		return func(t *testing.T, p string, b map[string]any) {
			sc := e.must(t, admin, "GetSchedule", fmt.Sprintf(`{"id":%q}`, id))
			if getString(sc, "schedule", "owner") != owner || getString(sc, "schedule", "state") != "SCHEDULE_STATE_PAUSED" ||
				getString(sc, "schedule", "pauseReason") != "PAUSE_REASON_OWNER_NOT_AUTHORIZED" {
				t.Errorf("after UpdateSchedule as %s: %v, want owner %s, PAUSED (OWNER_NOT_AUTHORIZED)", p, sc, owner)
			}
		}
	}
	freshKeyOf := func(owner func(p string) (key, userID string)) reqFn {
		return func(t *testing.T, p string) string {
			k, u := owner(p)
			last, lastSecret = e.newKey(t, k, u)
			return fmt.Sprintf(`{"id":%q}`, last)
		}
	}
	return []permRow{
		// IntegrationService
		{rpc: "CreateStorageIntegration", want: adminCreate, req: func(_ *testing.T, p string) string {
			return fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":"PROVIDER_LOCAL","destination":%q}}`, e.uniq("perm"), e.destOf(e.keys[p]))
		}},
		{rpc: "GetStorageIntegration", want: anyMember, req: byID(e.intID)},
		{rpc: "ListStorageIntegrations", want: all, req: list,
			check: e.listCheck("ListStorageIntegrations", "storageIntegrations", []string{e.intID}, e.oIntID)},
		{rpc: "UpdateStorageIntegration", want: adminOnly, req: func(t *testing.T, _ string) string {
			last, _ = e.newIntegration(t, admin)
			return fmt.Sprintf(`{"storageIntegration":{"id":%q,"region":"eu-west-1"},"updateMask":"region"}`, last)
		}},
		{rpc: "DeleteStorageIntegration", want: adminOnly, req: func(t *testing.T, _ string) string {
			last, _ = e.newIntegration(t, admin)
			return fmt.Sprintf(`{"id":%q}`, last)
		}, after: after("GetStorageIntegration", `{"id":%q}`, NF)},
		{rpc: "GetStorageIntegrationCredentials", want: adminOnly, req: byID(e.intID)},
		{rpc: "TestStorageIntegration", want: adminOnly, req: byID(e.intID), check: func(t *testing.T, p string, b map[string]any) {
			if ok, _ := b["ok"].(bool); !ok {
				t.Errorf("probe of a LOCAL integration failed: %v", b)
			}
		}},

		// WorkbookService
		{rpc: "ListConnections", want: all, req: fixed(`{}`), check: func(t *testing.T, p string, b map[string]any) {
			c := items(b, "connections")["con_audit_logs"]
			if access, _ := c["access"].(bool); c == nil || access != (p != "NOGRANT") {
				t.Errorf("ListConnections as %s: con_audit_logs = %v", p, c)
			}
		}},
		{rpc: "ExploreTable", want: [5]codes.Code{OK, OK, PD, PD, OK},
			req: fixed(`{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`)},
		{rpc: "SaveWorkbookAs", want: [5]codes.Code{OK, OK, PD, OK, NF}, req: fixed(`{"id":%q,"name":"copy"}`, e.wbID)},
		{rpc: "SaveWorkbookAs", variant: "exploration", want: explOwner, req: func(t *testing.T, _ string) string {
			last, _ = e.newWorkbook(t, admin, false)
			return fmt.Sprintf(`{"id":%q,"name":"saved exploration"}`, last)
		}},
		{rpc: "GetWorkbook", want: anyMember, req: byID(e.wbID)},
		{rpc: "GetWorkbook", variant: "exploration", want: explOwner, req: byID(e.explID)},
		{rpc: "ListWorkbooks", want: all, req: list,
			check: e.listCheck("ListWorkbooks", "workbooks", []string{e.wbID, e.crWbID}, e.oWbID, e.explID)},
		{rpc: "UpdateWorkbook", want: adminOnly, req: fixed(`{"workbook":{"id":%q,"folder":"moved"},"updateMask":"folder"}`, e.wbID)},
		{rpc: "UpdateWorkbook", variant: "creatorOwned", want: ownerAdmin,
			req: fixed(`{"workbook":{"id":%q,"folder":"moved"},"updateMask":"folder"}`, e.crWbID)},
		{rpc: "DeleteWorkbook", want: adminOnly, req: func(t *testing.T, _ string) string {
			last, _ = e.newWorkbook(t, admin, true)
			return fmt.Sprintf(`{"id":%q}`, last)
		}, after: after("GetWorkbook", `{"id":%q}`, NF)},
		{rpc: "DeleteWorkbook", variant: "creatorOwned", want: ownerAdmin, req: func(t *testing.T, _ string) string {
			last, _ = e.newWorkbook(t, e.keys["CREATOR"], true)
			return fmt.Sprintf(`{"id":%q}`, last)
		}, after: after("GetWorkbook", `{"id":%q}`, NF)},
		// force deletes the workbook's schedules only if the caller could delete each.
		{rpc: "DeleteWorkbook", variant: "forceOthersSchedules", want: adminOnly, req: func(t *testing.T, _ string) string {
			wb, el := e.newWorkbook(t, e.keys["CREATOR"], true)
			last, forced = wb, e.newSchedule(t, admin, wb, el, e.intName)
			return fmt.Sprintf(`{"id":%q,"force":true}`, wb)
		}, after: forceAfter},
		{rpc: "DeleteWorkbook", variant: "forceOwnSchedules", want: ownerAdmin, req: func(t *testing.T, _ string) string {
			wb, el := e.newWorkbook(t, e.keys["CREATOR"], true)
			last, forced = wb, e.newSchedule(t, e.keys["CREATOR"], wb, el, e.intName)
			return fmt.Sprintf(`{"id":%q,"force":true}`, wb)
		}, after: forceAfter},
		{rpc: "QueryElement", want: [5]codes.Code{OK, OK, OK, PD, NF},
			req: fixed(`{"workbookId":%q,"elementId":%q,"pageSize":1}`, e.wbID, e.elID)},

		// ScheduleService
		{rpc: "CreateSchedule", want: [5]codes.Code{OK, OK, PD, PD, NF}, req: fixed("%s", e.scheduleReq(e.wbID, e.elID, e.intName))},
		{rpc: "GetSchedule", want: anyMember, req: byID(e.schID)},
		{rpc: "ListSchedules", want: all, req: list,
			check: e.listCheck("ListSchedules", "schedules", []string{e.schID, e.crSchID}, e.oSchID)},
		{rpc: "UpdateSchedule", want: adminOnly, req: fixed(`{"schedule":{"id":%q,"name":"renamed"},"updateMask":"name"}`, e.schID)},
		{rpc: "UpdateSchedule", variant: "creatorOwned", want: ownerAdmin,
			req: fixed(`{"schedule":{"id":%q,"name":"renamed"},"updateMask":"name"}`, e.crSchID)},
		{rpc: "DeleteSchedule", want: adminOnly, req: func(t *testing.T, _ string) string {
			last = e.newSchedule(t, admin, e.wbID, e.elID, e.intName)
			return fmt.Sprintf(`{"id":%q}`, last)
		}, after: after("GetSchedule", `{"id":%q}`, NF)},
		{rpc: "DeleteSchedule", variant: "creatorOwned", want: ownerAdmin, req: func(t *testing.T, _ string) string {
			last = e.newSchedule(t, e.keys["CREATOR"], e.crWbID, e.crElID, e.intName)
			return fmt.Sprintf(`{"id":%q}`, last)
		}, after: after("GetSchedule", `{"id":%q}`, NF)},
		// Owners who lost their authorization: an ADMIN may still edit and
		// delete their schedules (the owner stays the owner), the owner may
		// delete but not edit, nobody may resume them.
		{rpc: "UpdateSchedule", variant: "revokedGrantOwner", want: adminOnly, check: stillUnauthorized(e.ngSchID, e.uids["NOGRANT"]),
			req: fixed(`{"schedule":{"id":%q,"name":"renamed"},"updateMask":"name"}`, e.ngSchID)},
		{rpc: "UpdateSchedule", variant: "deactivatedOwner", want: adminOnly, check: stillUnauthorized(e.deSchID, e.deUserID),
			req: fixed(`{"schedule":{"id":%q,"name":"renamed"},"updateMask":"name"}`, e.deSchID)},
		{rpc: "ResumeSchedule", variant: "revokedGrantOwner", want: [5]codes.Code{FP, PD, PD, PD, NF}, req: byID(e.ngSchID)},
		{rpc: "ResumeSchedule", variant: "deactivatedOwner", want: [5]codes.Code{FP, PD, PD, PD, NF}, req: byID(e.deSchID)},
		{rpc: "DeleteSchedule", variant: "revokedGrantOwner", want: [5]codes.Code{OK, PD, PD, OK, NF}, req: func(t *testing.T, _ string) string {
			last = e.ownedByRevokedGrant(t)
			return fmt.Sprintf(`{"id":%q}`, last)
		}, after: after("GetSchedule", `{"id":%q}`, NF)},
		{rpc: "DeleteSchedule", variant: "deactivatedOwner", want: adminOnly, req: func(t *testing.T, _ string) string {
			last = e.ownedByDeactivated(t)
			return fmt.Sprintf(`{"id":%q}`, last)
		}, after: after("GetSchedule", `{"id":%q}`, NF)},
		{rpc: "PauseSchedule", want: adminOnly, req: byID(e.schID)},
		{rpc: "PauseSchedule", variant: "creatorOwned", want: ownerAdmin, req: byID(e.crSchID)},
		{rpc: "ResumeSchedule", want: adminOnly, req: byID(e.schID)},
		{rpc: "ResumeSchedule", variant: "creatorOwned", want: ownerAdmin, req: byID(e.crSchID)},
		{rpc: "PreviewSchedule", want: all, req: fixed(`{"cron":"0 6 * * *","timeZone":"Europe/Berlin"}`), check: func(t *testing.T, p string, b map[string]any) {
			if runs, _ := b["runs"].([]any); len(runs) != 5 {
				t.Errorf("PreviewSchedule as %s: %d runs, want 5: %v", p, len(runs), b)
			}
		}},
		{rpc: "GetExportRun", want: anyMember, req: byID(e.runID)},
		{rpc: "ListExportRuns", want: anyMember, req: fixed(`{"scheduleId":%q}`, e.schID), check: func(t *testing.T, p string, b map[string]any) {
			if items(b, "runs")[e.runID] == nil {
				t.Errorf("ListExportRuns as %s lacks run %s: %v", p, e.runID, b)
			}
		}},
		// Finished runs: permission passes, then the state refuses (FAILED_PRECONDITION).
		{rpc: "CancelExportRun", want: [5]codes.Code{codes.FailedPrecondition, PD, PD, PD, NF}, req: byID(e.runID)},
		{rpc: "CancelExportRun", variant: "creatorOwned", want: [5]codes.Code{codes.FailedPrecondition, codes.FailedPrecondition, PD, PD, NF}, req: byID(e.crRunID)},

		// AccountService
		{rpc: "GetCurrentUser", want: all, req: fixed(`{}`), check: func(t *testing.T, p string, b map[string]any) {
			if got := getString(b, "user", "id"); got != e.uids[p] {
				t.Errorf("GetCurrentUser as %s = %s, want %s", p, got, e.uids[p])
			}
		}},
		{rpc: "CreateUser", want: adminCreate, req: func(*testing.T, string) string {
			return fmt.Sprintf(`{"user":{"email":%q,"accountType":"ACCOUNT_TYPE_VIEWER"}}`, e.uniq("new")+"@example.com")
		}},
		{rpc: "GetUser", variant: "other", want: adminOnly, req: byID(e.targetID)},
		{rpc: "GetUser", variant: "self", want: all, req: func(_ *testing.T, p string) string { return fmt.Sprintf(`{"id":%q}`, e.uids[p]) }},
		{rpc: "ListUsers", want: adminCreate, req: list,
			check: e.listCheck("ListUsers", "users", []string{e.uids["ADMIN"], e.uids["CREATOR"], e.targetID}, e.uids["otherOrg"])},
		{rpc: "UpdateUser", want: adminOnly, req: func(t *testing.T, _ string) string {
			return fmt.Sprintf(`{"user":{"id":%q,"email":%q},"updateMask":"email"}`, e.newUser(t, "VIEWER"), e.uniq("upd")+"@example.com")
		}},
		{rpc: "GrantConnectionAccess", want: adminOnly, req: func(t *testing.T, _ string) string {
			return e.grantReq(e.newUser(t, "VIEWER"))
		}},
		{rpc: "RevokeConnectionAccess", want: adminOnly, req: func(t *testing.T, _ string) string {
			u := e.newUser(t, "VIEWER")
			e.must(t, admin, "GrantConnectionAccess", e.grantReq(u))
			return e.grantReq(u)
		}},
		{rpc: "CreateApiKey", variant: "other", want: adminOnly, req: fixed(`{"userId":%q,"name":"for other"}`, e.targetID)},
		{rpc: "CreateApiKey", variant: "self", want: all, req: fixed(`{"name":"mine"}`), check: func(t *testing.T, p string, b map[string]any) {
			if getString(b, "apiKey", "userId") != e.uids[p] || getString(b, "secret") == "" {
				t.Errorf("CreateApiKey as %s answered %v", p, b)
			}
		}},
		{rpc: "ListApiKeys", variant: "other", want: adminOnly, req: fixed(`{"userId":%q}`, e.targetID)},
		{rpc: "ListApiKeys", variant: "self", want: all, req: fixed(`{}`), check: func(t *testing.T, p string, b map[string]any) {
			ks := items(b, "apiKeys")
			for id, k := range ks {
				if k["userId"] != e.uids[p] {
					t.Errorf("ListApiKeys as %s returned %s of user %v", p, id, k["userId"])
				}
			}
			if len(ks) == 0 {
				t.Errorf("ListApiKeys as %s is empty", p)
			}
		}},
		{rpc: "ListSigningKeys", want: all, req: fixed(`{}`), check: func(t *testing.T, p string, b map[string]any) {
			ks, _ := b["signingKeys"].([]any)
			if len(ks) == 0 {
				t.Errorf("ListSigningKeys as %s: no key", p)
			}
			for _, k := range ks {
				for f := range k.(map[string]any) {
					if strings.Contains(strings.ToLower(f), "private") || strings.Contains(strings.ToLower(f), "ciphertext") {
						t.Errorf("ListSigningKeys as %s returns %s", p, f)
					}
				}
			}
		}},
		{rpc: "RotateSigningKey", want: adminCreate, req: fixed(`{}`)},
		{rpc: "RevokeApiKey", variant: "other", want: adminOnly,
			req: freshKeyOf(func(string) (string, string) { return admin, e.targetID }),
			after: func(t *testing.T, ok bool) {
				e.exists(t, lastSecret, "GetCurrentUser", "", ok, codes.Unauthenticated)
			}},
		{rpc: "RevokeApiKey", variant: "own", want: all, req: freshKeyOf(func(p string) (string, string) {
			if p == "otherOrg" {
				return e.keys["otherOrg"], e.uids[p]
			}
			return admin, e.uids[p]
		}), after: func(t *testing.T, ok bool) {
			e.exists(t, lastSecret, "GetCurrentUser", "", ok, codes.Unauthenticated)
		}},
	}
}

// crossOrgChecks: the main org's ADMIN addressing the other org's objects.
func crossOrgChecks(t *testing.T, e *permEnv, tr Transport) {
	const NF = codes.NotFound
	id := func(id string) string { return fmt.Sprintf(`{"id":%q}`, id) }
	cases := []struct {
		rpc, req  string
		want      codes.Code
		emptyList string // for OK list calls: this field must be empty
	}{
		{"GetStorageIntegration", id(e.oIntID), NF, ""},
		{"UpdateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"id":%q,"region":"eu-west-1"},"updateMask":"region"}`, e.oIntID), NF, ""},
		{"DeleteStorageIntegration", fmt.Sprintf(`{"id":%q,"deleteLinkedSchedules":true}`, e.oIntID), NF, ""},
		{"GetStorageIntegrationCredentials", id(e.oIntID), NF, ""},
		{"SaveWorkbookAs", fmt.Sprintf(`{"id":%q,"name":"stolen"}`, e.oWbID), NF, ""},
		{"GetWorkbook", id(e.oWbID), NF, ""},
		{"UpdateWorkbook", fmt.Sprintf(`{"workbook":{"id":%q,"folder":"stolen"},"updateMask":"folder"}`, e.oWbID), NF, ""},
		{"DeleteWorkbook", fmt.Sprintf(`{"id":%q,"force":true}`, e.oWbID), NF, ""},
		{"QueryElement", fmt.Sprintf(`{"workbookId":%q,"elementId":%q}`, e.oWbID, e.oElID), NF, ""},
		{"QueryElement", fmt.Sprintf(`{"workbookId":%q,"elementId":%q}`, e.wbID, e.oElID), NF, ""},
		{"CreateSchedule", e.scheduleReq(e.oWbID, e.oElID, e.intName), NF, ""},
		// The other org's integration name does not exist here.
		{"CreateSchedule", e.scheduleReq(e.wbID, e.elID, e.oIntName), codes.InvalidArgument, ""},
		{"GetSchedule", id(e.oSchID), NF, ""},
		{"UpdateSchedule", fmt.Sprintf(`{"schedule":{"id":%q,"name":"stolen"},"updateMask":"name"}`, e.oSchID), NF, ""},
		{"DeleteSchedule", id(e.oSchID), NF, ""},
		{"PauseSchedule", id(e.oSchID), NF, ""},
		{"ResumeSchedule", id(e.oSchID), NF, ""},
		{"ListSchedules", fmt.Sprintf(`{"storageIntegrationId":%q}`, e.oIntID), codes.OK, "schedules"},
		{"ListSchedules", fmt.Sprintf(`{"workbookId":%q}`, e.oWbID), codes.OK, "schedules"},
		{"GetUser", id(e.uids["otherOrg"]), NF, ""},
		{"UpdateUser", fmt.Sprintf(`{"user":{"id":%q,"email":"hijacked@example.com"},"updateMask":"email"}`, e.uids["otherOrg"]), NF, ""},
		{"GrantConnectionAccess", e.grantReq(e.uids["otherOrg"]), NF, ""},
		{"RevokeConnectionAccess", e.grantReq(e.uids["otherOrg"]), NF, ""},
		{"CreateApiKey", fmt.Sprintf(`{"userId":%q,"name":"stolen"}`, e.uids["otherOrg"]), NF, ""},
		{"ListApiKeys", fmt.Sprintf(`{"userId":%q}`, e.uids["otherOrg"]), NF, ""},
		{"RevokeApiKey", id(e.oKeyID), NF, ""},
	}
	for _, c := range cases {
		res := tr.Call(t, c.rpc, e.keys["ADMIN"], c.req, "")
		if res.Code != c.want {
			t.Errorf("ADMIN %s on the other org's ids over %s: got %v (%s), want %v; request %s", c.rpc, tr.Name(), res.Code, res.Message, c.want, c.req)
			continue
		}
		if c.emptyList != "" && len(items(res.Body, c.emptyList)) > 0 {
			t.Errorf("ADMIN %s %s over %s lists the other org's objects: %v", c.rpc, c.req, tr.Name(), res.Body)
		}
	}
	// Nothing of the other org changed, and its key still works.
	okey := e.keys["otherOrg"]
	me := e.must(t, okey, "GetCurrentUser", "")
	if g, _ := getPath(me, "user", "connectionGrants").([]any); getString(me, "user", "email") != "admin@example.com" || len(g) != 0 {
		t.Errorf("the other org's admin changed: %v", me)
	}
	if getString(e.must(t, okey, "GetStorageIntegration", id(e.oIntID)), "storageIntegration", "region") != "" {
		t.Errorf("the other org's integration was updated")
	}
	e.must(t, okey, "GetWorkbook", id(e.oWbID))
	sc := e.must(t, okey, "GetSchedule", id(e.oSchID))
	if getString(sc, "schedule", "state") != "SCHEDULE_STATE_ACTIVE" || getString(sc, "schedule", "name") == "stolen" {
		t.Errorf("the other org's schedule changed: %v", sc)
	}
}

// TestPermissionMatrix calls every RPC as every principal over both
// transports and checks the status code against the permission rules.
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			// The matrix makes ~200 failed authentications ("none",
			// "revoked") from 127.0.0.1 within a minute on purpose: without
			// this the per-IP limit would throttle every principal's calls.
			s := StartServer(t, backend, "--auth-failures-per-minute", "0")
			e := setupPermissions(t, s)
			rows := permRows(e)
			covered := map[string]bool{}
			for _, r := range rows {
				if _, ok := rpcs[r.rpc]; !ok {
					t.Errorf("matrix row for unknown RPC %s", r.rpc)
				}
				covered[r.rpc] = true
			}
			for rpc, def := range rpcs {
				// The streaming RPCs are TestStreamingPermissions'.
				if !covered[rpc] && !def.streaming {
					t.Errorf("permission matrix misses RPC %s", rpc)
				}
			}
			for _, r := range rows {
				name := r.rpc
				if r.variant != "" {
					name += "_" + r.variant
				}
				t.Run(name, func(t *testing.T) {
					for i, p := range principals {
						want := codes.Unauthenticated
						if i < len(r.want) {
							want = r.want[i]
						}
						t.Run(p, func(t *testing.T) {
							for _, tr := range transports(s) {
								t.Run(tr.Name(), func(t *testing.T) {
									req := r.req(t, p)
									res := tr.Call(t, r.rpc, e.keys[p], req, "")
									if res.Code != want {
										t.Errorf("%s as %s over %s: got %v (%s), want %v; request %s",
											r.rpc, p, tr.Name(), res.Code, res.Message, want, req)
									} else if want == codes.OK && r.check != nil {
										r.check(t, p, res.Body)
									}
									if res.Code != codes.OK && res.Domain != "auditexport" {
										t.Errorf("%s as %s over %s: error without ErrorInfo{domain: auditexport}: %+v", r.rpc, p, tr.Name(), res)
									}
									if r.after != nil {
										r.after(t, res.Code == codes.OK)
									}
								})
							}
						})
					}
				})
			}
			for _, tr := range transports(s) {
				t.Run("crossOrg/"+tr.Name(), func(t *testing.T) { crossOrgChecks(t, e, tr) })
			}
		})
	}
}

// sendNowToEnd runs a schedule with SendNow and returns the run id once it
// has finished.
func sendNowToEnd(t *testing.T, s *Server, key, scheduleID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(Ctx(key), time.Minute)
	defer cancel()
	runID := testenv.SendNow(t, ctx, pb.NewScheduleServiceClient(s.Conn), scheduleID).End().GetRunId()
	if runID == "" {
		t.Fatal("SendNow streamed no run id")
	}
	return runID
}

// TestStreamingPermissions: SendNow follows the schedule's owner-or-ADMIN
// rule and WatchExportRun the any-member rule, over gRPC streams.
func TestStreamingPermissions(t *testing.T) {
	t.Parallel()
	raceTest(t)
	s := StartServer(t, "sqlite")
	e := setupPermissions(t, s)
	sendNow := func(key, id string) codes.Code {
		ctx, cancel := context.WithTimeout(Ctx(key), time.Minute)
		defer cancel()
		_, err := testenv.SendNow(t, ctx, pb.NewScheduleServiceClient(s.Conn), id).Wait()
		return status.Code(err)
	}
	watch := func(key, id string) codes.Code {
		ctx, cancel := context.WithTimeout(Ctx(key), time.Minute)
		defer cancel()
		_, err := testenv.Watch(t, ctx, pb.NewScheduleServiceClient(s.Conn), id).Wait()
		return status.Code(err)
	}
	OK, PD, NF, UA, FP := codes.OK, codes.PermissionDenied, codes.NotFound, codes.Unauthenticated, codes.FailedPrecondition
	for _, c := range []struct {
		p         string
		adminSch  codes.Code
		crSch     codes.Code
		watchCode codes.Code
		// schedules of owners who lost their authorization: nobody runs them
		ngSch, deSch codes.Code
	}{
		{"ADMIN", OK, OK, OK, FP, FP}, {"CREATOR", PD, OK, OK, PD, PD}, {"VIEWER", PD, PD, OK, PD, PD}, {"NOGRANT", PD, PD, OK, PD, PD},
		{"otherOrg", NF, NF, NF, NF, NF}, {"none", UA, UA, UA, UA, UA}, {"revoked", UA, UA, UA, UA, UA}, {"deactivated", UA, UA, UA, UA, UA},
	} {
		if got := sendNow(e.keys[c.p], e.ngSchID); got != c.ngSch {
			t.Errorf("SendNow(schedule of NOGRANT, grant revoked) as %s = %v, want %v", c.p, got, c.ngSch)
		}
		if got := sendNow(e.keys[c.p], e.deSchID); got != c.deSch {
			t.Errorf("SendNow(schedule of a deactivated owner) as %s = %v, want %v", c.p, got, c.deSch)
		}
		if got := sendNow(e.keys[c.p], e.schID); got != c.adminSch {
			t.Errorf("SendNow(admin's schedule) as %s = %v, want %v", c.p, got, c.adminSch)
		}
		if got := sendNow(e.keys[c.p], e.crSchID); got != c.crSch {
			t.Errorf("SendNow(creator's schedule) as %s = %v, want %v", c.p, got, c.crSch)
		}
		if got := watch(e.keys[c.p], e.runID); got != c.watchCode {
			t.Errorf("WatchExportRun as %s = %v, want %v", c.p, got, c.watchCode)
		}
	}
}

// auditIP returns the ip_address of the AUDIT_LOGS row of a request id.
func auditIP(t *testing.T, s *Server, requestID string) string {
	t.Helper()
	var ip string
	if err := s.OpenDB().QueryRow("SELECT ip_address FROM audit_logs WHERE request_id = "+s.Placeholder(1), requestID).Scan(&ip); err != nil {
		t.Fatalf("audit row of %s: %v", requestID, err)
	}
	return ip
}

// TestClientIPTrustedProxies: the client IP in AUDIT_LOGS is the socket
// peer unless that peer is a proxy listed in --trusted-proxies; a forged
// X-Forwarded-For (or a header imitating the gateway's own) from anyone
// else is ignored, over gRPC and REST.
func TestClientIPTrustedProxies(t *testing.T) {
	t.Parallel()
	call := func(t *testing.T, s *Server, tr, rid, xff string) {
		t.Helper()
		if tr == "grpc" {
			ctx := metadata.AppendToOutgoingContext(Ctx(s.AdminKey), "x-request-id", rid, "x-forwarded-for", xff)
			if _, err := pb.NewAccountServiceClient(s.Conn).GetCurrentUser(ctx, &pb.GetCurrentUserRequest{}); err != nil {
				t.Fatalf("GetCurrentUser: %v", err)
			}
			return
		}
		code, body, _ := s.REST(http.MethodGet, "/v1/users/me", s.AdminKey, nil, "X-Request-Id", rid, "X-Forwarded-For", xff,
			"X-Auditexport-Client-Ip", "192.0.2.66", "Grpc-Metadata-X-Auditexport-Client-Ip", "192.0.2.67",
			"Grpc-Metadata-X-Forwarded-For", "192.0.2.68")
		if code != http.StatusOK {
			t.Fatalf("GET /v1/users/me: %d %v", code, body)
		}
	}
	const forged = "203.0.113.7, 198.51.100.7"
	cases := []struct {
		name  string
		flags []string
		want  string
	}{
		{"untrusted peer", nil, "127.0.0.1"},
		{"other proxy trusted", []string{"--trusted-proxies", "10.0.0.0/8"}, "127.0.0.1"},
		// The nearest hop is 198.51.100.7 (203.0.113.7 is what it was told).
		{"peer trusted", []string{"--trusted-proxies", "127.0.0.1/32"}, "198.51.100.7"},
		{"whole chain trusted", []string{"--trusted-proxies", "127.0.0.1/32,198.51.100.0/24"}, "203.0.113.7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := StartServer(t, "sqlite", c.flags...)
			for _, tr := range []string{"grpc", "rest"} {
				rid := "ip-" + tr + "-" + randHex(4)
				call(t, s, tr, rid, forged)
				if got := auditIP(t, s, rid); got != c.want {
					t.Errorf("%s: AUDIT_LOGS ip_address %q, want %q", tr, got, c.want)
				}
			}
		})
	}
}
