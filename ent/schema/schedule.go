package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/auditexport/auditexport/internal/ids"
)

// Schedule is a scheduled export of a workbook element.
type Schedule struct {
	ent.Schema
}

// Fields of the Schedule.
func (Schedule) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Schedule)).Immutable(),
		field.String("workbook_id").Immutable(),
		field.String("element_id"),
		field.String("name").NotEmpty(),
		field.String("owner_id"),
		// Empty once the integration is deleted (the schedule is then paused).
		field.String("integration_id").Default(""),
		field.String("integration_name"),
		field.String("uri"),
		field.Bool("prefix_file_name_with_datetime").Default(false),
		field.Enum("format").Values("CSV", "JSONL", "PARQUET"),
		field.Enum("compression").Values("NONE", "GZIP", "ZSTD"),
		field.Bool("csv_escape_formulas").Default(true),
		field.String("cron"),
		field.String("time_zone"),
		field.Enum("send_condition").Values("ALWAYS", "IF_DATA", "IF_NO_DATA").Default("ALWAYS"),
		field.Enum("mode").Values("SNAPSHOT", "INCREMENTAL").Default("SNAPSHOT"),
		field.Strings("notify_emails").Optional(),
		field.Enum("state").Values("ACTIVE", "PAUSED").Default("ACTIVE"),
		field.Enum("pause_reason").Values("USER", "INTEGRATION_UPDATED", "INTEGRATION_DELETED", "REPEATED_FAILURES", "OWNER_NOT_AUTHORIZED").Optional().Nillable(),
		field.Enum("catch_up").Values("ONE", "NONE").Default("ONE"),
		field.Time("next_run_time").Optional().Nillable(),
		field.Int("consecutive_failures").Default(0),
		field.String("last_run_id").Default(""),
		// When a run last SUCCEEDED or was SKIPPED by the send condition:
		// the "no success for N hours" alert reads it (metrics).
		field.Time("last_success_time").Optional().Nillable(),
		// Incremental mode: audit rows with id <= watermark were exported.
		field.Int64("watermark").Default(0),
		// The chain of signed export manifests (see clients/go/manifest):
		// how many manifests this schedule has, and the sha256 (hex) of the
		// newest one's bytes, which the next manifest names as its previous.
		field.Int64("manifest_sequence").Default(0),
		field.String("manifest_head").Default(""),
	}
}

// Indexes of the Schedule.
func (Schedule) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("org_id", "workbook_id"),
		index.Fields("org_id", "integration_id"),
		index.Fields("state", "next_run_time"),
	}
}

// Mixin of the Schedule.
func (Schedule) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }
