package accounts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/connectiongrant"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/accounts"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestAccountRules: users, grants and keys in-process on SQLite and
// PostgreSQL — the typed refusals change nothing, and a change that takes
// a user's right to own schedules pauses them in the same step.
func TestAccountRules(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		o := testenv.NewOrg(t, d, "admin@example.com")
		ctx, c := o.Ctx, d.Client
		must := func(err error) { t.Helper(); testenv.Must(t, err) }
		reason := func(err error) string {
			var pe *accounts.PreconditionError
			if errors.As(err, &pe) {
				return pe.Reason()
			}
			return ""
		}
		activeSchedule := func(ownerID string) *ent.Schedule {
			sc, err := c.Schedule.Create().SetWorkbookID("wbk_x").SetElementID("elm_x").SetName("s").SetOwnerID(ownerID).
				SetIntegrationName("i").SetURI("file:///x.csv").SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).
				SetCron("0 * * * *").SetTimeZone("UTC").SetNextRunTime(time.Now().Add(time.Hour)).Save(ctx)
			must(err)
			return sc
		}
		str := func(s string) *string { return &s }
		no := false

		u, err := accounts.CreateUser(ctx, c, "creator@example.com", "CREATOR")
		must(err)
		if !u.Active || u.AccountType != user.AccountTypeCREATOR {
			t.Fatalf("created %+v", u)
		}
		var taken *accounts.EmailTakenError
		if _, err := accounts.CreateUser(ctx, c, "creator@example.com", "VIEWER"); !errors.As(err, &taken) {
			t.Fatalf("second user with the address: %v", err)
		}
		if _, _, err := accounts.UpdateUser(ctx, c, u, o.Admin.ID, accounts.UserChange{Email: str("admin@example.com")}); !errors.As(err, &taken) {
			t.Fatalf("update to a taken address: %v", err)
		}

		// An ADMIN cannot demote or deactivate themselves; nothing changes.
		for _, ch := range []accounts.UserChange{{AccountType: str("CREATOR")}, {Active: &no}} {
			if _, _, err := accounts.UpdateUser(ctx, c, o.Admin, o.Admin.ID, ch); reason(err) != accounts.ReasonSelfLockout {
				t.Fatalf("self lockout %+v: %v", ch, err)
			}
		}
		if a := c.User.GetX(ctx, o.Admin.ID); a.AccountType != user.AccountTypeADMIN || !a.Active {
			t.Fatalf("admin after refused self-changes: %+v", a)
		}

		// Grant is idempotent; revoking it pauses the user's schedules.
		must(accounts.Grant(ctx, c, u.ID, auditlog.ConnectionID))
		must(accounts.Grant(ctx, c, u.ID, auditlog.ConnectionID))
		if n := c.ConnectionGrant.Query().Where(connectiongrant.UserID(u.ID)).CountX(ctx); n != 1 {
			t.Fatalf("%d grants after granting twice", n)
		}
		sc := activeSchedule(u.ID)
		paused, err := accounts.Revoke(ctx, c, u.ID, auditlog.ConnectionID)
		must(err)
		if len(paused) != 1 || paused[0] != sc.ID || c.Schedule.GetX(ctx, sc.ID).State != schedule.StatePAUSED {
			t.Fatalf("revoke paused %v", paused)
		}

		// Deactivating pauses too, and a deactivated user gets no key.
		must(accounts.Grant(ctx, c, u.ID, auditlog.ConnectionID))
		sc = activeSchedule(u.ID)
		u2, paused, err := accounts.UpdateUser(ctx, c, u, o.Admin.ID, accounts.UserChange{Active: &no})
		must(err)
		if u2.Active || len(paused) != 1 || paused[0] != sc.ID {
			t.Fatalf("deactivate: %+v paused %v", u2, paused)
		}
		if _, _, err := accounts.CreateAPIKey(ctx, c, u2, "k"); reason(err) != accounts.ReasonUserInactive {
			t.Fatalf("key for a deactivated user: %v", err)
		}

		// A key's secret is returned once and only its hash is stored;
		// revoking twice keeps the first revoke time.
		k, secret, err := accounts.CreateAPIKey(ctx, c, o.Admin, "ci")
		must(err)
		if secret == "" || string(k.SecretHash) == secret || !auth.Verify(secret, k.SecretHash) {
			t.Fatalf("key %+v with secret %q", k, secret)
		}
		t1 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
		r, err := accounts.RevokeAPIKey(ctx, c, k, t1)
		must(err)
		r2, err := accounts.RevokeAPIKey(ctx, c, r, t1.Add(time.Hour))
		must(err)
		if r.RevokeTime == nil || !r.RevokeTime.Equal(t1) || !r2.RevokeTime.Equal(t1) {
			t.Fatalf("revoked at %v then %v", r.RevokeTime, r2.RevokeTime)
		}
	})
}
