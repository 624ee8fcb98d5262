package ownership_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/ownership"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

func TestWhy(t *testing.T) {
	u := func(typ user.AccountType, active bool) *ent.User { return &ent.User{AccountType: typ, Active: active} }
	for _, c := range []struct {
		name    string
		u       *ent.User
		granted bool
		may     bool
	}{
		{"admin", u(user.AccountTypeADMIN, true), false, true},
		{"admin granted", u(user.AccountTypeADMIN, true), true, true},
		{"creator granted", u(user.AccountTypeCREATOR, true), true, true},
		{"creator without grant", u(user.AccountTypeCREATOR, true), false, false},
		{"viewer granted", u(user.AccountTypeVIEWER, true), true, false},
		{"deactivated admin", u(user.AccountTypeADMIN, false), true, false},
		{"deactivated creator", u(user.AccountTypeCREATOR, false), true, false},
		{"deleted", nil, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			why := ownership.Why(c.u, c.granted)
			if (why == "") != c.may {
				t.Errorf("Why = %q, want may own schedules: %v", why, c.may)
			}
		})
	}
}

// TestPauseIfUnauthorized: a user's ACTIVE schedules are paused with
// OWNER_NOT_AUTHORIZED once they lose the grant, the CREATOR role or their
// active flag; schedules paused for another reason keep it; other users'
// schedules and an authorized user's are untouched.
func TestPauseIfUnauthorized(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		for _, c := range []struct {
			name   string
			change func(ctx context.Context, c *ent.Client, u *ent.User) error
			why    string
		}{
			{"unchanged", func(context.Context, *ent.Client, *ent.User) error { return nil }, ""},
			{"grant revoked", func(ctx context.Context, c *ent.Client, u *ent.User) error {
				_, err := c.ConnectionGrant.Delete().Exec(ctx)
				return err
			}, "no access"},
			{"deactivated", func(ctx context.Context, c *ent.Client, u *ent.User) error {
				return c.User.UpdateOne(u).SetActive(false).Exec(ctx)
			}, "deactivated"},
			{"demoted", func(ctx context.Context, c *ent.Client, u *ent.User) error {
				return c.User.UpdateOne(u).SetAccountType(user.AccountTypeVIEWER).Exec(ctx)
			}, "VIEWER"},
		} {
			t.Run(c.name, func(t *testing.T) {
				ctx, cl, owner, other := fixture(t, d)
				active := newSchedule(t, ctx, cl, owner.ID, "")
				byUser := newSchedule(t, ctx, cl, owner.ID, schedule.PauseReasonUSER)
				othersActive := newSchedule(t, ctx, cl, other.ID, "")
				if err := c.change(ctx, cl, owner); err != nil {
					t.Fatal(err)
				}
				err := ownership.Check(ctx, cl, owner.ID)
				var denied *ownership.Error
				if c.why == "" && err != nil || c.why != "" && (!errors.As(err, &denied) || !strings.Contains(denied.Why, c.why)) {
					t.Fatalf("Check = %v, want a denial mentioning %q", err, c.why)
				}
				paused, err := ownership.PauseIfUnauthorized(ctx, cl, owner.ID)
				if err != nil {
					t.Fatal(err)
				}
				want := []string{}
				if c.why != "" {
					want = []string{active}
				}
				if !slices.Equal(paused, want) {
					t.Errorf("paused %v, want %v", paused, want)
				}
				expect := func(id string, state schedule.State, reason schedule.PauseReason) {
					t.Helper()
					sc, err := cl.Schedule.Get(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					got := schedule.PauseReason("")
					if sc.PauseReason != nil {
						got = *sc.PauseReason
					}
					if sc.State != state || got != reason || (state == schedule.StatePAUSED) != (sc.NextRunTime == nil) {
						t.Errorf("schedule %s: %s/%s next %v, want %s/%s", id, sc.State, got, sc.NextRunTime, state, reason)
					}
				}
				if c.why != "" {
					expect(active, schedule.StatePAUSED, schedule.PauseReasonOWNER_NOT_AUTHORIZED)
				} else {
					expect(active, schedule.StateACTIVE, "")
				}
				expect(byUser, schedule.StatePAUSED, schedule.PauseReasonUSER)
				expect(othersActive, schedule.StateACTIVE, "")
			})
		}
	})
}

// TestCheckDeletedOwner: an owner row that no longer exists denies.
func TestCheckDeletedOwner(t *testing.T) {
	ctx, cl, _, _ := fixture(t, testenv.SQLiteDB(t))
	var denied *ownership.Error
	if err := ownership.Check(ctx, cl, "usr_01NOSUCHUSER"); !errors.As(err, &denied) {
		t.Fatalf("Check(deleted user) = %v, want *ownership.Error", err)
	}
}

// fixture makes a fresh organization with a granted CREATOR (the owner)
// and an ADMIN (another owner).
func fixture(t *testing.T, d *db.DB) (context.Context, *ent.Client, *ent.User, *ent.User) {
	t.Helper()
	org, err := d.Client.Organization.Create().SetName("o").Save(tenant.System(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := tenant.WithOrg(context.Background(), org.ID)
	c := d.Client
	owner, err := c.User.Create().SetEmail("creator@example.com").SetAccountType(user.AccountTypeCREATOR).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConnectionGrant.Create().SetUserID(owner.ID).SetConnectionID(auditlog.ConnectionID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := c.User.Create().SetEmail("admin@example.com").SetAccountType(user.AccountTypeADMIN).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, c, owner, other
}

func newSchedule(t *testing.T, ctx context.Context, c *ent.Client, ownerID string, paused schedule.PauseReason) string {
	t.Helper()
	m := c.Schedule.Create().SetWorkbookID("wbk_x").SetElementID("elm_x").SetName("s").SetOwnerID(ownerID).
		SetIntegrationName("i").SetURI("file:///x.csv").SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).
		SetCron("0 * * * *").SetTimeZone("UTC")
	if paused != "" {
		m.SetState(schedule.StatePAUSED).SetPauseReason(paused)
	} else {
		m.SetNextRunTime(time.Now().Add(time.Hour))
	}
	sc, err := m.Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sc.ID
}

// TestCheckCaller: the owner calling is decided from their principal (read
// with their key in the same request), the same rule as Check; anyone else
// calling is decided from the database.
func TestCheckCaller(t *testing.T) {
	ctx, cl, owner, admin := fixture(t, testenv.SQLiteDB(t))
	as := func(id, typ string, grants ...string) context.Context {
		p := &auth.Principal{OrgID: "org", UserID: id, AccountType: typ, Grants: map[string]bool{}}
		for _, g := range grants {
			p.Grants[g] = true
		}
		return auth.WithPrincipal(ctx, p)
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
		why  string // "" may own
	}{
		{"granted creator", as(owner.ID, auth.Creator, auditlog.ConnectionID), ""},
		{"creator without grant", as(owner.ID, auth.Creator), "no access"},
		{"viewer", as(owner.ID, auth.Viewer, auditlog.ConnectionID), "VIEWER"},
		{"admin", as(owner.ID, auth.Admin), ""},
		// Another caller: the owner's row decides (granted CREATOR, then deactivated below).
		{"admin on the owner's schedule", as(admin.ID, auth.Admin), ""},
	} {
		err := ownership.CheckCaller(c.ctx, cl, owner.ID)
		var denied *ownership.Error
		if c.why == "" && err != nil || c.why != "" && (!errors.As(err, &denied) || !strings.Contains(denied.Why, c.why)) {
			t.Errorf("%s: CheckCaller = %v, want a denial mentioning %q", c.name, err, c.why)
		}
	}
	if err := cl.User.UpdateOne(owner).SetActive(false).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var denied *ownership.Error
	if err := ownership.CheckCaller(as(admin.ID, auth.Admin), cl, owner.ID); !errors.As(err, &denied) || !strings.Contains(denied.Why, "deactivated") {
		t.Errorf("an ADMIN on a deactivated owner's schedule: CheckCaller = %v, want the owner's denial", err)
	}
	if err := ownership.CheckCaller(ctx, cl, owner.ID); !errors.As(err, &denied) {
		t.Errorf("no principal: CheckCaller = %v, want the database's denial", err)
	}
}
