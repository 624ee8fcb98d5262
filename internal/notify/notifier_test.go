package notify_test

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/reqid"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestNotifier against a real SMTP server (mailpit): a schedule's people
// are its owner and its notify_emails still allowed, each once; a failed
// send is logged with what it was about and the request id.
func TestNotifier(t *testing.T) {
	d := testenv.SQLiteDB(t)
	mp := testenv.StartMailpit(t)
	o := testenv.NewOrg(t, d, "owner@example.com")
	ctx := o.Ctx
	member, err := d.Client.User.Create().SetEmail("member@example.com").SetAccountType("CREATOR").Save(ctx)
	testenv.Must(t, err)
	newSchedule := func(owner *ent.User, emails ...string) *ent.Schedule {
		t.Helper()
		sc, err := d.Client.Schedule.Create().SetWorkbookID("wbk_x").SetElementID("elm_x").SetName("s").SetOwnerID(owner.ID).
			SetIntegrationName("i").SetURI("file:///x.csv").SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).
			SetCron("0 * * * *").SetTimeZone("UTC").SetNotifyEmails(emails).Save(ctx)
		testenv.Must(t, err)
		return sc
	}
	s1 := newSchedule(o.Admin, "member@example.com", "ops@partner.example", "OWNER@example.com", "out@elsewhere.test")
	s2 := newSchedule(member)

	log := slog.New(slog.DiscardHandler)
	mail, err := notify.New(mp.SMTPURL, "auditexport@example.com", log)
	testenv.Must(t, err)
	n := notify.NewNotifier(d.Client, mail, []string{"partner.example"}, log)
	people, err := n.PeopleOf(ctx, s1, s2)
	testenv.Must(t, err)
	if got, want := people[s1.ID].All(), []string{"owner@example.com", "member@example.com", "ops@partner.example"}; !slices.Equal(got, want) {
		t.Errorf("people of s1: %v, want %v", got, want)
	}
	if p := people[s2.ID]; p.Owner != "member@example.com" || len(p.Notify) != 0 {
		t.Errorf("people of s2: %+v", p)
	}
	n.Send(ctx, notify.Message{To: people[s1.ID].All(), Subject: "to s1", Body: "b"})
	var got []string
	for deadline := time.Now().Add(20 * time.Second); len(got) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, m := range mp.Messages(t) {
			got = append(got, m.Subject+" → "+strings.Join(m.To, ","))
		}
	}
	if want := []string{"to s1 → owner@example.com,member@example.com,ops@partner.example"}; !slices.Equal(got, want) {
		t.Errorf("mails %v, want %v", got, want)
	}

	var buf bytes.Buffer
	down, err := notify.New("smtp://127.0.0.1:1", "auditexport@example.com", log)
	testenv.Must(t, err)
	notify.NewNotifier(d.Client, down, nil, slog.New(slog.NewTextHandler(&buf, nil))).
		Send(reqid.With(ctx, "req_test"), notify.Message{To: []string{"owner@example.com"}, Subject: "unsent", Body: "b"}, "schedule_id", s2.ID)
	for _, w := range []string{"sending notification failed", "request_id=req_test", "schedule_id=" + s2.ID, "subject=unsent"} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, buf.String())
		}
	}
}
