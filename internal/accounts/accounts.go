// Package accounts holds the account use cases below the RPC handlers:
// users (an ADMIN cannot lock themselves out; deactivating or demoting a
// user, or revoking their connection grant, pauses the schedules they may
// no longer own, in the same transaction), connection grants and API keys
// (only for active users; the secret is returned once, its hash stored).
// Typed errors are mapped to gRPC statuses in server/errors.go.
package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/connectiongrant"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/ownership"
	"github.com/auditexport/auditexport/internal/revision"
)

// EmailTakenError: another user of the organization has the address
// (ALREADY_EXISTS on user.email).
type EmailTakenError struct{ Email string }

func (e *EmailTakenError) Error() string { return "a user with e-mail " + e.Email + " already exists" }

// PreconditionError is a documented FAILED_PRECONDITION (docs/api.md).
type PreconditionError struct{ reason, msg string }

// Reason is the ErrorInfo reason.
func (e *PreconditionError) Reason() string { return e.reason }
func (e *PreconditionError) Error() string  { return e.msg }

// The reasons.
const (
	ReasonSelfLockout  = "SELF_LOCKOUT"
	ReasonUserInactive = "USER_INACTIVE"
)

// ErrSelfLockout: an ADMIN demoting or deactivating themselves.
var ErrSelfLockout = &PreconditionError{ReasonSelfLockout, "an ADMIN cannot demote or deactivate themselves; ask another ADMIN"}

// CreateUser adds an active user. Errors: *EmailTakenError.
func CreateUser(ctx context.Context, c *ent.Client, email, accountType string) (*ent.User, error) {
	u, err := c.User.Create().SetEmail(email).SetAccountType(user.AccountType(accountType)).SetActive(true).Save(ctx)
	if ent.IsConstraintError(err) {
		return nil, &EmailTakenError{Email: email}
	}
	return u, err
}

// UserChange is a validated user update; nil fields stay as they are.
type UserChange struct {
	Email       *string
	AccountType *string
	Active      *bool
}

// UpdateUser changes cur on behalf of actorID and pauses, in the same
// transaction, the schedules cur may no longer own (deactivated, demoted to
// VIEWER); it returns their ids. Errors: ErrSelfLockout, *EmailTakenError.
func UpdateUser(ctx context.Context, c *ent.Client, cur *ent.User, actorID string, ch UserChange) (*ent.User, []string, error) {
	demoted := ch.AccountType != nil && *ch.AccountType != string(user.AccountTypeADMIN)
	deactivated := ch.Active != nil && !*ch.Active
	if cur.ID == actorID && (demoted || deactivated) {
		return nil, nil, ErrSelfLockout
	}
	var u *ent.User
	var paused []string
	err := db.WithTx(ctx, c, func(tx *ent.Client) error {
		upd := tx.User.UpdateOneID(cur.ID).Where(user.UpdateTime(cur.UpdateTime)) // see revision
		if ch.Email != nil {
			upd.SetEmail(*ch.Email)
		}
		if ch.AccountType != nil {
			upd.SetAccountType(user.AccountType(*ch.AccountType))
		}
		if ch.Active != nil {
			upd.SetActive(*ch.Active)
		}
		var err error
		if u, err = upd.Save(ctx); ent.IsNotFound(err) {
			return revision.ErrConcurrent
		} else if err != nil {
			return err
		}
		paused, err = ownership.PauseIfUnauthorized(ctx, tx, u.ID)
		return err
	})
	if ent.IsConstraintError(err) && ch.Email != nil {
		return nil, nil, &EmailTakenError{Email: *ch.Email}
	}
	return u, paused, err
}

// Grant gives u access to the connection (idempotent).
func Grant(ctx context.Context, c *ent.Client, userID, connectionID string) error {
	err := c.ConnectionGrant.Create().SetUserID(userID).SetConnectionID(connectionID).
		OnConflictColumns(connectiongrant.FieldUserID, connectiongrant.FieldConnectionID).DoNothing().Exec(ctx)
	// An upsert that did nothing reports sql.ErrNoRows on some drivers.
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return nil
}

// Revoke takes the connection away from u and pauses, in the same
// transaction, the schedules that read it; it returns their ids.
func Revoke(ctx context.Context, c *ent.Client, userID, connectionID string) ([]string, error) {
	var paused []string
	err := db.WithTx(ctx, c, func(tx *ent.Client) error {
		if _, err := tx.ConnectionGrant.Delete().Where(connectiongrant.UserID(userID), connectiongrant.ConnectionID(connectionID)).Exec(ctx); err != nil {
			return err
		}
		var err error
		paused, err = ownership.PauseIfUnauthorized(ctx, tx, userID)
		return err
	})
	return paused, err
}

// CreateAPIKey makes a key for u and returns it with its secret (shown
// once; only its hash is stored). Errors: USER_INACTIVE.
func CreateAPIKey(ctx context.Context, c *ent.Client, u *ent.User, name string) (*ent.ApiKey, string, error) {
	if !u.Active {
		return nil, "", &PreconditionError{ReasonUserInactive, "user " + u.ID + " is deactivated"}
	}
	secret, prefix, hash := auth.NewAPIKey()
	k, err := c.ApiKey.Create().SetUserID(u.ID).SetName(name).SetPrefix(prefix).SetSecretHash(hash).Save(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("create api key: %w", err)
	}
	return k, secret, nil
}

// RevokeAPIKey revokes k at now unless it is revoked already.
func RevokeAPIKey(ctx context.Context, c *ent.Client, k *ent.ApiKey, now time.Time) (*ent.ApiKey, error) {
	if k.RevokeTime != nil {
		return k, nil
	}
	return c.ApiKey.UpdateOneID(k.ID).SetRevokeTime(now.UTC()).Save(ctx)
}
