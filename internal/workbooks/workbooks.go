// Package workbooks holds the workbook use cases below the RPC handlers:
// changing a workbook's elements (an element a schedule uses cannot be
// removed) and deleting a workbook (with its schedules only when forced,
// and only those the caller could delete one by one). Typed errors are
// mapped to gRPC statuses in server/errors.go.
package workbooks

import (
	"context"
	"fmt"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/element"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/ent/workbook"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/revision"
)

// ElementInUseError: an update removes an element a schedule exports.
type ElementInUseError struct{ Schedules int }

// Reason is the ErrorInfo reason (FAILED_PRECONDITION).
func (e *ElementInUseError) Reason() string { return "ELEMENT_IN_USE" }

func (e *ElementInUseError) Error() string {
	return "an element being removed is used by a schedule; delete or move the schedule first"
}

// HasSchedulesError: a workbook with schedules is deleted without force.
type HasSchedulesError struct{ Schedules int }

// Reason is the ErrorInfo reason (FAILED_PRECONDITION).
func (e *HasSchedulesError) Reason() string { return "WORKBOOK_HAS_SCHEDULES" }

func (e *HasSchedulesError) Error() string {
	return fmt.Sprintf("workbook has %d schedule(s); delete them first or pass force=true", e.Schedules)
}

// SchedulesOwnedByOthersError: a forced delete by a non-ADMIN would delete
// schedules of other owners (PERMISSION_DENIED).
type SchedulesOwnedByOthersError struct{ Schedules int }

// Reason is the ErrorInfo reason (PERMISSION_DENIED).
func (e *SchedulesOwnedByOthersError) Reason() string { return "SCHEDULES_OWNED_BY_OTHERS" }

func (e *SchedulesOwnedByOthersError) Error() string {
	return fmt.Sprintf("workbook has %d schedule(s) owned by other users; only their owners or an ADMIN may delete them", e.Schedules)
}

// Element is an element as an update leaves it: ID "" adds one.
type Element struct {
	ID, Name string
	Spec     auditlog.Spec
}

// Change is a validated workbook update; nil fields stay as they are.
type Change struct {
	Name, Folder *string
	// Elements, when set, is the whole new list in order: elements of the
	// workbook not in it are removed.
	Elements *[]Element
}

// Update applies ch to wb (loaded with its elements) in one transaction.
// Error: *ElementInUseError.
func Update(ctx context.Context, c *ent.Client, wb *ent.Workbook, ch Change) error {
	return db.WithTx(ctx, c, func(tx *ent.Client) error {
		// Conditional on the version read (and it moves even when only
		// elements change): a concurrent update makes this one
		// ErrConcurrent rather than silently undoing it.
		upd := tx.Workbook.UpdateOneID(wb.ID).Where(workbook.UpdateTime(wb.UpdateTime))
		if ch.Name != nil {
			upd.SetName(*ch.Name)
		}
		if ch.Folder != nil {
			upd.SetFolder(*ch.Folder)
		}
		if err := upd.Exec(ctx); ent.IsNotFound(err) {
			return revision.ErrConcurrent
		} else if err != nil {
			return err
		}
		if ch.Elements == nil {
			return nil
		}
		keep := map[string]bool{}
		for _, e := range *ch.Elements {
			keep[e.ID] = true
		}
		var removed []string
		for _, e := range wb.Edges.Elements {
			if !keep[e.ID] {
				removed = append(removed, e.ID)
			}
		}
		if len(removed) > 0 {
			n, err := tx.Schedule.Query().Where(schedule.ElementIDIn(removed...)).Count(ctx)
			if err != nil {
				return err
			}
			if n > 0 {
				return &ElementInUseError{Schedules: n}
			}
			if _, err := tx.Element.Delete().Where(element.IDIn(removed...)).Exec(ctx); err != nil {
				return err
			}
		}
		for i, e := range *ch.Elements {
			if e.ID != "" {
				if err := tx.Element.UpdateOneID(e.ID).SetName(e.Name).SetPosition(i).SetSpec(e.Spec).Exec(ctx); err != nil {
					return err
				}
				continue
			}
			if err := tx.Element.Create().SetWorkbookID(wb.ID).SetName(e.Name).SetPosition(i).
				SetConnectionID(auditlog.ConnectionID).SetTableName(auditlog.TableName).SetSpec(e.Spec).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}

// Caller is who deletes: a non-ADMIN may only delete their own schedules.
type Caller struct {
	UserID string
	Admin  bool
}

// Delete removes wb with its elements and, when force, its schedules; it
// returns the ids of the schedules it deleted.
// Errors: *HasSchedulesError, *SchedulesOwnedByOthersError.
func Delete(ctx context.Context, c *ent.Client, wbID string, force bool, by Caller) ([]string, error) {
	var deleted []string
	err := db.WithTx(ctx, c, func(tx *ent.Client) error {
		sched, err := tx.Schedule.Query().Where(schedule.WorkbookID(wbID)).IDs(ctx)
		if err != nil {
			return err
		}
		if len(sched) > 0 && !force {
			return &HasSchedulesError{Schedules: len(sched)}
		}
		// force deletes only what the caller could delete one by one
		// (DeleteSchedule: owner or ADMIN).
		if !by.Admin && len(sched) > 0 {
			others, err := tx.Schedule.Query().Where(schedule.WorkbookID(wbID), schedule.OwnerIDNEQ(by.UserID)).Count(ctx)
			if err != nil {
				return err
			}
			if others > 0 {
				return &SchedulesOwnedByOthersError{Schedules: others}
			}
		}
		if _, err := tx.Schedule.Delete().Where(schedule.WorkbookID(wbID)).Exec(ctx); err != nil {
			return err
		}
		deleted = sched
		if _, err := tx.Element.Delete().Where(element.WorkbookID(wbID)).Exec(ctx); err != nil {
			return err
		}
		return tx.Workbook.DeleteOneID(wbID).Exec(ctx)
	})
	return deleted, err
}

// Explore creates ownerID's unsaved exploration of the AUDIT_LOGS table: a
// workbook with one element over the whole table.
func Explore(ctx context.Context, c *ent.Client, ownerID string) (*ent.Workbook, error) {
	var wb *ent.Workbook
	err := db.WithTx(ctx, c, func(tx *ent.Client) error {
		var err error
		if wb, err = tx.Workbook.Create().SetOwnerID(ownerID).SetSaved(false).Save(ctx); err != nil {
			return err
		}
		return tx.Element.Create().SetWorkbookID(wb.ID).SetName(auditlog.TableName).
			SetConnectionID(auditlog.ConnectionID).SetTableName(auditlog.TableName).SetSpec(auditlog.Spec{}).Exec(ctx)
	})
	return wb, err
}

// SaveAs saves src (loaded with its elements) under name and folder: an
// exploration is saved in place, a saved workbook is copied (with its
// elements, not its schedules) as a new workbook of ownerID. It returns the
// saved workbook's id.
func SaveAs(ctx context.Context, c *ent.Client, src *ent.Workbook, ownerID, name, folder string) (string, error) {
	if !src.Saved {
		return src.ID, c.Workbook.UpdateOneID(src.ID).SetSaved(true).SetName(name).SetFolder(folder).Exec(ctx)
	}
	var id string
	err := db.WithTx(ctx, c, func(tx *ent.Client) error {
		wb, err := tx.Workbook.Create().SetOwnerID(ownerID).SetSaved(true).SetName(name).SetFolder(folder).Save(ctx)
		if err != nil {
			return err
		}
		id = wb.ID
		for _, e := range src.Edges.Elements {
			if err := tx.Element.Create().SetWorkbookID(wb.ID).SetName(e.Name).SetPosition(e.Position).
				SetConnectionID(e.ConnectionID).SetTableName(e.TableName).SetSpec(e.Spec).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	return id, err
}
