package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/auditexport/auditexport/internal/elemspec"
	"github.com/auditexport/auditexport/internal/ids"
)

// Workbook holds table elements. Unsaved workbooks are explorations.
type Workbook struct {
	ent.Schema
}

// Fields of the Workbook.
func (Workbook) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Workbook)).Immutable(),
		field.String("name").Default(""),
		field.String("folder").Default(""),
		field.Bool("saved").Default(false),
		field.String("owner_id"),
	}
}

// Edges of the Workbook.
func (Workbook) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("elements", Element.Type),
	}
}

// Indexes of the Workbook.
func (Workbook) Indexes() []ent.Index {
	return []ent.Index{index.Fields("org_id", "saved")}
}

// Mixin of the Workbook.
func (Workbook) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }

// Element is a table element of a workbook.
type Element struct {
	ent.Schema
}

// Fields of the Element.
func (Element) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Element)).Immutable(),
		field.String("workbook_id").Immutable(),
		field.String("name").NotEmpty(),
		field.Int("position").Default(0),
		field.String("connection_id"),
		field.String("table_name"),
		field.JSON("spec", elemspec.Spec{}),
	}
}

// Edges of the Element.
func (Element) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("workbook", Workbook.Type).Ref("elements").Field("workbook_id").Unique().Required().Immutable(),
	}
}

// Mixin of the Element.
func (Element) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }
