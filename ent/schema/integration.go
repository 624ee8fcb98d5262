package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/auditexport/auditexport/internal/ids"
)

// StorageIntegration is a credential plus a base location in cloud storage.
type StorageIntegration struct {
	ent.Schema
}

// Fields of the StorageIntegration.
func (StorageIntegration) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Integration)).Immutable(),
		field.String("name").NotEmpty(),
		field.Enum("provider").Values("S3", "GCS", "AZURE_BLOB", "LOCAL").Immutable(),
		field.String("destination").NotEmpty(),
		field.String("region").Default(""),
		field.String("endpoint").Default(""),
		// Envelope-encrypted credentials (internal/secrets); never plaintext.
		field.Bytes("credentials_ciphertext").Optional().Sensitive(),
		// Which oneof member is stored, e.g. "aws_access_key"; not secret.
		field.String("credential_kind").Default(""),
		// S3 external ID for role assumption, generated per integration.
		field.String("external_id").Immutable(),
		field.String("creator_id").Immutable(),
		// S3 Object Lock for every upload ("" none, GOVERNANCE or
		// COMPLIANCE) and its retention in days; set at creation.
		field.String("object_lock_mode").Default("").Immutable(),
		field.Int("object_lock_days").Default(0).Immutable(),
	}
}

// Indexes of the StorageIntegration.
func (StorageIntegration) Indexes() []ent.Index {
	return []ent.Index{index.Fields("org_id", "name").Unique()}
}

// Mixin of the StorageIntegration.
func (StorageIntegration) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }
