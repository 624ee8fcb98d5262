package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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

// RecoveredKey is an API key the operator made with RecoverAdminKey.
type RecoveredKey struct {
	OrgID, UserID, KeyID, Secret string
}

// RecoverAdminKey gives an active ADMIN (found by e-mail, in orgID when
// several organizations have that e-mail) a new API key, for an operator
// with database access whose admins lost theirs. The key is recorded in the
// organization's AUDIT_LOGS like a CreateApiKey call, made by the operator.
func RecoverAdminKey(ctx context.Context, d *db.DB, rec *auditlog.Recorder, orgID, email, name string) (RecoveredKey, error) {
	sctx := tenant.System(ctx)
	q := d.Client.User.Query().Where(user.Email(email))
	if orgID != "" {
		q = q.Where(user.OrgID(orgID))
	}
	users, err := q.All(sctx)
	if err != nil {
		return RecoveredKey{}, err
	}
	switch {
	case len(users) == 0:
		return RecoveredKey{}, fmt.Errorf("no user with e-mail %q%s", email, inOrg(orgID))
	case len(users) > 1:
		var orgs []string
		for _, u := range users {
			orgs = append(orgs, u.OrgID)
		}
		return RecoveredKey{}, fmt.Errorf("e-mail %q is a user of several organizations (%s): choose one with --org", email, strings.Join(orgs, ", "))
	}
	u := users[0]
	if u.AccountType != user.AccountTypeADMIN || !u.Active {
		return RecoveredKey{}, fmt.Errorf("user %s (%s) is not an active ADMIN of %s; recover a key for an active ADMIN", u.ID, email, u.OrgID)
	}
	secret, prefix, hash := auth.NewAPIKey()
	octx := tenant.WithOrg(sctx, u.OrgID)
	k, err := d.Client.ApiKey.Create().SetUserID(u.ID).SetName(name).SetPrefix(prefix).SetSecretHash(hash).Save(octx)
	if err != nil {
		return RecoveredKey{}, fmt.Errorf("create api key: %w", err)
	}
	_, err = rec.Record(octx, auditlog.Event{
		OrgID: u.OrgID, Category: "PUBLIC_API", Type: "CREATE_API_KEY", UserEmail: "operator",
		AccountType: "OPERATOR", ObjectType: "API_KEY", ObjectID: k.ID,
		Metadata: map[string]any{"via": "auditexport admin key create", "key_user_id": u.ID},
	})
	if err != nil {
		// Unaudited access must not be handed out: take the key back.
		_ = d.Client.ApiKey.DeleteOneID(k.ID).Exec(octx)
		return RecoveredKey{}, err
	}
	return RecoveredKey{OrgID: u.OrgID, UserID: u.ID, KeyID: k.ID, Secret: secret}, nil
}

func inOrg(orgID string) string {
	if orgID == "" {
		return ""
	}
	return " in organization " + orgID
}

// bootstrapKeyFromFile implements --bootstrap-admin-key-file: an existing
// file supplies the first admin's key (kept out of argv and the
// environment); otherwise a key is generated and written to a new 0600 file
// before the database is initialised, so it is never printed. written says
// whether the file was created here (the caller removes it if the database
// turns out to be initialised already).
func bootstrapKeyFromFile(path string) (key string, written bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		key = strings.TrimSpace(string(data))
		if !auth.ValidKeyFormat(key) {
			return "", false, fmt.Errorf("--bootstrap-admin-key-file %s does not hold an auditexport API key (aek_<8>_<32>)", path)
		}
		return key, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("--bootstrap-admin-key-file: %w", err)
	}
	key, _, _ = auth.NewAPIKey()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("--bootstrap-admin-key-file: %w", err)
	}
	_, err = f.WriteString(key + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", false, fmt.Errorf("--bootstrap-admin-key-file: %w", err)
	}
	return key, true, nil
}
