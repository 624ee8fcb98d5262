package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
)

// bootstrapLock serialises first-start initialisation between replicas.
const bootstrapLock = 7_004_201

// EnsureBuiltins creates the built-in rows every database needs.
func EnsureBuiltins(ctx context.Context, d *db.DB) error {
	sctx := tenant.System(ctx)
	err := d.Client.Connection.Create().SetID(auditlog.ConnectionID).SetName(auditlog.ConnectionName).
		OnConflictColumns("id").DoNothing().Exec(sctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("create built-in connection: %w", err)
	}
	return nil
}

// Bootstrap initialises an empty database: the default organization, its
// first ADMIN, and that admin's API key (given, or generated and printed once
// to out). It does nothing on a database that already has organizations.
func Bootstrap(ctx context.Context, d *db.DB, key, adminEmail string, out io.Writer) (created bool, err error) {
	if key != "" && !auth.ValidKeyFormat(key) {
		return false, errors.New("--bootstrap-admin-key: not an auditexport API key (want aek_<8 chars>_<32 chars>, lowercase base32); omit it to have one generated")
	}
	sctx := tenant.System(ctx)
	tx, err := d.Client.Tx(sctx)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if d.Dialect == dialect.Postgres {
		if _, err = tx.ExecContext(sctx, "SELECT pg_advisory_xact_lock($1)", bootstrapLock); err != nil {
			return false, fmt.Errorf("bootstrap lock: %w", err)
		}
	}
	n, err := tx.Organization.Query().Count(sctx)
	if err != nil || n > 0 {
		if err == nil {
			err = tx.Commit()
		}
		return false, err
	}
	org, err := tx.Organization.Create().SetName("default").SetIsDefault(true).Save(sctx)
	if err != nil {
		return false, err
	}
	printed, err := createAdmin(tenant.WithOrg(sctx, org.ID), tx.Client(), key, adminEmail)
	if err != nil {
		return false, err
	}
	if err = tx.Commit(); err != nil {
		return false, err
	}
	if key == "" {
		fmt.Fprintf(out, "Bootstrap admin API key for %s (shown once, store it now):\n%s\n", adminEmail, printed)
	}
	return true, nil
}

// createAdmin makes an ADMIN user with an API key in the context's org.
func createAdmin(ctx context.Context, c *ent.Client, key, email string) (string, error) {
	u, err := c.User.Create().SetEmail(email).SetAccountType(user.AccountTypeADMIN).Save(ctx)
	if err != nil {
		return "", fmt.Errorf("create admin user: %w", err)
	}
	var prefix string
	var hash []byte
	if key == "" {
		key, prefix, hash = auth.NewAPIKey()
	} else {
		prefix, _ = auth.ParseAPIKey(key)
		hash = auth.Hash(key)
	}
	if err := c.ApiKey.Create().SetUserID(u.ID).SetName("bootstrap").SetPrefix(prefix).SetSecretHash(hash).Exec(ctx); err != nil {
		return "", fmt.Errorf("create admin key: %w", err)
	}
	return key, nil
}

// CreateOrg creates a further tenant with an ADMIN and returns the admin's key.
func CreateOrg(ctx context.Context, d *db.DB, name, adminEmail string) (orgID, key string, err error) {
	sctx := tenant.System(ctx)
	tx, err := d.Client.Tx(sctx)
	if err != nil {
		return "", "", err
	}
	org, err := tx.Organization.Create().SetName(name).Save(sctx)
	if err != nil {
		_ = tx.Rollback()
		return "", "", err
	}
	key, err = createAdmin(tenant.WithOrg(sctx, org.ID), tx.Client(), "", adminEmail)
	if err != nil {
		_ = tx.Rollback()
		return "", "", err
	}
	return org.ID, key, tx.Commit()
}
