package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/auditexport/auditexport/internal/ids"
)

// Connection is a data source. The built-in "Audit Logs" connection
// (con_audit_logs) is shared by all organizations; each organization's
// AUDIT_LOGS rows are its own.
type Connection struct {
	ent.Schema
}

// Fields of the Connection.
func (Connection) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").Immutable(),
		field.String("name").NotEmpty(),
	}
}

// Mixin of the Connection.
func (Connection) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// ConnectionGrant gives a user access to a connection.
type ConnectionGrant struct {
	ent.Schema
}

// Fields of the ConnectionGrant.
func (ConnectionGrant) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Grant)).Immutable(),
		field.String("user_id").Immutable(),
		field.String("connection_id").Immutable(),
	}
}

// Edges of the ConnectionGrant.
func (ConnectionGrant) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("grants").Field("user_id").Unique().Required().Immutable(),
	}
}

// Indexes of the ConnectionGrant.
func (ConnectionGrant) Indexes() []ent.Index {
	return []ent.Index{index.Fields("user_id", "connection_id").Unique()}
}

// Mixin of the ConnectionGrant.
func (ConnectionGrant) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }
