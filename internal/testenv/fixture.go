package testenv

import (
	"context"
	"testing"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Org is a fresh organization for an in-process test: Ctx queries within
// it (tenant), Admin is its first user, an ADMIN.
type Org struct {
	Ctx   context.Context
	ID    string
	Admin *ent.User
}

// NewOrg creates an organization with an ADMIN user adminEmail in d.
func NewOrg(tb testing.TB, d *db.DB, adminEmail string) Org {
	tb.Helper()
	org, err := d.Client.Organization.Create().SetName("o").Save(tenant.System(context.Background()))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := tenant.WithOrg(context.Background(), org.ID)
	u, err := d.Client.User.Create().SetEmail(adminEmail).SetAccountType(user.AccountTypeADMIN).Save(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return Org{Ctx: ctx, ID: org.ID, Admin: u}
}

// Must fails the test at once on err.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
