package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"

	"github.com/auditexport/auditexport/internal/ids"
)

// Organization is a tenant. It is not itself tenant-scoped.
type Organization struct {
	ent.Schema
}

// Fields of the Organization.
func (Organization) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Org)).Immutable(),
		field.String("name").NotEmpty(),
		field.Bool("is_default").Default(false),
	}
}

// Mixin of the Organization.
func (Organization) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }
