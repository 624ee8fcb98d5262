package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/auditexport/auditexport/internal/ids"
)

// ApiKey authenticates a user. Only a hash of the secret is stored.
type ApiKey struct {
	ent.Schema
}

// Fields of the ApiKey.
func (ApiKey) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.APIKey)).Immutable(),
		field.String("name").Default(""),
		field.String("prefix").Unique().Immutable(),
		field.Bytes("secret_hash").Sensitive().Immutable(),
		field.String("user_id").Immutable(),
		field.Time("revoke_time").Optional().Nillable(),
		field.Time("last_used_time").Optional().Nillable(),
	}
}

// Edges of the ApiKey.
func (ApiKey) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("api_keys").Field("user_id").Unique().Required().Immutable(),
	}
}

// Mixin of the ApiKey.
func (ApiKey) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }
