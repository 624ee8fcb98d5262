package notify_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent/mail"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestOutboxSurvivesSMTPDown: with the SMTP server unreachable (a proxy in
// front of mailpit refusing connections), a notification is kept in the
// outbox with its error instead of being lost; a delivery pass before its
// backoff has passed does not retry it; once SMTP is back, the next pass
// after the backoff delivers it exactly once (with its stored Message-ID),
// and later passes send nothing more. On both backends.
func TestOutboxSurvivesSMTPDown(t *testing.T) {
	mp := testenv.StartMailpit(t)
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		proxy := testenv.StartFaultProxy(t, mp.SMTPAddr)
		proxy.SetMode(testenv.Refuse)
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		m, err := notify.New("smtp://"+proxy.Addr, "auditexport@example.com", log)
		testenv.Must(t, err)
		subject := "run failed " + d.Dialect
		notify.NewNotifier(d.Client, m, nil, log).Send(context.Background(), notify.Message{To: []string{"owner@example.com"}, Subject: subject, Body: "b"})
		if !strings.Contains(buf.String(), "kept in the outbox") {
			t.Errorf("log lacks the outbox notice:\n%s", buf.String())
		}
		sctx := tenant.System(context.Background())
		row, err := d.Client.Mail.Query().Where(mail.Subject(subject)).Only(sctx)
		testenv.Must(t, err)
		if row.SentTime != nil || row.Attempts != 1 || row.LastError == "" {
			t.Fatalf("outbox row after a refused send: %+v", row)
		}

		var clock atomic.Int64
		clock.Store(time.Now().UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		out := notify.NewOutbox(d.Client, m, log).WithClock(now)
		proxy.SetMode(testenv.Pass)
		if sent, waiting, err := out.Deliver(context.Background()); err != nil || sent != 0 || waiting != 1 {
			t.Fatalf("pass before the backoff: sent %d waiting %d (%v), want 0 and 1", sent, waiting, err)
		}
		clock.Add(int64(time.Minute))
		if sent, waiting, err := out.Deliver(context.Background()); err != nil || sent != 1 || waiting != 0 {
			t.Fatalf("pass after SMTP returned: sent %d waiting %d (%v), want 1 and 0", sent, waiting, err)
		}
		got := mp.WaitFor(t, func(msg testenv.Message) bool { return msg.Subject == subject }, 20*time.Second)
		if got.MessageID != row.MessageID {
			t.Errorf("Message-ID %q, want the stored %q", got.MessageID, row.MessageID)
		}
		clock.Add(int64(time.Hour))
		if sent, waiting, err := out.Deliver(context.Background()); err != nil || sent != 0 || waiting != 0 {
			t.Fatalf("a later pass: sent %d waiting %d (%v), want 0 and 0", sent, waiting, err)
		}
		n := 0
		for _, msg := range mp.Messages(t) {
			if msg.Subject == subject {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d mails with subject %q, want exactly 1", n, subject)
		}
	})
}
