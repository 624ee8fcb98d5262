package main

import (
	"context"
	"fmt"
	"time"

	"github.com/auditexport/auditexport/internal/app"
	"github.com/auditexport/auditexport/internal/auditlog"
)

type adminKeyCreateCmd struct {
	dbFlags
	Email string `name:"email" required:"" help:"E-mail of an active ADMIN who needs a new API key."`
	Org   string `name:"org" help:"Organization id, when several organizations have a user with that e-mail."`
	Name  string `name:"name" help:"Name of the new key (default: recovered by operator <date>)."`
}

// Run recovers access for an organization whose admins lost their keys;
// only someone with the database (the operator) can run it.
func (c *adminKeyCreateCmd) Run(ctx context.Context) error {
	d, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	name := c.Name
	if name == "" {
		name = "recovered by operator " + time.Now().UTC().Format("2006-01-02")
	}
	k, err := app.RecoverAdminKey(ctx, d, auditlog.NewRecorder(d.Client, nil).WithDialect(d.Dialect), c.Org, c.Email, name)
	if err != nil {
		return err
	}
	fmt.Printf("API key %s for %s (user %s, organization %s), recorded in its AUDIT_LOGS; shown once:\n%s\n",
		k.KeyID, c.Email, k.UserID, k.OrgID, k.Secret)
	return nil
}
