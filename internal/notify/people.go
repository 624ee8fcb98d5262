package notify

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/reqid"
)

// Allowed says whether a schedule may mail addr: a user of the organization
// (members: lower-cased addresses) or an address in one of the operator's
// domains (--notify-allowed-domains). Otherwise anyone who may create a
// schedule could make the server mail arbitrary outsiders.
func Allowed(addr string, members map[string]bool, domains []string) bool {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if members[addr] {
		return true
	}
	at := strings.LastIndex(addr, "@")
	if at < 0 {
		return false
	}
	for _, d := range domains {
		if strings.EqualFold(addr[at+1:], strings.TrimPrefix(strings.TrimSpace(d), "@")) {
			return true
		}
	}
	return false
}

// Notifier mails the people of schedules — the failure of a run, an
// auto-pause, the pause that an integration change caused — so that every
// such mail finds its recipients by the same rule and logs a failure the
// same way.
type Notifier struct {
	db      *ent.Client
	mail    *Mailer
	domains []string
	log     *slog.Logger
}

// NewNotifier returns a notifier; domains are --notify-allowed-domains.
func NewNotifier(db *ent.Client, mail *Mailer, domains []string, log *slog.Logger) *Notifier {
	return &Notifier{db: db, mail: mail, domains: domains, log: log}
}

// Enabled reports whether mail is configured.
func (n *Notifier) Enabled() bool { return n.mail.Enabled() }

// People are a schedule's recipients: its owner's address ("" if the owner
// is gone) and its notify_emails that are still allowed (a user who left
// the organization or a domain the operator removed is dropped: schedules
// saved before a change mail nobody outside it).
type People struct {
	Owner  string
	Notify []string
}

// All is the owner and the notify addresses, each address once.
func (p People) All() []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range append([]string{p.Owner}, p.Notify...) {
		if k := strings.ToLower(strings.TrimSpace(a)); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// PeopleOf returns the people of each schedule, by schedule id (ctx carries
// the schedules' organization: one query for its users).
func (n *Notifier) PeopleOf(ctx context.Context, schedules ...*ent.Schedule) (map[string]People, error) {
	users, err := n.db.User.Query().Select(user.FieldID, user.FieldEmail).All(ctx)
	if err != nil {
		return nil, err
	}
	members, emailOf := map[string]bool{}, map[string]string{}
	for _, u := range users {
		members[strings.ToLower(u.Email)] = true
		emailOf[u.ID] = u.Email
	}
	out := make(map[string]People, len(schedules))
	for _, sc := range schedules {
		p := People{Owner: emailOf[sc.OwnerID]}
		for _, e := range sc.NotifyEmails {
			if Allowed(e, members, n.domains) {
				p.Notify = append(p.Notify, e)
			}
		}
		out[sc.ID] = p
	}
	return out, nil
}

// Send stores m in the durable outbox and delivers it (bounded to 30 s,
// even when ctx is canceled: the event it reports has happened). A failed
// delivery is logged with attrs and ctx's request id and left in the
// outbox, which Outbox.Run retries with backoff until an SMTP server
// accepts it. If the outbox cannot be written (the database is down), the
// mail is sent directly. A notice is never worth failing the operation it
// reports.
func (n *Notifier) Send(ctx context.Context, m Message, attrs ...any) {
	if len(m.To) == 0 {
		return
	}
	if !n.mail.Enabled() {
		_ = n.mail.Send(ctx, m) // logs at debug level
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if id := reqid.From(ctx); id != "" {
		attrs = append(attrs, "request_id", id)
	}
	o := NewOutbox(n.db, n.mail, n.log)
	row, err := o.enqueue(sctx, m)
	if err != nil {
		n.log.WarnContext(ctx, "mail outbox unavailable; sending directly", append([]any{"subject", m.Subject, "err", err.Error()}, attrs...)...)
		if err := n.mail.Send(sctx, m); err != nil {
			n.log.ErrorContext(ctx, "sending notification failed", append([]any{"subject", m.Subject, "err", err.Error()}, attrs...)...)
		}
		return
	}
	if err := o.attempt(sctx, row); err != nil {
		n.log.ErrorContext(ctx, "sending notification failed; kept in the outbox and retried", append([]any{"subject", m.Subject, "mail_id", row.ID, "err", err.Error()}, attrs...)...)
	}
}
