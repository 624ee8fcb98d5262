package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/mail"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Outbox policy.
const (
	leaseFor      = 2 * time.Minute    // a sender holds a mail this long (a send is bounded to 30 s)
	firstRetry    = 30 * time.Second   // then doubling per attempt
	maxRetryDelay = time.Hour          // between two attempts at most
	giveUpAfter   = 7 * 24 * time.Hour // a mail not accepted after this is abandoned (logged)
	keepSent      = 7 * 24 * time.Hour // sent mails are deleted after this
)

// Outbox delivers the mails Notifier.Send stored (table mail_outbox). Every
// replica may run it: a mail is leased by one sender at a time (a
// conditional UPDATE), and marked sent once an SMTP server accepted it, so
// it is sent once unless a sender dies between the server's acceptance and
// the mark — then it is sent again with the same Message-ID.
type Outbox struct {
	db    *ent.Client
	mail  *Mailer
	log   *slog.Logger
	owner string
	now   func() time.Time
}

// NewOutbox returns the outbox of db, delivering through m.
func NewOutbox(db *ent.Client, m *Mailer, log *slog.Logger) *Outbox {
	return &Outbox{db: db, mail: m, log: log, owner: ids.Process(), now: time.Now}
}

// WithClock sets the outbox's clock (tests).
func (o *Outbox) WithClock(now func() time.Time) *Outbox { o.now = now; return o }

func (o *Outbox) enqueue(ctx context.Context, m Message) (*ent.Mail, error) {
	id := ids.New(ids.Mail)
	return o.db.Mail.Create().SetID(id).SetTo(m.To).SetSubject(m.Subject).SetBody(m.Body).
		SetMessageID(id + "@auditexport").SetNextAttemptTime(o.now().UTC()).Save(tenant.System(ctx))
}

// attempt leases row and sends it; it returns the send's error (the mail
// is then due again after its backoff) or nil (sent, or leased by another
// sender meanwhile).
func (o *Outbox) attempt(ctx context.Context, row *ent.Mail) error {
	sctx := tenant.System(context.WithoutCancel(ctx))
	now := o.now().UTC()
	n, err := o.db.Mail.Update().Where(mail.ID(row.ID), mail.SentTimeIsNil(),
		mail.Or(mail.LeaseUntilIsNil(), mail.LeaseUntilLT(now))).
		SetLeaseOwner(o.owner).SetLeaseUntil(now.Add(leaseFor)).AddAttempts(1).Save(sctx)
	if err != nil {
		return fmt.Errorf("lease mail: %w", err)
	}
	if n == 0 {
		return nil // sent or being sent elsewhere
	}
	attempts := row.Attempts + 1
	sendErr := o.mail.send(ctx, Message{To: row.To, Subject: row.Subject, Body: row.Body}, row.MessageID)
	upd := o.db.Mail.UpdateOneID(row.ID).Where(mail.LeaseOwner(o.owner)).ClearLeaseUntil().SetLeaseOwner("")
	if sendErr == nil {
		upd.SetSentTime(o.now().UTC()).SetLastError("")
	} else {
		upd.SetLastError(truncate(sendErr.Error(), 1000)).SetNextAttemptTime(o.now().UTC().Add(retryDelay(attempts)))
	}
	if err := upd.Exec(sctx); err != nil && !ent.IsNotFound(err) {
		return errors.Join(sendErr, fmt.Errorf("record mail attempt: %w", err))
	}
	return sendErr
}

func retryDelay(attempts int) time.Duration {
	d := firstRetry
	for i := 1; i < attempts && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Deliver sends every due mail once (oldest first), abandons mails older
// than giveUpAfter, deletes sent mails older than keepSent, and returns how
// many mails it sent and how many are still waiting.
func (o *Outbox) Deliver(ctx context.Context) (sent, waiting int, err error) {
	if !o.mail.Enabled() {
		return 0, 0, nil
	}
	sctx := tenant.System(ctx)
	now := o.now().UTC()
	if _, err := o.db.Mail.Delete().Where(mail.SentTimeNotNil(), mail.SentTimeLT(now.Add(-keepSent))).Exec(sctx); err != nil {
		return 0, 0, err
	}
	stale, err := o.db.Mail.Query().Where(mail.SentTimeIsNil(), mail.CreateTimeLT(now.Add(-giveUpAfter))).All(sctx)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range stale {
		o.log.Error("mail abandoned: no SMTP server accepted it", "mail_id", m.ID, "subject", m.Subject,
			"attempts", m.Attempts, "last_error", m.LastError, "created", m.CreateTime)
		if err := o.db.Mail.DeleteOneID(m.ID).Exec(sctx); err != nil && !ent.IsNotFound(err) {
			return 0, 0, err
		}
	}
	due, err := o.db.Mail.Query().Where(mail.SentTimeIsNil(), mail.NextAttemptTimeLTE(now),
		mail.Or(mail.LeaseUntilIsNil(), mail.LeaseUntilLT(now))).
		Order(ent.Asc(mail.FieldCreateTime)).Limit(100).All(sctx)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range due {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := o.attempt(actx, m)
		cancel()
		if err != nil {
			o.log.Warn("mail delivery failed; retried later", "mail_id", m.ID, "attempts", m.Attempts+1, "err", err.Error())
			continue
		}
		sent++
	}
	waiting, err = o.db.Mail.Query().Where(mail.SentTimeIsNil()).Count(sctx)
	return sent, waiting, err
}

// Run delivers due mails every interval until ctx ends.
func (o *Outbox) Run(ctx context.Context, interval time.Duration) {
	if !o.mail.Enabled() {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if sent, waiting, err := o.Deliver(ctx); err != nil && ctx.Err() == nil {
			o.log.Error("mail outbox pass failed", "err", err.Error())
		} else if sent > 0 {
			o.log.Info("mail outbox delivered", "sent", sent, "waiting", waiting)
		}
	}
}
