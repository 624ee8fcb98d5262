package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/scheduler"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

// clock is a controllable clock shared by the dispatchers of a test.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// doneExec marks every run it is given as SUCCEEDED and counts them; with
// release set it first waits until release is closed (the run stays QUEUED
// meanwhile, as a long export would).
type doneExec struct {
	d       *db.DB
	mu      sync.Mutex
	calls   map[string]int
	release chan struct{}
}

func (e *doneExec) Execute(ctx context.Context, run *ent.ExportRun) {
	orgID, runID := run.OrgID, run.ID
	e.mu.Lock()
	e.calls[runID]++
	e.mu.Unlock()
	if e.release != nil {
		<-e.release
	}
	_ = e.d.Client.ExportRun.UpdateOneID(runID).SetState(exportrun.StateSUCCEEDED).Exec(tenant.WithOrg(context.Background(), orgID))
}

func makeSchedules(t *testing.T, d *db.DB, n int, cron, catchUp string, first time.Time) string {
	t.Helper()
	sctx := tenant.System(context.Background())
	org, err := d.Client.Organization.Create().SetName("o").Save(sctx)
	if err != nil {
		t.Fatal(err)
	}
	ctx := tenant.WithOrg(context.Background(), org.ID)
	for i := 0; i < n; i++ {
		err := d.Client.Schedule.Create().SetWorkbookID("wb_x").SetElementID("el_x").SetName(fmt.Sprintf("s%d", i)).
			SetOwnerID("usr_x").SetIntegrationID("int_x").SetIntegrationName("x").SetURI("s3://b/p/x.csv").
			SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).SetCron(cron).SetTimeZone("UTC").
			SetCatchUp(schedule.CatchUp(catchUp)).SetNextRunTime(first).Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}
	return org.ID
}

// runCounts returns the number of runs per (schedule, period end).
func runCounts(t *testing.T, d *db.DB) (total int, perPeriod map[string]int) {
	t.Helper()
	runs, err := d.Client.ExportRun.Query().All(tenant.System(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	perPeriod = map[string]int{}
	for _, r := range runs {
		perPeriod[r.ScheduleID+"@"+r.PeriodEnd.UTC().Format(time.RFC3339)]++
	}
	return len(runs), perPeriod
}

func newDispatcher(d *db.DB, exec scheduler.Executor, c *clock, id string) *scheduler.Dispatcher {
	return scheduler.NewDispatcher(d, exec, slog.New(slog.DiscardHandler), scheduler.DispatcherConfig{Slots: 64, RunnerID: id}, c.now)
}

// waitIdle ticks until every QUEUED run was claimed and executed.
func waitIdle(t *testing.T, ds []*scheduler.Dispatcher, d *db.DB) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		n, err := d.Client.ExportRun.Query().Where(exportrun.StateNEQ(exportrun.StateSUCCEEDED)).Count(tenant.System(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		for _, x := range ds {
			if err := x.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("runs did not drain")
}

// TestDispatchExactlyOncePerPeriod: 50 every-minute schedules over 10 periods
// give exactly 500 runs, one per (schedule, period) — with one dispatcher on
// SQLite and with three racing dispatchers (own connection pools) on PostgreSQL.
func TestDispatchExactlyOncePerPeriod(t *testing.T) {
	for _, tc := range []struct {
		name        string
		open        func(testing.TB) *db.DB
		dispatchers int
	}{{"sqlite", testenv.SQLiteDB, 1}, {"postgres", testenv.PostgresDB, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.open(t)
			c := &clock{}
			start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			c.set(start.Add(-time.Second))
			makeSchedules(t, d, 50, "* * * * *", "ONE", start)
			exec := &doneExec{d: d, calls: map[string]int{}}
			var ds []*scheduler.Dispatcher
			for i := 0; i < tc.dispatchers; i++ {
				pool := d
				if i > 0 {
					var err error
					if pool, err = db.Open(context.Background(), dsnOf(t, d)); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { pool.Close() })
				}
				ds = append(ds, newDispatcher(pool, exec, c, fmt.Sprintf("r%d", i)))
			}
			for p := 0; p < 10; p++ {
				c.set(start.Add(time.Duration(p)*time.Minute + 200*time.Millisecond))
				var wg sync.WaitGroup
				errs := make(chan error, len(ds))
				for _, x := range ds {
					wg.Add(1)
					go func() { defer wg.Done(); errs <- x.Tick(context.Background()) }()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				waitIdle(t, ds, d)
			}
			total, per := runCounts(t, d)
			if total != 500 || len(per) != 500 {
				t.Fatalf("%d runs over %d (schedule, period) pairs, want 500 and 500", total, len(per))
			}
			for k, n := range per {
				if n != 1 {
					t.Errorf("%s has %d runs", k, n)
				}
			}
			exec.mu.Lock()
			defer exec.mu.Unlock()
			for id, n := range exec.calls {
				if n != 1 {
					t.Errorf("run %s executed %d times", id, n)
				}
			}
			if len(exec.calls) != 500 {
				t.Errorf("%d runs executed, want 500", len(exec.calls))
			}
		})
	}
}

// TestDispatchCatchUp: after downtime a schedule runs once (ONE) or not at
// all (NONE), never a burst, and resumes on its next period.
func TestDispatchCatchUp(t *testing.T) {
	for _, catchUp := range []string{"ONE", "NONE"} {
		t.Run(catchUp, func(t *testing.T) {
			d := testenv.SQLiteDB(t)
			c := &clock{}
			start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			makeSchedules(t, d, 3, "0 * * * *", catchUp, start)
			exec := &doneExec{d: d, calls: map[string]int{}}
			ds := []*scheduler.Dispatcher{newDispatcher(d, exec, c, "r")}
			c.set(start.Add(5*time.Hour + 30*time.Minute)) // down for five periods
			waitIdle(t, ds, d)
			if err := ds[0].Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitIdle(t, ds, d)
			total, per := runCounts(t, d)
			want := map[string]int{"ONE": 3, "NONE": 0}[catchUp]
			if total != want {
				t.Fatalf("%d runs after downtime, want %d: %v", total, want, per)
			}
			for k := range per {
				if k[len(k)-20:] != "2026-06-01T17:00:00Z" {
					t.Errorf("catch-up run %s does not end at the latest missed period", k)
				}
			}
			c.set(start.Add(6*time.Hour + time.Second))
			if err := ds[0].Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitIdle(t, ds, d)
			if total2, _ := runCounts(t, d); total2 != want+3 {
				t.Fatalf("after the next period: %d runs, want %d", total2, want+3)
			}
		})
	}
}

// dsnOf returns the DSN of a test database, to open a second pool on it.
func dsnOf(t *testing.T, d *db.DB) string {
	t.Helper()
	if d.DSN == "" {
		t.Fatal("database has no DSN")
	}
	return d.DSN
}

// TestClaimWithoutRunnerIDExecutesOnce: a dispatcher built without a
// RunnerID claims under a generated process name, so a run whose execution
// has not yet changed its state is not claimed again by the next tick. (The
// scheduler benchmark built its dispatcher this way and saw runs executed
// two or three times: the claim had stored an empty runner, i.e. "free".)
func TestClaimWithoutRunnerIDExecutesOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(testing.TB) *db.DB
	}{{"sqlite", testenv.SQLiteDB}, {"postgres", testenv.PostgresDB}} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.open(t)
			c := &clock{}
			start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			c.set(start.Add(time.Second))
			makeSchedules(t, d, 10, "0 0 1 1 *", "ONE", start)
			exec := &doneExec{d: d, calls: map[string]int{}, release: make(chan struct{})}
			ds := scheduler.NewDispatcher(d, exec, slog.New(slog.DiscardHandler), scheduler.DispatcherConfig{Slots: 64}, c.now)
			ctx := context.Background()
			for i := 0; i < 5; i++ {
				if err := ds.Tick(ctx); err != nil {
					t.Fatal(err)
				}
			}
			runs, err := d.Client.ExportRun.Query().All(tenant.System(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 10 {
				t.Fatalf("%d runs, want 10", len(runs))
			}
			for _, r := range runs {
				if r.Runner == "" {
					t.Errorf("run %s claimed with an empty runner", r.ID)
				}
			}
			close(exec.release)
			waitIdle(t, []*scheduler.Dispatcher{ds}, d)
			exec.mu.Lock()
			defer exec.mu.Unlock()
			if len(exec.calls) != 10 {
				t.Errorf("%d runs executed, want 10", len(exec.calls))
			}
			for id, n := range exec.calls {
				if n != 1 {
					t.Errorf("run %s executed %d times", id, n)
				}
			}
		})
	}
}

// TestTickDispatchesEveryDueSchedule: one tick dispatches all due schedules
// in batches (35 due, batches of 10), and schedules whose cron cannot be
// parsed (only a hand-edited database has them) lose their next run time
// instead of filling every batch and starving the others.
func TestTickDispatchesEveryDueSchedule(t *testing.T) {
	d := testenv.SQLiteDB(t)
	c := &clock{}
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c.set(start.Add(time.Second))
	makeSchedules(t, d, 12, "not a cron", "ONE", start.Add(-time.Hour)) // due first
	makeSchedules(t, d, 35, "0 0 1 1 *", "ONE", start)
	exec := &doneExec{d: d, calls: map[string]int{}}
	ds := scheduler.NewDispatcher(d, exec, slog.New(slog.DiscardHandler), scheduler.DispatcherConfig{Slots: 64, Batch: 10}, c.now)
	done := make(chan error, 1)
	go func() { done <- ds.Tick(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Tick did not return")
	}
	if total, _ := runCounts(t, d); total != 35 {
		t.Fatalf("one tick created %d runs, want 35", total)
	}
	sctx := tenant.System(context.Background())
	if n, err := d.Client.Schedule.Query().Where(schedule.Cron("not a cron"), schedule.NextRunTimeNotNil()).Count(sctx); err != nil || n != 0 {
		t.Fatalf("%d schedules with an invalid cron still due (%v)", n, err)
	}
	waitIdle(t, []*scheduler.Dispatcher{ds}, d)
}

// TestDispatchBatchSkipsExistingRun: a batch of schedules from two
// organisations is dispatched with one multi-row insert; a schedule whose
// run for the period exists already (made by another dispatcher) keeps that
// one run without failing the batch, the others get theirs in their own
// organisation, and every schedule moves to its next period.
func TestDispatchBatchSkipsExistingRun(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		c := &clock{}
		start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
		c.set(start.Add(time.Second))
		orgA := makeSchedules(t, d, 3, "0 12 * * *", "ONE", start)
		orgB := makeSchedules(t, d, 2, "30 12 * * *", "ONE", start)
		ctx := context.Background()
		sctx := tenant.System(ctx)
		first, err := d.Client.Schedule.Query().Where(schedule.OrgID(orgA)).First(sctx)
		if err != nil {
			t.Fatal(err)
		}
		existing, err := d.Client.ExportRun.Create().SetOrgID(orgA).SetScheduleID(first.ID).SetTrigger(exportrun.TriggerSCHEDULED).
			SetPeriodStart(start.Add(-24 * time.Hour)).SetPeriodEnd(start).SetDedupKey(start.Format(time.RFC3339)).
			SetRunner("other-replica").Save(sctx)
		if err != nil {
			t.Fatal(err)
		}
		exec := &doneExec{d: d, calls: map[string]int{}}
		ds := scheduler.NewDispatcher(d, exec, slog.New(slog.DiscardHandler), scheduler.DispatcherConfig{Slots: 64}, c.now)
		if err := ds.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		total, per := runCounts(t, d)
		if total != 5 || len(per) != 5 {
			t.Fatalf("%d runs over %d (schedule, period) pairs, want 5 and 5", total, len(per))
		}
		if r, err := d.Client.ExportRun.Get(sctx, existing.ID); err != nil || r.Runner != "other-replica" {
			t.Fatalf("the existing run was replaced or claimed: %+v %v", r, err)
		}
		for _, org := range []string{orgA, orgB} {
			n, err := d.Client.ExportRun.Query().Where(exportrun.OrgID(org)).Count(sctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]int{orgA: 3, orgB: 2}[org]; n != want {
				t.Errorf("organisation %s has %d runs, want %d", org, n, want)
			}
		}
		scheds, err := d.Client.Schedule.Query().All(sctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range scheds {
			want := start.Add(24 * time.Hour)
			if sc.OrgID == orgB {
				want = start.Add(30 * time.Minute)
			}
			if sc.NextRunTime == nil || !sc.NextRunTime.Equal(want) {
				t.Errorf("schedule %s (%s) next run %v, want %v", sc.ID, sc.Cron, sc.NextRunTime, want)
			}
		}
		// The existing run belongs to another runner: waitIdle would wait
		// for it forever.
		if err := d.Client.ExportRun.UpdateOneID(existing.ID).SetState(exportrun.StateSUCCEEDED).Exec(sctx); err != nil {
			t.Fatal(err)
		}
		waitIdle(t, []*scheduler.Dispatcher{ds}, d)
	})
}

// TestDispatchDecidesPerCatchUp: schedules due together with the same cron
// and fire time but a different catch-up policy share a dispatch batch and
// still get their own decision (the batch computes one decision per cron,
// zone, fire time and catch-up): after five missed periods each ONE schedule
// gets one run and no NONE schedule gets any.
func TestDispatchDecidesPerCatchUp(t *testing.T) {
	d := testenv.SQLiteDB(t)
	c := &clock{}
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	one := makeSchedules(t, d, 3, "0 * * * *", "ONE", start)
	makeSchedules(t, d, 3, "0 * * * *", "NONE", start)
	exec := &doneExec{d: d, calls: map[string]int{}}
	ds := []*scheduler.Dispatcher{newDispatcher(d, exec, c, "r")}
	c.set(start.Add(5*time.Hour + 30*time.Minute))
	if err := ds[0].Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, ds, d)
	runs, err := d.Client.ExportRun.Query().All(tenant.System(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 {
		t.Fatalf("%d runs, want 3 (one per catch-up ONE schedule)", len(runs))
	}
	for _, r := range runs {
		if r.OrgID != one {
			t.Errorf("run %s of a catch-up NONE schedule", r.ID)
		}
	}
}
