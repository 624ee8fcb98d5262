// Package integrations holds the storage-integration use cases below the
// RPC handlers: create, update (with the rule that a change pauses the
// linked schedules unless they are to follow it), delete (pausing or
// deleting the linked schedules) and the pause notice to the people of the
// paused schedules. Inputs are plain, already shape-checked Go values;
// results are ent rows and id lists; failures are typed errors (see
// errors.go) that server/errors.go maps to gRPC statuses in one place.
package integrations

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/ent/storageintegration"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/reqid"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/secrets"
)

// Commands runs the use cases against one database.
type Commands struct {
	db   *ent.Client
	keys *secrets.Keyring
	// notifier mails the people of the schedules a change paused.
	notifier *notify.Notifier
	log      *slog.Logger
}

// New returns the commands. mail may be disabled (notices are then skipped);
// notifyDomains are the domains besides the organization's users that a
// schedule's notify_emails may be in (pause notices honour it).
func New(c *ent.Client, keys *secrets.Keyring, mail *notify.Mailer, log *slog.Logger, notifyDomains []string) *Commands {
	return &Commands{db: c, keys: keys, notifier: notify.NewNotifier(c, mail, notifyDomains, log), log: log}
}

// CreateInput is a validated new integration.
type CreateInput struct {
	Name        string
	Provider    destination.Provider
	Destination destination.Location
	Region      string
	Endpoint    string
	Creds       destination.Credentials // Kind "" for none (LOCAL)
	CreatorID   string
	// ObjectLock: retention for every upload (S3 only; zero: none).
	ObjectLock destination.ObjectLock
}

// Create stores a new integration with its credentials sealed to its id
// and a fresh external id. ErrNameTaken if the name is in use.
func (c *Commands) Create(ctx context.Context, in CreateInput) (*ent.StorageIntegration, error) {
	id := ids.New(ids.Integration)
	blob, err := c.seal(id, in.Creds)
	if err != nil {
		return nil, fmt.Errorf("seal credentials: %w", err)
	}
	q := c.db.StorageIntegration.Create().
		SetID(id).SetName(in.Name).SetProvider(storageintegration.Provider(in.Provider)).
		SetDestination(in.Destination.String()).SetRegion(in.Region).SetEndpoint(in.Endpoint).
		SetCredentialKind(in.Creds.Kind).SetExternalID(newExternalID()).SetCreatorID(in.CreatorID).
		SetObjectLockMode(in.ObjectLock.Mode).SetObjectLockDays(in.ObjectLock.Days)
	if blob != nil {
		q.SetCredentialsCiphertext(*blob)
	}
	row, err := q.Save(ctx)
	if ent.IsConstraintError(err) {
		return nil, &NameTakenError{Name: in.Name}
	}
	return row, err
}

// UpdateInput is a validated change; nil fields stay as they are.
type UpdateInput struct {
	Name        *string
	Destination *destination.Location
	Region      *string
	Endpoint    *string
	Creds       *destination.Credentials
	// FollowSchedules: the linked schedules keep running with the changed
	// integration (update_linked_schedules) instead of being paused; with
	// a new destination each of them must still lie under it.
	FollowSchedules bool
}

// UpdateResult is the changed integration and the schedules it paused.
type UpdateResult struct {
	Integration *ent.StorageIntegration
	Paused      []string
}

// Update changes cur. Unless in.FollowSchedules, every linked schedule is
// paused (INTEGRATION_UPDATED) in the same transaction, so nothing is
// written with the changed integration before its owner has looked; the
// caller sends the notice (NotifyPaused) after the commit.
// Errors: *NameTakenError, *ScheduleOutsideDestinationError.
func (c *Commands) Update(ctx context.Context, cur *ent.StorageIntegration, in UpdateInput) (UpdateResult, error) {
	var res UpdateResult
	err := db.WithTx(ctx, c.db, func(tx *ent.Client) error {
		linked, err := tx.Schedule.Query().Where(schedule.IntegrationID(cur.ID)).All(ctx)
		if err != nil {
			return err
		}
		if in.FollowSchedules && in.Destination != nil {
			for _, sc := range linked {
				if _, err := destination.ValidateObjectURI(*in.Destination, sc.URI); err != nil {
					return &ScheduleOutsideDestinationError{ScheduleID: sc.ID, URI: sc.URI}
				}
			}
		}
		// Conditional on the version read: a concurrent update makes
		// this one ErrConcurrent rather than silently undoing it.
		upd := tx.StorageIntegration.UpdateOneID(cur.ID).Where(storageintegration.UpdateTime(cur.UpdateTime))
		if in.Name != nil {
			upd.SetName(*in.Name)
		}
		if in.Destination != nil {
			upd.SetDestination(in.Destination.String())
		}
		if in.Region != nil {
			upd.SetRegion(*in.Region)
		}
		if in.Endpoint != nil {
			upd.SetEndpoint(*in.Endpoint)
		}
		if in.Creds != nil {
			blob, err := c.seal(cur.ID, *in.Creds)
			if err != nil {
				return err
			}
			if blob == nil {
				upd.ClearCredentialsCiphertext()
			} else {
				upd.SetCredentialsCiphertext(*blob)
			}
			upd.SetCredentialKind(in.Creds.Kind)
		}
		if res.Integration, err = upd.Save(ctx); ent.IsNotFound(err) {
			return revision.ErrConcurrent
		} else if err != nil {
			return err
		}
		su := tx.Schedule.Update().Where(schedule.IntegrationID(cur.ID)).SetIntegrationName(res.Integration.Name)
		if !in.FollowSchedules {
			su.SetState(schedule.StatePAUSED).SetPauseReason(schedule.PauseReasonINTEGRATION_UPDATED)
			for _, sc := range linked {
				res.Paused = append(res.Paused, sc.ID)
			}
		}
		return su.Exec(ctx)
	})
	if ent.IsConstraintError(err) && in.Name != nil {
		return UpdateResult{}, &NameTakenError{Name: *in.Name}
	}
	if err != nil {
		return UpdateResult{}, err
	}
	return res, nil
}

// DeleteResult lists the schedules a delete paused or deleted.
type DeleteResult struct {
	Paused, Deleted []string
}

// Delete removes cur. Its schedules are deleted with it (deleteLinked), or
// paused (INTEGRATION_DELETED) and detached, in the same transaction.
func (c *Commands) Delete(ctx context.Context, cur *ent.StorageIntegration, deleteLinked bool) (DeleteResult, error) {
	var res DeleteResult
	err := db.WithTx(ctx, c.db, func(tx *ent.Client) error {
		linked, err := tx.Schedule.Query().Where(schedule.IntegrationID(cur.ID)).IDs(ctx)
		if err != nil {
			return err
		}
		if deleteLinked {
			res.Deleted = linked
			if _, err := tx.Schedule.Delete().Where(schedule.IntegrationID(cur.ID)).Exec(ctx); err != nil {
				return err
			}
		} else {
			res.Paused = linked
			if err := tx.Schedule.Update().Where(schedule.IntegrationID(cur.ID)).
				SetState(schedule.StatePAUSED).SetPauseReason(schedule.PauseReasonINTEGRATION_DELETED).
				SetIntegrationID("").ClearNextRunTime().Exec(ctx); err != nil {
				return err
			}
		}
		return tx.StorageIntegration.DeleteOneID(cur.ID).Exec(ctx)
	})
	if err != nil {
		return DeleteResult{}, err
	}
	return res, nil
}

// LinkedCounts counts the schedules of each integration in one query (a
// page of integrations is at most the page size, so the IN list is bounded).
func LinkedCounts(ctx context.Context, c *ent.Client, ids []string) (map[string]int, error) {
	out := make(map[string]int, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var rows []struct {
		IntegrationID string `json:"integration_id"`
		Count         int    `json:"count"`
	}
	err := c.Schedule.Query().Where(schedule.IntegrationIDIn(ids...)).
		GroupBy(schedule.FieldIntegrationID).Aggregate(ent.Count()).Scan(ctx, &rows)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		out[r.IntegrationID] = r.Count
	}
	return out, nil
}

// NotifyPaused e-mails the people of schedules paused by an integration
// change: each schedule's owner and its notify_emails that are still
// allowed (an organization user or an allowed domain), one message per
// recipient listing their schedules. Mail failures are logged, not
// returned: the change itself succeeded.
func (c *Commands) NotifyPaused(ctx context.Context, scheduleIDs []string, integName, reason, what string) {
	if len(scheduleIDs) == 0 || !c.notifier.Enabled() {
		return
	}
	fail := func(what string, err error) {
		attrs := []any{"integration", integName, "err", err.Error()}
		if id := reqid.From(ctx); id != "" {
			attrs = append(attrs, "request_id", id)
		}
		c.log.ErrorContext(ctx, what, attrs...)
	}
	rows, err := c.db.Schedule.Query().Where(schedule.IDIn(scheduleIDs...)).All(ctx)
	if err != nil {
		fail("loading paused schedules for notification failed", err)
		return
	}
	people, err := c.notifier.PeopleOf(ctx, rows...)
	if err != nil {
		fail("loading the recipients of the pause notification failed", err)
		return
	}
	byRecipient := map[string][]*ent.Schedule{}
	var order []string
	for _, r := range rows {
		for _, to := range people[r.ID].All() {
			key := strings.ToLower(strings.TrimSpace(to))
			if byRecipient[key] == nil {
				order = append(order, key)
			}
			byRecipient[key] = append(byRecipient[key], r)
		}
	}
	for _, to := range order {
		list := byRecipient[to]
		var b strings.Builder
		fmt.Fprintf(&b, "The storage integration %q %s, so these schedules were paused (reason %s):\n\n", integName, what, reason)
		for _, r := range list {
			fmt.Fprintf(&b, "  - %s (%s): %s\n", r.Name, r.ID, r.URI)
		}
		b.WriteString("\nCheck each schedule's destination, then resume it.\n")
		c.notifier.Send(ctx, notify.Message{To: []string{to},
			Subject: fmt.Sprintf("[auditexport] %d schedule(s) paused: integration %s %s", len(list), integName, what), Body: b.String()},
			"integration", integName)
	}
}

// seal encrypts credentials bound to the integration id; nil for none.
func (c *Commands) seal(id string, cr destination.Credentials) (*[]byte, error) {
	if cr.Kind == "" {
		return nil, nil
	}
	plain, err := json.Marshal(cr)
	if err != nil {
		return nil, err
	}
	blob, err := c.keys.Encrypt(plain, []byte(id))
	if err != nil {
		return nil, err
	}
	return &blob, nil
}

func newExternalID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "auditexport-" + hex.EncodeToString(b)
}
