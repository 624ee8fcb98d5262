package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// AuditEvent is one row of the AUDIT_LOGS table. The integer primary key is
// the insert sequence (used by incremental exports); event_id is the public id.
type AuditEvent struct {
	ent.Schema
}

// Annotations of the AuditEvent.
func (AuditEvent) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Annotation{Table: "audit_logs"}}
}

// Fields of the AuditEvent.
func (AuditEvent) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("id").Immutable(),
		field.String("event_id").Unique().Immutable(),
		field.Time("request_time").Immutable(),
		field.String("event_category").Immutable(),
		field.String("event_type").Immutable(),
		field.String("event_status").Immutable(),
		field.String("user_id").Default("").Immutable(),
		field.String("user_email").Default("").Immutable(),
		field.String("account_type").Default("").Immutable(),
		field.String("object_type").Default("").Immutable(),
		field.String("object_id").Default("").Immutable(),
		field.String("request_id").Default("").Immutable(),
		field.String("ip_address").Default("").Immutable(),
		field.String("user_agent").Default("").Immutable(),
		field.String("error_code").Default("").Immutable(),
		field.String("metadata").Default("{}").Immutable(),
	}
}

// Indexes of the AuditEvent.
func (AuditEvent) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("org_id", "request_time"),
		index.Fields("org_id", "id"),
	}
}

// Mixin of the AuditEvent.
func (AuditEvent) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}} }
