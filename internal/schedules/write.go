package schedules

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/ent/storageintegration"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/ent/workbook"
	"github.com/auditexport/auditexport/internal/cron"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/revision"
)

// Fields are a schedule's settable fields, their shape already checked by
// the caller (lengths, enum names, e-mail syntax). Enum values are the
// database names (FORMAT "CSV", compression "NONE", …).
type Fields struct {
	Name, ElementID              string
	IntegrationName, URI         string
	PrefixFileNameWithDatetime   bool
	Format, Compression          string
	CsvEscapeFormulas            bool
	Cron, TimeZone               string
	SendCondition, Mode, CatchUp string
	NotifyEmails                 []string
}

// The field names of Fields, as the API names them (update-mask paths).
const (
	FieldName          = "name"
	FieldElementID     = "element_id"
	FieldDestination   = "destination" // integration name + uri
	FieldPrefix        = "prefix_file_name_with_datetime"
	FieldFormat        = "format"
	FieldCompression   = "compression"
	FieldEscape        = "csv_escape_formulas"
	FieldCron          = "cron"
	FieldTimeZone      = "time_zone"
	FieldSendCondition = "send_condition"
	FieldMode          = "mode"
	FieldCatchUp       = "catch_up"
	FieldNotifyEmails  = "notify_emails"
)

// AllFields is every settable field (a create sets them all).
var AllFields = []string{FieldName, FieldElementID, FieldDestination, FieldPrefix, FieldFormat, FieldCompression,
	FieldEscape, FieldCron, FieldTimeZone, FieldSendCondition, FieldMode, FieldNotifyEmails, FieldCatchUp}

// Violation is one field a rule refused; Field is the API path below the
// schedule ("destination.cloud_storage.uri", "notify_emails[2]").
type Violation struct{ Field, Msg string }

// InvalidError lists the fields the rules refused (INVALID_ARGUMENT).
type InvalidError struct{ Violations []Violation }

func (e *InvalidError) Error() string {
	msg := e.Violations[0].Field + ": " + e.Violations[0].Msg
	if len(e.Violations) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(e.Violations)-1)
	}
	return msg
}

func (e *InvalidError) add(field, format string, args ...any) {
	e.Violations = append(e.Violations, Violation{field, fmt.Sprintf(format, args...)})
}

func (e *InvalidError) has(field string) bool {
	for _, v := range e.Violations {
		if v.Field == field {
			return true
		}
	}
	return false
}

func (e *InvalidError) orNil() error {
	if len(e.Violations) == 0 {
		return nil
	}
	return e
}

// Commands are the schedule writes: they check what needs the database or
// the operator's configuration (the element is in the workbook, the
// integration exists and the URI lies under its destination, the extension
// fits format and compression, the cron fires, the recipients are allowed)
// and store the schedule with its next run time.
type Commands struct {
	db            *ent.Client
	notifyDomains []string
	now           func() time.Time
}

// New returns the commands; notifyDomains are the domains (besides the
// organization's users) notify_emails may name (--notify-allowed-domains).
func New(c *ent.Client, notifyDomains []string, now func() time.Time) *Commands {
	if now == nil {
		now = time.Now
	}
	return &Commands{db: c, notifyDomains: notifyDomains, now: now}
}

// Create stores a new schedule of a saved workbook, owned by ownerID; an
// empty name becomes "<workbook> / <element>".
// Errors: ErrWorkbookNotSaved, *InvalidError.
func (c *Commands) Create(ctx context.Context, wb *ent.Workbook, ownerID string, f Fields) (*ent.Schedule, error) {
	if !wb.Saved {
		return nil, ErrWorkbookNotSaved
	}
	if wb.Edges.Elements == nil {
		var err error
		if wb, err = c.db.Workbook.Query().Where(workbook.ID(wb.ID)).WithElements().Only(ctx); err != nil {
			return nil, fmt.Errorf("load workbook: %w", err)
		}
	}
	set := map[string]bool{}
	for _, k := range AllFields {
		set[k] = true
	}
	integ, cr, err := c.check(ctx, wb, f, set, nil)
	if err != nil {
		return nil, err
	}
	if f.Name == "" {
		f.Name = wb.Name
		for _, e := range wb.Edges.Elements {
			if e.ID == f.ElementID {
				f.Name = wb.Name + " / " + e.Name
			}
		}
	}
	q := c.db.Schedule.Create().SetWorkbookID(wb.ID).SetOwnerID(ownerID)
	apply(q.Mutation(), f, integ, cr, c.now())
	return q.Save(ctx)
}

// Update changes the fields named in set (the update mask's top-level
// paths) of cur to those of f; the others keep their stored values. A
// paused schedule stays without a next run time.
// Errors: *InvalidError.
func (c *Commands) Update(ctx context.Context, cur *ent.Schedule, f Fields, set map[string]bool) (*ent.Schedule, error) {
	wb, err := c.db.Workbook.Query().Where(workbook.ID(cur.WorkbookID)).WithElements().Only(ctx)
	if err != nil {
		return nil, fmt.Errorf("load workbook: %w", err)
	}
	var stored *ent.StorageIntegration
	if cur.IntegrationID != "" && !set[FieldDestination] {
		if stored, err = c.db.StorageIntegration.Get(ctx, cur.IntegrationID); err != nil && !ent.IsNotFound(err) {
			return nil, fmt.Errorf("load integration: %w", err)
		}
	}
	merged := Fields{
		Name: cur.Name, ElementID: cur.ElementID, IntegrationName: cur.IntegrationName, URI: cur.URI,
		PrefixFileNameWithDatetime: cur.PrefixFileNameWithDatetime, Format: string(cur.Format),
		Compression: string(cur.Compression), CsvEscapeFormulas: cur.CsvEscapeFormulas, Cron: cur.Cron,
		TimeZone: cur.TimeZone, SendCondition: string(cur.SendCondition), Mode: string(cur.Mode),
		CatchUp: string(cur.CatchUp), NotifyEmails: cur.NotifyEmails,
	}
	take(&merged, f, set)
	integ, cr, err := c.check(ctx, wb, merged, set, stored)
	if err != nil {
		return nil, err
	}
	// Conditional on the version read (update_time; the scheduler's
	// bookkeeping leaves it alone): a concurrent edit makes this one
	// ErrConcurrent rather than silently undoing it.
	upd := c.db.Schedule.UpdateOneID(cur.ID).Where(schedule.UpdateTime(cur.UpdateTime))
	apply(upd.Mutation(), merged, integ, cr, c.now())
	if cur.State == schedule.StatePAUSED {
		upd.ClearNextRunTime()
	}
	sc, err := upd.Save(ctx)
	if ent.IsNotFound(err) {
		return nil, revision.ErrConcurrent
	}
	return sc, err
}

// take copies the fields of f named in set onto dst.
func take(dst *Fields, f Fields, set map[string]bool) {
	if set[FieldName] {
		dst.Name = f.Name
	}
	if set[FieldElementID] {
		dst.ElementID = f.ElementID
	}
	if set[FieldDestination] {
		dst.IntegrationName, dst.URI = f.IntegrationName, f.URI
	}
	if set[FieldPrefix] {
		dst.PrefixFileNameWithDatetime = f.PrefixFileNameWithDatetime
	}
	if set[FieldFormat] {
		dst.Format = f.Format
	}
	if set[FieldCompression] {
		dst.Compression = f.Compression
	}
	if set[FieldEscape] {
		dst.CsvEscapeFormulas = f.CsvEscapeFormulas
	}
	if set[FieldCron] {
		dst.Cron = f.Cron
	}
	if set[FieldTimeZone] {
		dst.TimeZone = f.TimeZone
	}
	if set[FieldSendCondition] {
		dst.SendCondition = f.SendCondition
	}
	if set[FieldMode] {
		dst.Mode = f.Mode
	}
	if set[FieldCatchUp] {
		dst.CatchUp = f.CatchUp
	}
	if set[FieldNotifyEmails] {
		dst.NotifyEmails = f.NotifyEmails
	}
}

// check applies the rules to the fields named in set (f holds every field's
// resulting value) and returns the integration f's destination names (the
// stored one when the destination is not changed) and the parsed cron.
func (c *Commands) check(ctx context.Context, wb *ent.Workbook, f Fields, set map[string]bool, stored *ent.StorageIntegration) (*ent.StorageIntegration, *cron.Cron, error) {
	const uriField = "destination.cloud_storage.uri"
	var inv InvalidError
	if set[FieldElementID] {
		found := false
		for _, e := range wb.Edges.Elements {
			found = found || e.ID == f.ElementID
		}
		if !found {
			inv.add(FieldElementID, "no element %q in workbook %s", f.ElementID, wb.ID)
		}
	}
	integ := stored
	if set[FieldDestination] {
		var err error
		integ, err = c.db.StorageIntegration.Query().Where(storageintegration.Name(f.IntegrationName)).Only(ctx)
		switch {
		case ent.IsNotFound(err):
			inv.add("destination.cloud_storage.storage_integration_name", "no storage integration named %q", f.IntegrationName)
		case err != nil:
			return nil, nil, fmt.Errorf("load integration: %w", err)
		default:
			base, err := destination.ParseDestination(destination.Provider(integ.Provider), integ.Destination)
			if err == nil {
				_, err = destination.ValidateObjectURI(base, f.URI)
			}
			if err != nil {
				inv.add(uriField, "%s", err.Error())
			}
		}
	}
	if set[FieldDestination] || set[FieldFormat] || set[FieldCompression] {
		if err := destination.CheckExtension(f.URI, f.Format, f.Compression); err != nil {
			field := uriField
			if f.Format == "PARQUET" && f.Compression != "NONE" {
				field = FieldCompression
			}
			if !inv.has(field) {
				inv.add(field, "%s", err.Error())
			}
		}
	}
	cr, err := cron.Parse(f.Cron, f.TimeZone)
	if fe, ok := err.(*cron.FieldError); ok {
		if set[FieldCron] || set[FieldTimeZone] {
			inv.add(fe.Field, "%s", fe.Msg)
		} else {
			return nil, nil, fmt.Errorf("parse stored cron: %w", err)
		}
	} else if err != nil {
		return nil, nil, err
	}
	// Recipients must be users of the organization or in a domain the
	// operator allows: otherwise anyone who may create a schedule could make
	// the server mail arbitrary outsiders text of their choosing.
	if set[FieldNotifyEmails] && len(f.NotifyEmails) > 0 {
		users, err := c.db.User.Query().Select(user.FieldEmail).Strings(ctx) // scoped to the org
		if err != nil {
			return nil, nil, fmt.Errorf("load users: %w", err)
		}
		members := map[string]bool{}
		for _, u := range users {
			members[strings.ToLower(u)] = true
		}
		for i, e := range f.NotifyEmails {
			if !notify.Allowed(e, members, c.notifyDomains) {
				inv.add(fmt.Sprintf("%s[%d]", FieldNotifyEmails, i),
					"%q is neither a user of this organization nor in a domain the operator allows (--notify-allowed-domains)", e)
			}
		}
	}
	return integ, cr, inv.orNil()
}

// apply copies checked fields onto a create/update mutation.
func apply(m *ent.ScheduleMutation, f Fields, integ *ent.StorageIntegration, cr *cron.Cron, now time.Time) {
	m.SetName(f.Name)
	m.SetElementID(f.ElementID)
	if integ != nil {
		m.SetIntegrationID(integ.ID)
		m.SetIntegrationName(integ.Name)
	}
	m.SetURI(f.URI)
	m.SetPrefixFileNameWithDatetime(f.PrefixFileNameWithDatetime)
	m.SetFormat(schedule.Format(f.Format))
	m.SetCompression(schedule.Compression(f.Compression))
	m.SetCsvEscapeFormulas(f.CsvEscapeFormulas)
	m.SetCron(f.Cron)
	m.SetTimeZone(f.TimeZone)
	m.SetSendCondition(schedule.SendCondition(f.SendCondition))
	m.SetMode(schedule.Mode(f.Mode))
	m.SetCatchUp(schedule.CatchUp(f.CatchUp))
	m.SetNotifyEmails(f.NotifyEmails)
	if next := cr.Next(now); !next.IsZero() {
		m.SetNextRunTime(next)
	}
}
