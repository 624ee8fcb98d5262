package export_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/auditevent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/testenv"
)

// immEnv is one organization with a LOCAL integration and a schedule whose
// object key does not change between runs (no tokens): the setup in which
// a later export would replace an earlier one if uploads were not
// conditional creates.
type immEnv struct {
	t      *testing.T
	d      *db.DB
	ctx    context.Context
	orgID  string
	dir    string
	sc     *ent.Schedule
	first  string // the QUEUED scheduled run queuedRun made
	period time.Time
}

func newImmEnv(t *testing.T, d *db.DB, mode schedule.Mode) *immEnv {
	t.Helper()
	ctx, orgID, runID, dir := queuedRun(t, d, schedule.StateACTIVE, "", exportrun.TriggerSCHEDULED)
	run, err := d.Client.ExportRun.Get(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := d.Client.Schedule.UpdateOneID(run.ScheduleID).SetURI("file://" + dir + "/audit.csv").SetMode(mode).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &immEnv{t: t, d: d, ctx: ctx, orgID: orgID, dir: dir, sc: sc, first: runID, period: *run.PeriodEnd}
	e.record(5)
	return e
}

// record adds n audit events to the organization.
func (e *immEnv) record(n int) {
	e.t.Helper()
	rec := auditlog.NewRecorder(e.d.Client, nil)
	for i := range n {
		if _, err := rec.Record(e.ctx, auditlog.Event{OrgID: e.orgID, Category: "TEST", Type: fmt.Sprintf("EVENT_%d", i)}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// run queues a run of the schedule (a scheduled one for the next period,
// or a Send now) and executes it.
func (e *immEnv) run(trigger exportrun.Trigger) *ent.ExportRun {
	e.t.Helper()
	c := e.d.Client.ExportRun.Create().SetScheduleID(e.sc.ID).SetTrigger(trigger).SetRequestedBy(e.sc.OwnerID)
	if trigger == exportrun.TriggerSCHEDULED {
		start := e.period
		e.period = e.period.Add(time.Hour)
		c.SetPeriodStart(start).SetPeriodEnd(e.period).SetDedupKey(e.period.Format(time.RFC3339))
	}
	r, err := c.Save(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.exec(r.ID)
}

func (e *immEnv) exec(runID string) *ent.ExportRun {
	e.t.Helper()
	executeRun(e.t, e.d, e.ctx, e.orgID, runID, e.dir)
	r, err := e.d.Client.ExportRun.Get(e.ctx, runID)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// requeue hands a finished run back to the queue as a crash after its
// upload (before its outcome was recorded) would: QUEUED, next attempt,
// and an incremental schedule's watermark where it was before the run.
func (e *immEnv) requeue(r *ent.ExportRun) *ent.ExportRun {
	e.t.Helper()
	if err := e.d.Client.ExportRun.UpdateOneID(r.ID).SetState(exportrun.StateQUEUED).SetPhase("QUEUED").
		SetAttempt(r.Attempt + 1).ClearFinishTime().SetChecksum("").SetNote("").Exec(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	if e.sc.Mode == schedule.ModeINCREMENTAL {
		if err := e.d.Client.Schedule.UpdateOneID(e.sc.ID).SetWatermark(r.FromSeq).Exec(e.ctx); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.exec(r.ID)
}

func (e *immEnv) watermark() int64 {
	e.t.Helper()
	sc, err := e.d.Client.Schedule.Get(e.ctx, e.sc.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return sc.Watermark
}

func (e *immEnv) read(uri string) string {
	e.t.Helper()
	b, err := os.ReadFile(strings.TrimPrefix(uri, "file://"))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *immEnv) files() []string {
	e.t.Helper()
	fs, err := filepath.Glob(filepath.Join(e.dir, "*"))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range fs {
		fs[i] = filepath.Base(fs[i])
	}
	return fs
}

func wantState(t *testing.T, r *ent.ExportRun, state exportrun.State, code string) {
	t.Helper()
	if r.State != state || r.ErrorCode != code {
		t.Fatalf("run %s: %s %s (%s %s), want %s %s", r.ID, r.State, r.ErrorCode, r.ErrorMessage, r.ProviderMessage, state, code)
	}
}

func csvRows(s string) int { return strings.Count(s, "\n") - 1 }

// TestObjectsNeverReplaced: an upload never replaces an existing object.
// On both backends, with a LOCAL destination (the conditional create of the
// cloud providers is exercised against the real servers by the
// integration tests):
//   - a retried scheduled period whose object holds the same bytes
//     succeeds without writing (the file is not even re-linked);
//   - the same retry against an object someone changed fails
//     OBJECT_EXISTS and leaves the object as it is;
//   - an incremental schedule's next period on the same key fails
//     OBJECT_EXISTS without moving the watermark, and its rows arrive with
//     the first run that can store them;
//   - a Send now on a taken key writes next to it under a distinct key
//     (run id before the extension) and says so in the run's note;
//   - the key created by someone else between the existence check and the
//     upload: the conditional create refuses, a scheduled run fails, a
//     Send now moves to its distinct key.
func TestObjectsNeverReplaced(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		t.Run("scheduled retry", func(t *testing.T) {
			e := newImmEnv(t, d, schedule.ModeSNAPSHOT)
			r1 := e.exec(e.first)
			wantState(t, r1, exportrun.StateSUCCEEDED, "")
			path := filepath.Join(e.dir, "audit.csv")
			before, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			e.record(3) // after the run's window: not part of its period
			r2 := e.requeue(r1)
			wantState(t, r2, exportrun.StateSUCCEEDED, "")
			if r2.Checksum != r1.Checksum || r2.Rows != r1.Rows || r2.ObjectURI != r1.ObjectURI {
				t.Errorf("retry: %s %d rows %s; first attempt %s %d rows %s", r2.Checksum, r2.Rows, r2.ObjectURI, r1.Checksum, r1.Rows, r1.ObjectURI)
			}
			if !strings.Contains(r2.Note, "nothing was written") || r1.Note != "" {
				t.Errorf("notes: first %q, retry %q", r1.Note, r2.Note)
			}
			after, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(before, after) {
				t.Error("the identical object was written again (new inode)")
			}

			// Someone replaced the object: the retry must not restore or
			// overwrite it, and must say which key.
			if err := os.WriteFile(path, []byte("EVENT_ID\nsomething else\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r3 := e.requeue(r2)
			wantState(t, r3, exportrun.StateFAILED, export.ObjectExistsCode)
			if !strings.Contains(r3.ErrorMessage, r1.ObjectURI) {
				t.Errorf("error message %q does not name %s", r3.ErrorMessage, r1.ObjectURI)
			}
			if got := e.read(r1.ObjectURI); got != "EVENT_ID\nsomething else\n" {
				t.Errorf("object after the refused retry: %q", got)
			}
		})

		// Every format and compression encodes the same period to the same
		// bytes on every attempt, or a retry could never recognize its own
		// object (zstd runs with two encoder goroutines).
		for _, f := range []struct {
			format schedule.Format
			comp   schedule.Compression
			name   string
		}{
			{schedule.FormatCSV, schedule.CompressionGZIP, "audit.csv.gz"},
			{schedule.FormatJSONL, schedule.CompressionZSTD, "audit.jsonl.zst"},
			{schedule.FormatPARQUET, schedule.CompressionNONE, "audit.parquet"},
		} {
			t.Run("scheduled retry "+f.name, func(t *testing.T) {
				e := newImmEnv(t, d, schedule.ModeSNAPSHOT)
				var err error
				e.sc, err = d.Client.Schedule.UpdateOneID(e.sc.ID).SetFormat(f.format).SetCompression(f.comp).
					SetURI("file://" + e.dir + "/" + f.name).Save(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				e.record(1000) // more than one 128 KiB zstd block
				r1 := e.exec(e.first)
				wantState(t, r1, exportrun.StateSUCCEEDED, "")
				r2 := e.requeue(r1)
				wantState(t, r2, exportrun.StateSUCCEEDED, "")
				if r2.Checksum != r1.Checksum || !strings.Contains(r2.Note, "nothing was written") {
					t.Errorf("retry: %s note %q; first attempt %s", r2.Checksum, r2.Note, r1.Checksum)
				}
			})
		}

		t.Run("incremental next period and Send now", func(t *testing.T) {
			e := newImmEnv(t, d, schedule.ModeINCREMENTAL)
			r1 := e.exec(e.first)
			wantState(t, r1, exportrun.StateSUCCEEDED, "")
			first := e.read(r1.ObjectURI)
			w1 := e.watermark()
			if w1 != r1.ToSeq || csvRows(first) != 5 {
				t.Fatalf("first run: watermark %d (run to_seq %d), %d rows", w1, r1.ToSeq, csvRows(first))
			}

			e.record(4)
			r2 := e.run(exportrun.TriggerSCHEDULED)
			wantState(t, r2, exportrun.StateFAILED, export.ObjectExistsCode)
			if w := e.watermark(); w != w1 {
				t.Errorf("watermark moved from %d to %d by a run that stored nothing", w1, w)
			}
			if got := e.read(r1.ObjectURI); got != first {
				t.Error("the first export was replaced")
			}

			// The case: a Send now the same day on the same key.
			e.record(3)
			r3 := e.run(exportrun.TriggerSEND_NOW)
			wantState(t, r3, exportrun.StateSUCCEEDED, "")
			want := "file://" + e.dir + "/audit." + r3.ID + ".csv"
			if r3.ObjectURI != want {
				t.Errorf("Send now object %s, want %s", r3.ObjectURI, want)
			}
			if !strings.Contains(r3.Note, r1.ObjectURI) || !strings.Contains(r3.Note, want) {
				t.Errorf("note %q names neither the taken key nor the new one", r3.Note)
			}
			if got := e.read(r1.ObjectURI); got != first {
				t.Error("the Send now replaced the first export")
			}
			// The rows of the failed period and of the Send now's: nothing
			// lost, nothing twice.
			all, err := d.Client.AuditEvent.Query().Where(auditevent.IDLTE(r3.ToSeq)).Count(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := csvRows(e.read(r3.ObjectURI)); got != all-5 || r3.Rows != int64(got) || got < 7 {
				t.Errorf("Send now object has %d rows (run says %d), want the %d after the first export's 5 (4+3 recorded, and the runs' own events)", got, r3.Rows, all-5)
			}
			if w := e.watermark(); w != r3.ToSeq || r3.FromSeq != w1 {
				t.Errorf("watermark %d after the Send now (window %d..%d, previous %d)", w, r3.FromSeq, r3.ToSeq, w1)
			}
			if fs := e.files(); len(fs) != 2 {
				t.Errorf("files %v, want the two exports", fs)
			}
		})

		t.Run("key created during the run", func(t *testing.T) {
			e := newImmEnv(t, d, schedule.ModeSNAPSHOT)
			path := filepath.Join(e.dir, "audit.csv")
			intruder := "EVENT_ID\nwritten by someone else\n"
			defer export.SetBeforeUpload(func(key string) {
				if key == "audit.csv" {
					if err := os.MkdirAll(e.dir, 0o700); err != nil {
						t.Error(err)
					}
					if err := os.WriteFile(path, []byte(intruder), 0o600); err != nil {
						t.Error(err)
					}
				}
			})()
			r1 := e.exec(e.first)
			wantState(t, r1, exportrun.StateFAILED, export.ObjectExistsCode)
			if got := e.read("file://" + path); got != intruder {
				t.Errorf("object after the refused upload: %q", got)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			r2 := e.run(exportrun.TriggerSEND_NOW)
			wantState(t, r2, exportrun.StateSUCCEEDED, "")
			if want := "file://" + e.dir + "/audit." + r2.ID + ".csv"; r2.ObjectURI != want || r2.Note == "" {
				t.Errorf("Send now object %s (note %q), want %s", r2.ObjectURI, r2.Note, want)
			}
			if got := e.read("file://" + path); got != intruder {
				t.Errorf("object after the Send now: %q", got)
			}
			if got := csvRows(e.read(r2.ObjectURI)); int64(got) != r2.Rows || got < 5 {
				t.Errorf("Send now object has %d rows, run says %d", got, r2.Rows)
			}
		})
	})
}
