package integration_test

// PostgreSQL misbehaving while the service keeps running (issue 12, item
// 1): the server reaches its database through a testenv.FaultProxy that
// resets the open connections and refuses new ones for a moment, in the
// middle of an export and around the scheduler's dispatch transactions.
// The tests read the database directly (not through the proxy) to assert
// what was recorded: one terminal state per run, one run per period, no
// run left RUNNING, one object per successful run.

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// pfStart starts a PostgreSQL server whose database connections all go
// through a fault proxy, and returns it with the proxy and a connection to
// the database that bypasses the proxy. Without PostgreSQL the test is
// skipped (it fails in CI, see testenv.PostgresReachable).
func pfStart(t *testing.T, flags ...string) (*Server, *testenv.FaultProxy, *sql.DB) {
	t.Helper()
	if !slices.Contains(backends(t), "postgres") {
		t.Skip("PostgreSQL unreachable")
	}
	dsn := createPGDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartFaultProxy(t, u.Host)
	u.Host = proxy.Addr
	s := startServerDSN(t, "postgres", u.String(), nil, flags...)
	xfLogsOnFailure(t, s)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return s, proxy, db
}

// pfOutage resets every open database connection and refuses new ones
// until the server has tried (and failed) to reconnect at least twice, for
// at least min; then PostgreSQL is reachable again.
func pfOutage(t *testing.T, p *testenv.FaultProxy, minDown time.Duration) {
	t.Helper()
	start := time.Now()
	refused := p.Refused()
	p.SetMode(testenv.Refuse)
	p.Cut()
	sfWaitFor(t, "reconnect attempts while PostgreSQL is down", 30*time.Second, func() bool {
		return p.Refused() >= refused+2 && time.Since(start) >= minDown
	})
	p.SetMode(testenv.Pass)
}

// pfRunsPending counts runs QUEUED or RUNNING.
func pfRunsPending(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM export_runs WHERE state IN ('QUEUED','RUNNING')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pfRows of the Send now: ~6 s of export under -race.
const pfRows = 60_000

// TestPGFaultDuringRun: while a Send now to a LOCAL integration streams
// its rows, every PostgreSQL connection is reset and new ones are refused
// for a moment. The run ends in exactly one terminal state, recorded in the
// database once it is back (never left RUNNING): SUCCEEDED with exactly one
// complete object, or FAILED with an error code and message and no object;
// the stream's terminal message says the same, and so does a watcher of the
// run on a second replica (which follows it through the database, through
// the same faults). Then a second outage strikes the next run, which the
// test lets finish; and a Send now after the outages succeeds.
func TestPGFaultDuringRun(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	s, proxy, db := pfStart(t, "--notify-allowed-domains", "example.com")
	replica := s.Replica(t, "--notify-allowed-domains", "example.com")
	xfLogsOnFailure(t, replica)
	e := xfEnv{t, s}
	dir := s.LocalDir("", "pgfault")
	e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"pgf","provider":"PROVIDER_LOCAL","destination":"file://%s/"}}`, dir))
	schID, _ := e.schedule("pgf", "file://"+dir+"/f-{run_id}.csv", "COMPRESSION_NONE")
	e.seed(pfRows)

	seen := map[string]bool{}
	// watch follows a run from the replica.
	watch := func(id string) *testenv.RunStream {
		ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 3*time.Minute)
		t.Cleanup(cancel)
		return testenv.Watch(t, ctx, pb.NewScheduleServiceClient(replica.Conn), id)
	}
	check := func(xs, w *testenv.RunStream, end *pb.ExportProgress) crRun {
		t.Helper()
		id := xs.RunID()
		if we := w.Terminal(60 * time.Second); we.GetPhase() != end.GetPhase() || we.GetError().GetCode() != end.GetError().GetCode() {
			t.Errorf("run %s: the replica's watcher ended %v %q, the stream %v %q", id, we.GetPhase(), we.GetError().GetCode(), end.GetPhase(), end.GetError().GetCode())
		}
		// Recorded in the database (directly, not through the proxy):
		// terminal, the run's own outcome, once the database is back.
		r := crWaitRun(t, s, db, id, "terminal in the database", 30*time.Second, func(r crRun) bool {
			return r.State != "QUEUED" && r.State != "RUNNING"
		})
		t.Logf("run %s: stream %v, database %s %s attempt %d, %d rows", id, end.GetPhase(), r.State, r.ErrorCode, r.Attempt, r.Rows)
		if n := len(crRuns(t, s, db, "trigger = 'SEND_NOW'")); n != len(seen)+1 {
			t.Errorf("%d Send now runs in the database, want %d (one per Send now)", n, len(seen)+1)
		}
		seen[id] = true
		var msg string
		if err := db.QueryRow("SELECT error_message FROM export_runs WHERE id = $1", id).Scan(&msg); err != nil {
			t.Fatal(err)
		}
		files := crFiles(t, dir)
		switch r.State {
		case "SUCCEEDED":
			if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
				t.Errorf("run %s SUCCEEDED in the database, stream ended %v", id, end.GetPhase())
			}
			f := filepath.Base(crLocalFile(t, r.ObjectURI))
			if n := len(slices.DeleteFunc(slices.Clone(files), func(x string) bool { return x != f })); n != 1 {
				t.Errorf("run %s SUCCEEDED: %d objects %s, want 1 (files %v)", id, n, f, files)
			}
			data, err := os.ReadFile(crLocalFile(t, r.ObjectURI))
			if err != nil {
				t.Fatal(err)
			}
			if rows := sfCSVRows(t, data); rows < pfRows || rows != r.Rows {
				t.Errorf("run %s: object has %d rows, the run says %d, want >= %d", id, rows, r.Rows, pfRows)
			}
		case "FAILED":
			if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED {
				t.Errorf("run %s FAILED in the database, stream ended %v", id, end.GetPhase())
			}
			if r.ErrorCode != end.GetError().GetCode() {
				t.Errorf("run %s: error code %q in the database, %q in the stream: the run's own outcome was not recorded", id, r.ErrorCode, end.GetError().GetCode())
			}
			if r.ErrorCode == "" || msg == "" {
				t.Errorf("run %s FAILED without a clear error: code %q, message %q", id, r.ErrorCode, msg)
			}
			if r.ObjectURI != "" {
				if _, err := os.Stat(crLocalFile(t, r.ObjectURI)); err == nil {
					t.Errorf("run %s FAILED but its object %s exists", id, r.ObjectURI)
				}
			}
		default:
			t.Errorf("run %s ended %s", id, r.State)
		}
		return r
	}

	for i, minDown := range []time.Duration{500 * time.Millisecond, 3 * time.Second} {
		xs := e.sendNow(schID)
		w := watch(xs.RunID())
		xs.Until("rows streaming", 60*time.Second, func(p *pb.ExportProgress) bool {
			if testenv.IsTerminal(p.GetPhase()) {
				t.Fatalf("run ended before the outage: %v", p)
			}
			return p.GetRowsExported() >= pfRows/5
		})
		pfOutage(t, proxy, minDown)
		t.Logf("outage %d: %s down, %d connections refused", i+1, minDown, proxy.Refused())
		check(xs, w, xs.Terminal(90*time.Second))
	}
	if n := pfRunsPending(t, db); n != 0 {
		t.Errorf("%d runs QUEUED/RUNNING after the outages", n)
	}
	// The database is back: the next Send now succeeds.
	xs := e.sendNow(schID)
	if r := check(xs, watch(xs.RunID()), xs.Terminal(90*time.Second)); r.State != "SUCCEEDED" {
		t.Errorf("Send now after the outages: %s %s", r.State, r.ErrorCode)
	}
}

// TestPGFaultDuringDispatch: three every-minute schedules on a 30x clock
// (a period every 2 s), dispatched by two replicas (both reaching the
// database through the proxy) each looking every 100 ms, while every
// PostgreSQL connection is reset and new ones refused for ~0.5 s at a time,
// again and again for ~14 s, so outages strike dispatch transactions, claims
// and runs. Afterwards (schedules paused, runs drained, the orphan sweep
// given its time) every period of every schedule has exactly one run (the
// (schedule, dedup_key) key: no duplicate) covering exactly that period (no
// merged or skipped period), nothing is left QUEUED or RUNNING, every
// SUCCEEDED run has exactly one object and every FAILED one an error code
// and none.
func TestPGFaultDuringDispatch(t *testing.T) {
	t.Parallel()
	timingTest(t)
	clk := newCRClock()
	flags := append(clk.flags(), "--scheduler-slots", "4")
	s, proxy, db := pfStart(t, flags...)
	// The second dispatcher competes for the same periods (and claims,
	// and the orphan sweep) through the same faults.
	r := s.Replica(t, flags...)
	xfLogsOnFailure(t, r)
	e := xfEnv{t, s}
	dir := s.LocalDir("", "sched")
	e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"pgd","provider":"PROVIDER_LOCAL","destination":"file://%s/"}}`, dir))
	e.seed(2000)
	wb, el := crWorkbook(e, "pgd", false)
	var ids []string
	for i := range 3 {
		ids = append(ids, crSchedule(e, wb, el, fmt.Sprintf("pgd-%d", i), "pgd", "file://"+dir+"/{schedule_id}/{date}T{time}.csv", "Europe/Berlin"))
	}
	// Two periods without faults, then outages every ~1.5 s.
	sfWaitFor(t, "the first runs", 30*time.Second, func() bool {
		var n int
		return db.QueryRow("SELECT COUNT(*) FROM export_runs WHERE state = 'SUCCEEDED'").Scan(&n) == nil && n >= 2*len(ids)
	})
	faultStart := time.Now()
	outages := 0
	for time.Since(faultStart) < 14*time.Second {
		pfOutage(t, proxy, 500*time.Millisecond)
		outages++
		time.Sleep(time.Second)
	}
	t.Logf("%d outages in %s, %d connections refused", outages, time.Since(faultStart).Round(time.Millisecond), proxy.Refused())
	// Let the dispatcher catch up on a period, then stop the schedules.
	time.Sleep(2 * time.Second)
	last := clk.now().Truncate(time.Minute).Add(-time.Minute)
	for _, id := range ids {
		e.must("PauseSchedule", fmt.Sprintf(`{"id":%q}`, id))
	}
	// Drain: runs still in flight end; a run whose outcome could not be
	// recorded is found by the orphan sweep (stale after 30 s).
	drainStart := time.Now()
	sfWaitFor(t, "no run QUEUED or RUNNING", 60*time.Second, func() bool { return pfRunsPending(t, db) == 0 })
	t.Logf("drained in %s", time.Since(drainStart).Round(time.Millisecond))

	runs := crRuns(t, s, db, "")
	byPeriod := map[string]map[time.Time][]crRun{}
	firstOf := map[string]time.Time{}
	failed := 0
	for _, r := range runs {
		if r.Trigger != "SCHEDULED" || !r.PeriodEnd.Valid || !r.PeriodStart.Valid {
			t.Errorf("unexpected run %+v", r)
			continue
		}
		pe := r.PeriodEnd.Time.UTC()
		if byPeriod[r.ScheduleID] == nil {
			byPeriod[r.ScheduleID] = map[time.Time][]crRun{}
		}
		byPeriod[r.ScheduleID][pe] = append(byPeriod[r.ScheduleID][pe], r)
		if f, ok := firstOf[r.ScheduleID]; !ok || pe.Before(f) {
			firstOf[r.ScheduleID] = pe
		}
		switch r.State {
		case "SUCCEEDED":
			if _, err := os.Stat(crLocalFile(t, r.ObjectURI)); err != nil {
				t.Errorf("run %s SUCCEEDED: %v", r.ID, err)
			}
		case "FAILED":
			failed++
			t.Logf("run %s (attempt %d, %s) FAILED %s", r.ID, r.Attempt, r.Runner, r.ErrorCode)
			// A moment's outage as the run starts (reading its
			// run, schedule, element, integration) is retried: it
			// used to fail runs INTERNAL or *_NOT_FOUND.
			switch r.ErrorCode {
			case "INTERNAL", "SCHEDULE_NOT_FOUND", "ELEMENT_NOT_FOUND", "INTEGRATION_NOT_FOUND":
				t.Errorf("run %s FAILED %s: an outage as it started was not retried", r.ID, r.ErrorCode)
			}
		default:
			t.Errorf("run %s of period %s ended %s", r.ID, pe.Format(time.TimeOnly), r.State)
		}
	}
	files := crObjects(t, dir, ids)
	periods := 0
	for _, id := range ids {
		first, ok := firstOf[id]
		if !ok {
			t.Fatalf("schedule %s has no runs", id)
		}
		for pe := first; !pe.After(last); pe = pe.Add(time.Minute) {
			periods++
			rs := byPeriod[id][pe]
			if len(rs) != 1 {
				t.Errorf("schedule %s period %s: %d runs, want 1: %+v", id, pe.Format(time.TimeOnly), len(rs), rs)
				continue
			}
			r := rs[0]
			if pe.After(first) && !r.PeriodStart.Time.UTC().Equal(pe.Add(-time.Minute)) {
				t.Errorf("schedule %s period %s: run %s starts at %s: periods were merged (one missed)", id, pe.Format(time.TimeOnly),
					r.ID, r.PeriodStart.Time.UTC().Format(time.TimeOnly))
			}
			want := 0
			if r.State == "SUCCEEDED" {
				want = 1
			}
			if n := files[id][pe]; n != want {
				t.Errorf("schedule %s period %s: run %s %s, %d objects, want %d", id, pe.Format(time.TimeOnly), r.ID, r.State, n, want)
			}
		}
		for pe, n := range files[id] {
			if len(byPeriod[id][pe]) == 0 {
				t.Errorf("schedule %s: %d object(s) for period %s, which has no run", id, n, pe.Format(time.TimeOnly))
			}
		}
	}
	retried := 0
	byRunner := map[string]int{}
	for _, r := range runs {
		if r.Attempt > 1 {
			retried++
		}
		byRunner[r.Runner]++
	}
	t.Logf("runs by executing process: %v", byRunner)
	t.Logf("%d runs, %d FAILED, %d retried (attempt > 1: requeued by the orphan sweep), %d (schedule, period) pairs up to %s",
		len(runs), failed, retried, periods, last.Format(time.TimeOnly))
	if periods < 3*len(ids) {
		t.Errorf("only %d periods checked", periods)
	}
}

// TestPGOutcomeAnswerLost: a failed run's outcome reaches PostgreSQL and
// commits, but its answer never comes back (the proxy drops it and resets
// the connections) and the database stays unreachable for a moment, so
// the runner's first retries fail too (a batch of one is not rewritten by
// db.Group). Once the database is back, the runner's retry finds the
// outcome recorded. What the run's schedule owes
// that outcome must still happen, from the schedule's bookkeeping as the
// commit left it: the failure counted once, and the mail of a failure
// streak's first failure sent to the owner and the schedule's recipients.
func TestPGOutcomeAnswerLost(t *testing.T) {
	t.Parallel()
	mp := testenv.StartMailpit(t)
	s, proxy, db := pfStart(t, "--smtp-url", mp.SMTPURL, "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	dir := s.LocalDir("", "lost")
	e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"lost","provider":"PROVIDER_LOCAL","destination":"file://%s/"}}`, dir))
	schID, _ := e.schedule("lost", "file://"+dir+"/f-{run_id}.csv", "COMPRESSION_NONE")
	e.seed(100)
	// The destination unwritable: a file where its directory was.
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The error code is a parameter of the outcome's statement only.
	const code = "PROVIDER_UNAVAILABLE"
	proxy.RefuseAfter(code)
	xs := e.sendNow(schID)
	id := xs.RunID()
	sfWaitFor(t, "the outcome's statement sent", 60*time.Second, func() bool { return proxy.Tripped() == 1 })
	refused := proxy.Refused()
	sfWaitFor(t, "writes retried while PostgreSQL is down", 30*time.Second, func() bool { return proxy.Refused() >= refused+3 })
	proxy.SetMode(testenv.Pass)

	end := xs.Terminal(90 * time.Second)
	if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || end.GetError().GetCode() != code {
		t.Fatalf("run %s ended %v %q, want FAILED %s", id, end.GetPhase(), end.GetError().GetCode(), code)
	}
	if !s.WaitLogs("run outcome already recorded", 10*time.Second) {
		t.Fatalf("the runner never found its outcome recorded (the lost answer was not what the test made it):\n%s", s.Logs())
	}
	r := crWaitRun(t, s, db, id, "terminal in the database", 30*time.Second, func(r crRun) bool { return r.State != "QUEUED" && r.State != "RUNNING" })
	if r.State != "FAILED" || r.ErrorCode != code {
		t.Errorf("run %s recorded %s %q, want FAILED %s", id, r.State, r.ErrorCode, code)
	}
	var fails int
	var last string
	if err := db.QueryRow("SELECT consecutive_failures, last_run_id FROM schedules WHERE id = $1", schID).Scan(&fails, &last); err != nil {
		t.Fatal(err)
	}
	if fails != 1 || last != id {
		t.Errorf("schedule after the run: %d consecutive failures, last run %q; want 1, %s", fails, last, id)
	}
	xfFailureMail(t, mp, id, code)
}
