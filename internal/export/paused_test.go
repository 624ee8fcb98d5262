package export_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/secrets"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestQueuedScheduledRunOfPausedSchedule: a scheduled run that was queued
// before its schedule was paused because its integration changed ends
// CANCELED (SCHEDULE_PAUSED) without writing anything, while the same run
// of an active schedule (the control) writes its file. A user's pause takes
// effect from the next period (the due run delivers), and Send now on a
// paused schedule is the user's explicit request.
func TestQueuedScheduledRunOfPausedSchedule(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		for _, tc := range []struct {
			state     schedule.State
			reason    schedule.PauseReason
			trigger   exportrun.Trigger
			wantState exportrun.State
			wantFile  bool
		}{
			{schedule.StateACTIVE, "", exportrun.TriggerSCHEDULED, exportrun.StateSUCCEEDED, true},
			{schedule.StatePAUSED, schedule.PauseReasonINTEGRATION_UPDATED, exportrun.TriggerSCHEDULED, exportrun.StateCANCELED, false},
			{schedule.StatePAUSED, schedule.PauseReasonINTEGRATION_DELETED, exportrun.TriggerSCHEDULED, exportrun.StateCANCELED, false},
			{schedule.StatePAUSED, schedule.PauseReasonUSER, exportrun.TriggerSCHEDULED, exportrun.StateSUCCEEDED, true},
			{schedule.StatePAUSED, schedule.PauseReasonINTEGRATION_UPDATED, exportrun.TriggerSEND_NOW, exportrun.StateSUCCEEDED, true},
		} {
			t.Run(string(tc.state)+"_"+string(tc.reason)+"_"+string(tc.trigger), func(t *testing.T) {
				ctx, orgID, runID, dir := queuedRun(t, d, tc.state, tc.reason, tc.trigger)
				executeRun(t, d, ctx, orgID, runID, dir)

				run, err := d.Client.ExportRun.Get(ctx, runID)
				if err != nil {
					t.Fatal(err)
				}
				if run.State != tc.wantState {
					t.Fatalf("run state = %s (%s: %s), want %s", run.State, run.ErrorCode, run.ErrorMessage, tc.wantState)
				}
				if tc.wantState == exportrun.StateCANCELED && run.ErrorCode != "SCHEDULE_PAUSED" {
					t.Errorf("error code = %q, want SCHEDULE_PAUSED", run.ErrorCode)
				}
				files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
				if got := len(files) == 1; got != tc.wantFile {
					t.Errorf("files written: %v, want a file: %v", files, tc.wantFile)
				}
				sc, err := d.Client.Schedule.Get(ctx, run.ScheduleID)
				if err != nil {
					t.Fatal(err)
				}
				if sc.ConsecutiveFailures != 0 {
					t.Errorf("consecutive failures = %d: a canceled run is not a failure", sc.ConsecutiveFailures)
				}
			})
		}
	})
}

// executeRun executes a stored run to its end on a runner of its own
// (without mail).
// dir is the run's LOCAL directory, <local root>/<org id>/out.
func executeRun(t *testing.T, d *db.DB, ctx context.Context, orgID, runID, dir string) {
	t.Helper()
	r := localRunner(t, d, dir)
	r.Execute(ctx, claimedRow(t, d, ctx, runID))
	r.Close(ctx)
}

// localRunner is a runner without mail whose LOCAL root holds dir,
// <local root>/<org id>/out.
func localRunner(t *testing.T, d *db.DB, dir string) *export.Runner {
	t.Helper()
	return localRunnerWith(t, d, dir, nil, export.Config{})
}

// localRunnerWith is localRunner signing manifests with keys (nil: none),
// with cfg (its LOCAL root set here).
func localRunnerWith(t *testing.T, d *db.DB, dir string, keys *secrets.Keyring, cfg export.Config) *export.Runner {
	t.Helper()
	mail, err := notify.New("", "auditexport@localhost", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Local = destination.LocalDirs{Root: filepath.Dir(filepath.Dir(dir))}
	return export.NewRunner(d, keys, mail, auditlog.NewRecorder(d.Client, slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler), cfg)
}

// queuedRun stores an organization with a LOCAL integration, a saved
// workbook over AUDIT_LOGS, a schedule in state (paused for reason) and
// one QUEUED run.
func queuedRun(t *testing.T, d *db.DB, state schedule.State, reason schedule.PauseReason, trigger exportrun.Trigger) (ctx context.Context, orgID, runID, dir string) {
	t.Helper()
	org, err := d.Client.Organization.Create().SetName("o").Save(tenant.System(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	ctx = tenant.WithOrg(context.Background(), org.ID)
	u, err := d.Client.User.Create().SetEmail("owner@example.com").SetAccountType("ADMIN").Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// <local root>/<org id>/out: the organization's own LOCAL directory.
	dir = filepath.Join(t.TempDir(), org.ID, "out")
	in, err := d.Client.StorageIntegration.Create().SetName("local").SetProvider("LOCAL").
		SetDestination("file://" + dir + "/").SetExternalID("x").SetCreatorID(u.ID).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := d.Client.Workbook.Create().SetOwnerID(u.ID).SetSaved(true).SetName("wb").Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	el, err := d.Client.Element.Create().SetWorkbookID(wb.ID).SetName(auditlog.TableName).
		SetConnectionID(auditlog.ConnectionID).SetTableName(auditlog.TableName).SetSpec(auditlog.Spec{}).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := d.Client.Schedule.Create().SetWorkbookID(wb.ID).SetElementID(el.ID).SetName("s").SetOwnerID(u.ID).
		SetIntegrationID(in.ID).SetIntegrationName(in.Name).SetURI("file://" + dir + "/{run_id}.csv").
		SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).SetCron("0 * * * *").SetTimeZone("UTC").
		SetState(state)
	if reason != "" {
		sc.SetPauseReason(reason)
	}
	s, err := sc.Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Hour)
	run := d.Client.ExportRun.Create().SetScheduleID(s.ID).SetTrigger(trigger).SetRequestedBy(u.ID)
	if trigger == exportrun.TriggerSCHEDULED {
		run.SetPeriodStart(end.Add(-time.Hour)).SetPeriodEnd(end).SetDedupKey(end.Format(time.RFC3339))
	}
	r, err := run.Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, org.ID, r.ID, dir
}

// claimedRow is run runID's row, as the dispatcher hands a claimed run to
// Runner.Execute.
func claimedRow(t *testing.T, d *db.DB, ctx context.Context, runID string) *ent.ExportRun {
	t.Helper()
	run, err := d.Client.ExportRun.Get(ctx, runID)
	testenv.Must(t, err)
	return run
}
