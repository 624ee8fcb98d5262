package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/auditexport/auditexport/internal/ids"
)

// Mail is a notification in the durable outbox (table mail_outbox): it is
// stored before it is sent, and kept with its last error until an SMTP
// server accepted it, so a mail server that is down delays a notice but
// never loses it (see internal/notify).
type Mail struct {
	ent.Schema
}

// Fields of the Mail.
func (Mail) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(ids.Func(ids.Mail)).Immutable(),
		field.Strings("to").Immutable(),
		field.String("subject").Immutable(),
		field.Text("body").Immutable(),
		// The Message-ID header, the same at every attempt: a receiver
		// that got a mail whose acceptance we never heard of (a crash or a
		// timeout after the DATA phase) can tell the retry is a duplicate.
		field.String("message_id").Immutable(),
		field.Int("attempts").Default(0),
		field.Time("next_attempt_time"),
		// A replica sending the mail holds it until lease_until.
		field.String("lease_owner").Default(""),
		field.Time("lease_until").Optional().Nillable(),
		field.Time("sent_time").Optional().Nillable(),
		field.String("last_error").Default(""),
	}
}

// Indexes of the Mail.
func (Mail) Indexes() []ent.Index {
	return []ent.Index{index.Fields("sent_time", "next_attempt_time")}
}

// Mixin of the Mail.
func (Mail) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Annotations of the Mail.
func (Mail) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Annotation{Table: "mail_outbox"}}
}
