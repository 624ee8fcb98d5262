package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/leftover"
)

// ExportRun is one execution of a schedule. Progress counters are written
// while it runs so that any replica can report them (WatchExportRun).
type ExportRun struct {
	ent.Schema
}

// Fields of the ExportRun.
func (ExportRun) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Run)).Immutable(),
		field.String("schedule_id").Immutable(),
		field.Enum("trigger").Values("SCHEDULED", "SEND_NOW", "RETRY").Immutable(),
		field.Enum("state").Values("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "SKIPPED").Default("QUEUED"),
		// Phase of a running run (QUERYING, UPLOADING, FINALIZING).
		field.String("phase").Default("QUEUED"),
		field.Time("period_start").Optional().Nillable(),
		field.Time("period_end").Optional().Nillable(),
		field.String("object_uri").Default(""),
		field.Int64("rows").Default(0),
		field.Int64("bytes").Default(0),
		field.Int64("total_rows").Default(0),
		field.String("checksum").Default(""),
		// Why the object is not simply a new object at the rendered URI:
		// the rendered key held another export (Send now wrote next to it),
		// or an identical object was already stored (nothing was written).
		field.String("note").Default(""),
		field.Int("attempt").Default(1),
		field.String("error_code").Default(""),
		field.String("error_message").Default(""),
		field.String("provider_message").Default(""),
		field.String("requested_by").Default(""),
		// Set by CancelExportRun; the executing replica notices and aborts.
		field.Bool("cancel_requested").Default(false),
		// Incremental runs export audit rows with from_seq < id <= to_seq.
		field.Int64("from_seq").Default(0),
		field.Int64("to_seq").Default(0),
		// The executing process and its last sign of life, to find runs
		// orphaned by a crashed replica.
		field.String("runner").Default(""),
		field.Time("heartbeat_time").Optional().Nillable(),
		// Scheduled runs: the period they stand for (period_end, RFC 3339). With
		// schedule_id it is unique, so a period can never get two runs however
		// many dispatchers race. NULL (no constraint) for Send now runs.
		field.String("dedup_key").Optional().Nillable().Immutable(),
		// The signed manifest written next to the object (its exact bytes,
		// so every attempt uploads the same manifest) and where.
		field.Bytes("manifest").Optional(),
		field.String("manifest_uri").Default(""),
		// What a FAILED or CANCELED run still has to settle in its store
		// (its unconfirmed objects to remove, its manifest to upload),
		// until the store answers; emptied as each is done.
		field.JSON("leftovers", []leftover.Object{}).Optional(),
		field.Time("start_time").Optional().Nillable(),
		field.Time("finish_time").Optional().Nillable(),
	}
}

// Indexes of the ExportRun.
func (ExportRun) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("org_id", "schedule_id"),
		index.Fields("state"),
		// The dispatcher's claim: QUEUED, unclaimed, oldest first.
		index.Fields("state", "runner", "create_time"),
		index.Fields("schedule_id", "dedup_key").Unique(),
	}
}

// Mixin of the ExportRun.
func (ExportRun) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }
