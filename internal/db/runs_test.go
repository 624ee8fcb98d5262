package db_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

type runsEnv struct {
	t   *testing.T
	d   *db.DB
	ctx context.Context // the organization's
}

func (e runsEnv) schedule(watermark int64) *ent.Schedule {
	e.t.Helper()
	sc, err := e.d.Client.Schedule.Create().SetWorkbookID("wb").SetElementID("el").SetName("s").SetOwnerID("usr").
		SetIntegrationName("i").SetURI("local://x/y.csv").SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).
		SetCron("0 * * * *").SetTimeZone("UTC").SetWatermark(watermark).SetConsecutiveFailures(3).Save(e.ctx)
	testenv.Must(e.t, err)
	sc, err = e.d.Client.Schedule.Get(e.ctx, sc.ID) // as stored (PostgreSQL keeps microseconds)
	testenv.Must(e.t, err)
	return sc
}

func (e runsEnv) run(sc *ent.Schedule, requestedBy string) *ent.ExportRun {
	e.t.Helper()
	r, err := e.d.Client.ExportRun.Create().SetScheduleID(sc.ID).SetTrigger(exportrun.TriggerSEND_NOW).
		SetRequestedBy(requestedBy).SetChecksum("old-sum").SetErrorCode("OLD").Save(e.ctx)
	testenv.Must(e.t, err)
	return r
}

// TestRunsStartAndEnd: 40 callers at once each start a run, then record an
// outcome (every state, two runs per schedule so that one batch may hold a
// schedule twice). Every field is as the runner's ent updates wrote it:
// the start's plan; the outcome's state, counts, kept or overwritten
// columns, a start time only where none was; each schedule's failure
// streak counted per run, its last success and watermark; the returned
// rows match the stored ones. A run of another organization, or a missing
// one, fails its own caller only.
func TestRunsStartAndEnd(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		org, err := d.Client.Organization.Create().SetName("acme").Save(tenant.System(context.Background()))
		testenv.Must(t, err)
		e := runsEnv{t: t, d: d, ctx: tenant.WithOrg(context.Background(), org.ID)}
		const n = 40
		scheds := make([]*ent.Schedule, n/2)
		for i := range scheds {
			scheds[i] = e.schedule(int64(100 * i))
		}
		runs := make([]*ent.ExportRun, n)
		for i := range runs {
			runs[i] = e.run(scheds[i/2], fmt.Sprintf("usr_%d", i))
		}
		t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
		states := []string{"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}
		var wg sync.WaitGroup
		errs := make([]error, n)
		ended := make([]db.RunEnded, n)
		for i := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ps, pe := t0.Add(-time.Hour), t0
				if i%5 != 4 { // every fifth run never started: its end is its start
					if err := d.Runs.Start(e.ctx, db.RunStart{RunID: runs[i].ID, Phase: "QUERYING", Time: t0.Add(time.Duration(i) * time.Second),
						ObjectURI: fmt.Sprintf("local://x/%d.csv", i), FromSeq: int64(i), ToSeq: int64(i + 10), PeriodStart: ps, PeriodEnd: pe}); err != nil {
						errs[i] = err
						return
					}
				}
				state := states[i%4]
				end := db.RunEnd{RunID: runs[i].ID, State: state, Time: t0.Add(time.Hour + time.Duration(i)*time.Second),
					Rows: int64(i * 7), Bytes: int64(i * 11), ScheduleID: scheds[i/2].ID}
				switch state {
				case "SUCCEEDED":
					sum, note := fmt.Sprintf("sum-%d", i), "note"
					end.Checksum, end.Note, end.Effect = &sum, &note, db.ScheduleSuccess
					end.Watermark = &db.Watermark{From: int64(100 * (i / 2)), To: int64(100*(i/2) + 50)}
				case "SKIPPED":
					end.ObjectURI, end.Effect = new(string), db.ScheduleSuccess
				case "FAILED":
					end.Error, end.Effect = &db.RunEndError{Code: "PROVIDER_DENIED", Message: "m", ProviderMessage: "p"}, db.ScheduleFailure
				}
				ended[i], errs[i] = d.Runs.End(e.ctx, end)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		}
		for i, r := range runs {
			got, err := d.Client.ExportRun.Get(e.ctx, r.ID)
			testenv.Must(t, err)
			state := states[i%4]
			finish := t0.Add(time.Hour + time.Duration(i)*time.Second)
			start := t0.Add(time.Duration(i) * time.Second)
			if i%5 == 4 {
				start = finish
			}
			if got.State.String() != state || got.Phase != state || got.FinishTime == nil || !got.FinishTime.Equal(finish) ||
				got.StartTime == nil || !got.StartTime.Equal(start) || got.HeartbeatTime == nil || !got.HeartbeatTime.Equal(finish) {
				t.Fatalf("run %d: %s/%s start %v finish %v heartbeat %v, want %s start %v finish %v", i, got.State, got.Phase,
					got.StartTime, got.FinishTime, got.HeartbeatTime, state, start, finish)
			}
			if !got.UpdateTime.After(r.UpdateTime) {
				t.Fatalf("run %d: update_time %v not moved from %v", i, got.UpdateTime, r.UpdateTime)
			}
			if got.Rows != int64(i*7) || got.Bytes != int64(i*11) {
				t.Fatalf("run %d: rows %d bytes %d", i, got.Rows, got.Bytes)
			}
			wantURI, wantSum, wantCode := fmt.Sprintf("local://x/%d.csv", i), "old-sum", "OLD"
			if i%5 == 4 {
				wantURI = ""
			}
			switch state {
			case "SUCCEEDED":
				wantSum = fmt.Sprintf("sum-%d", i)
			case "SKIPPED":
				wantURI = ""
			case "FAILED":
				wantCode = "PROVIDER_DENIED"
			}
			if got.ObjectURI != wantURI || got.Checksum != wantSum || got.ErrorCode != wantCode {
				t.Fatalf("run %d (%s): uri %q sum %q code %q, want %q %q %q", i, state, got.ObjectURI, got.Checksum, got.ErrorCode, wantURI, wantSum, wantCode)
			}
			if i%5 != 4 && (got.FromSeq != int64(i) || got.ToSeq != int64(i+10) || got.PeriodEnd == nil || !got.PeriodEnd.Equal(t0)) {
				t.Fatalf("run %d: seqs %d..%d period end %v", i, got.FromSeq, got.ToSeq, got.PeriodEnd)
			}
			want := db.EndedRun{ID: got.ID, ScheduleID: got.ScheduleID, RequestedBy: fmt.Sprintf("usr_%d", i), Trigger: "SEND_NOW",
				ObjectURI: got.ObjectURI, Attempt: 1, Rows: got.Rows, Bytes: got.Bytes}
			if ended[i].Run != want {
				t.Fatalf("run %d: End returned %+v, want %+v", i, ended[i].Run, want)
			}
			if ended[i].Schedule == nil || ended[i].Schedule.ID != scheds[i/2].ID || ended[i].Schedule.State != "ACTIVE" {
				t.Fatalf("run %d: End returned schedule %+v", i, ended[i].Schedule)
			}
		}
		// Schedule k ended runs 2k and 2k+1: states[2k%4] and states[(2k+1)%4],
		// i.e. SUCCEEDED then FAILED (k even) or SKIPPED then CANCELED (k odd),
		// in whichever order the two committed.
		for k, sc := range scheds {
			got, err := d.Client.Schedule.Get(e.ctx, sc.ID)
			testenv.Must(t, err)
			a, b := ended[2*k].Schedule.ConsecutiveFailures, ended[2*k+1].Schedule.ConsecutiveFailures
			if k%2 == 0 {
				// success resets 3 to 0, failure adds one: 0 then 1, or 4 then 0.
				if !(a == 0 && b == 1 && got.ConsecutiveFailures == 1) && !(b == 4 && a == 0 && got.ConsecutiveFailures == 0) {
					t.Fatalf("schedule %d: failures %d, returned %d (success) and %d (failure)", k, got.ConsecutiveFailures, a, b)
				}
				if got.Watermark != int64(100*k+50) || !ended[2*k].WatermarkMoved {
					t.Fatalf("schedule %d: watermark %d (moved %v), want %d", k, got.Watermark, ended[2*k].WatermarkMoved, 100*k+50)
				}
			} else {
				// a skip resets 3 to 0, a cancel keeps the streak: 0 then 0, or 3 then 0.
				if got.ConsecutiveFailures != 0 || a != 0 || (b != 0 && b != 3) {
					t.Fatalf("schedule %d: failures %d, returned %d and %d", k, got.ConsecutiveFailures, a, b)
				}
				if got.Watermark != int64(100*k) {
					t.Fatalf("schedule %d: watermark %d moved", k, got.Watermark)
				}
			}
			if got.LastRunID != runs[2*k].ID && got.LastRunID != runs[2*k+1].ID {
				t.Fatalf("schedule %d: last run %q", k, got.LastRunID)
			}
			if got.LastSuccessTime == nil || !got.UpdateTime.Equal(sc.UpdateTime) {
				t.Fatalf("schedule %d: last success %v, update_time %v (was %v: bookkeeping must not move it)", k, got.LastSuccessTime, got.UpdateTime, sc.UpdateTime)
			}
		}

		// Another organization's run, and a run that does not exist: their
		// own callers fail, concurrent ones do not; nothing of theirs is
		// written (their schedule's bookkeeping neither).
		other, err := d.Client.Organization.Create().SetName("other").Save(tenant.System(context.Background()))
		testenv.Must(t, err)
		oe := runsEnv{t: t, d: d, ctx: tenant.WithOrg(context.Background(), other.ID)}
		osc := oe.schedule(0)
		orun := oe.run(osc, "usr_other")
		own := e.run(scheds[0], "usr_again")
		errs = make([]error, 3)
		for i, id := range []string{orun.ID, "run_missing", own.ID} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = d.Runs.End(e.ctx, db.RunEnd{RunID: id, State: "FAILED", Time: t0, ScheduleID: osc.ID, Effect: db.ScheduleFailure})
			}()
		}
		wg.Wait()
		if !errors.Is(errs[0], db.ErrRunNotFound) || !errors.Is(errs[1], db.ErrRunNotFound) || errs[2] != nil {
			t.Fatalf("errors %v", errs)
		}
		if got, _ := d.Client.ExportRun.Get(oe.ctx, orun.ID); got.State != exportrun.StateQUEUED {
			t.Fatalf("another organization's run recorded %s", got.State)
		}
		if got, _ := d.Client.Schedule.Get(oe.ctx, osc.ID); got.ConsecutiveFailures != 3 || got.LastRunID != "" {
			t.Fatalf("another organization's schedule: failures %d last run %q", got.ConsecutiveFailures, got.LastRunID)
		}
		if err := d.Runs.Start(e.ctx, db.RunStart{RunID: orun.ID, Time: t0}); !errors.Is(err, db.ErrRunNotFound) {
			t.Fatalf("starting another organization's run: %v", err)
		}
		if _, err := d.Runs.End(context.Background(), db.RunEnd{RunID: own.ID}); err == nil {
			t.Fatal("an outcome recorded without an organization in context")
		}
	})
}

// TestRunsOneBatch: one batch ends three runs of one schedule (failed,
// failed, succeeded), a run of another schedule and a run that does not
// exist. Each run sees its schedule as its own outcome left it (failures
// 4, 5, then 0: written in rounds, none lost to the others); the missing
// run's caller alone gets ErrRunNotFound and its schedule is not counted.
func TestRunsOneBatch(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		org, err := d.Client.Organization.Create().SetName("acme").Save(tenant.System(context.Background()))
		testenv.Must(t, err)
		e := runsEnv{t: t, d: d, ctx: tenant.WithOrg(context.Background(), org.ID)}
		a, b := e.schedule(10), e.schedule(0)
		r1, r2, r3, r4 := e.run(a, ""), e.run(a, ""), e.run(a, ""), e.run(b, "")
		t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
		fail := func(id string, sc *ent.Schedule) db.RunEnd {
			return db.RunEnd{RunID: id, State: "FAILED", Time: t0, ScheduleID: sc.ID, Effect: db.ScheduleFailure,
				Error: &db.RunEndError{Code: "X", Message: "m"}}
		}
		ok := db.RunEnd{RunID: r3.ID, State: "SUCCEEDED", Time: t0.Add(time.Minute), ScheduleID: a.ID, Effect: db.ScheduleSuccess,
			Watermark: &db.Watermark{From: 10, To: 20}}
		ended, errs, err := db.EndBatch(e.ctx, d.Runs, []db.RunEnd{fail(r1.ID, a), fail(r2.ID, a), fail("run_missing", b), ok, fail(r4.ID, b)})
		testenv.Must(t, err)
		for i, want := range []int{4, 5, -1, 0, 4} {
			if want < 0 {
				if !errors.Is(errs[i], db.ErrRunNotFound) {
					t.Fatalf("missing run: %v", errs[i])
				}
				continue
			}
			if errs[i] != nil || ended[i].Schedule == nil || ended[i].Schedule.ConsecutiveFailures != want {
				t.Fatalf("end %d: %v, schedule %+v, want %d failures", i, errs[i], ended[i].Schedule, want)
			}
		}
		if !ended[3].WatermarkMoved {
			t.Fatal("the watermark did not move")
		}
		ga, err := d.Client.Schedule.Get(e.ctx, a.ID)
		testenv.Must(t, err)
		gb, err := d.Client.Schedule.Get(e.ctx, b.ID)
		testenv.Must(t, err)
		if ga.ConsecutiveFailures != 0 || ga.LastRunID != r3.ID || ga.Watermark != 20 || gb.ConsecutiveFailures != 4 || gb.LastRunID != r4.ID {
			t.Fatalf("schedules: a %d failures, last %s, watermark %d; b %d failures, last %s", ga.ConsecutiveFailures, ga.LastRunID,
				ga.Watermark, gb.ConsecutiveFailures, gb.LastRunID)
		}
		// r4's outcome written again (its first write committed, its
		// answer lost): its failure is not counted twice.
		again, err := d.Runs.End(e.ctx, fail(r4.ID, b))
		testenv.Must(t, err)
		if gb, _ = d.Client.Schedule.Get(e.ctx, b.ID); again.Schedule == nil || again.Schedule.ConsecutiveFailures != 4 || gb.ConsecutiveFailures != 4 {
			t.Fatalf("a run's failure written twice: returned %+v, stored %d, want 4", again.Schedule, gb.ConsecutiveFailures)
		}
		// The same compare-and-set again: the watermark is not at 10 any more.
		r5 := e.run(a, "")
		ok.RunID = r5.ID
		ended, errs, err = db.EndBatch(e.ctx, d.Runs, []db.RunEnd{ok})
		testenv.Must(t, err)
		if errs[0] != nil || ended[0].WatermarkMoved {
			t.Fatalf("a stale compare-and-set: %v, moved %v", errs[0], ended[0].WatermarkMoved)
		}
		if ga, _ = d.Client.Schedule.Get(e.ctx, a.ID); ga.Watermark != 20 {
			t.Fatalf("watermark %d after a stale compare-and-set", ga.Watermark)
		}
	})
}
