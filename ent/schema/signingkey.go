package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/auditexport/auditexport/internal/ids"
)

// SigningKey is an organization's Ed25519 key pair that signs export
// manifests. The private key is stored envelope-encrypted with the master
// keyring (like integration credentials); the public key is served so an
// auditor can verify exports offline. The newest key without retire_time
// signs; rotated keys are retired, never deleted, so old manifests still
// verify.
type SigningKey struct {
	ent.Schema
}

// Fields of the SigningKey.
func (SigningKey) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.SigningKey)).Immutable(),
		field.String("algorithm").Default("ED25519").Immutable(),
		field.Bytes("public_key").Immutable(),
		field.Bytes("private_key_ciphertext").Sensitive(),
		field.Time("retire_time").Optional().Nillable(),
	}
}

// Indexes of the SigningKey.
func (SigningKey) Indexes() []ent.Index {
	return []ent.Index{index.Fields("org_id", "create_time")}
}

// Mixin of the SigningKey.
func (SigningKey) Mixin() []ent.Mixin { return []ent.Mixin{OrgMixin{}, TimeMixin{}} }
