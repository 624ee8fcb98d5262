package integration_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/testenv"
)

// TestExportsNeverReplaced: exports are immutable once written, on every
// provider (MinIO, fake-gcs-server, Azurite, LOCAL) and both backends.
// An incremental every-minute schedule (every 2 s on the fast clock) whose
// URI has no per-run token:
//   - its first period writes the object; the next period, with other
//     rows, finds the key taken and fails OBJECT_EXISTS, leaving the object
//     and the watermark where they were;
//   - a Send now (the case: the same day, the same key) writes
//     under a distinct key with the run id and says so in the run's note,
//     and the first object is unchanged;
//   - once the URI is made unique per run, the next period stores every
//     row left: the objects together hold each matching audit row exactly
//     once;
//   - a scheduled period retried after its object was stored (a crash
//     before the outcome was recorded) succeeds without writing: the
//     stored bytes have the same sha256.
func TestExportsNeverReplaced(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := StartServer(t, backend, newCRClock().flags()...)
			xfLogsOnFailure(t, s)
			mc := testenv.StartMinIO(t)
			mc.CreateBucket(t, "imm")
			gcs := testenv.StartFakeGCS(t)
			gcs.CreateBucket(t, "imm")
			az := testenv.StartAzurite(t)
			az.CreateContainer(t, "imm")
			db := s.OpenDB()
			targets := []struct{ name, provider, dest, endpoint, creds string }{
				{"s3", "PROVIDER_S3", "s3://imm/p/", mc.Endpoint, xfS3Creds(mc, mc.SecretKey)},
				{"gcs", "PROVIDER_GCS", "gcs://imm/p/", gcs.Endpoint, fmt.Sprintf(`{"gcsServiceAccount":{"jsonKey":%q}}`, serviceAccountJSON)},
				{"azure", "PROVIDER_AZURE_BLOB", "azure://" + az.Account + ".blob.core.windows.net/imm/p/", az.Endpoint,
					fmt.Sprintf(`{"azureSharedKey":{"accountName":%q,"accountKey":%q}}`, az.Account, az.Key)},
				{"local", "PROVIDER_LOCAL", "file://" + s.LocalDir("", "imm") + "/", "", ""},
			}
			for _, tg := range targets {
				t.Run(tg.name, func(t *testing.T) {
					t.Parallel()
					im := immFlow{xfEnv{t, s}, db, tg.name, tg.dest, mc, gcs, az}
					im.integration(tg.name, tg.provider, tg.endpoint, tg.creds)
					im.run(tg.provider, tg.endpoint, tg.creds)
				})
			}
		})
	}
}

type immFlow struct {
	e    xfEnv
	db   *sql.DB
	name string
	dest string
	mc   *testenv.S3
	gcs  *testenv.GCS
	az   *testenv.Azure
}

func (im immFlow) integration(name, provider, endpoint, creds string) {
	im.e.t.Helper()
	if creds == "" {
		im.e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":%q,"destination":%q}}`,
			"imm_"+name, provider, im.dest))
		return
	}
	im.e.integration("imm_"+name, provider, im.dest, endpoint, creds)
}

func (im immFlow) run(provider, endpoint, creds string) {
	t, e, s := im.e.t, im.e, im.e.s
	// The element: the CREATE_STORAGE_INTEGRATION rows only, so a period's
	// content changes when an integration is created, and not with every
	// API call of the test.
	wb, el := crWorkbook(e, "imm-"+im.name, true)
	integ := "imm_" + im.name
	b := e.must("CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":%q,"elementId":%q,"format":"FORMAT_CSV",
		"mode":"EXPORT_MODE_INCREMENTAL","destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":%q}},
		"cron":"* * * * *","timeZone":"UTC"}}`, wb, "imm-"+im.name, el, integ, im.dest+"audit.csv"))
	id := getString(b, "schedule", "id")
	p := s.Placeholder

	// A first period that stored the object, then one refused on the taken key.
	var first, refused crRun
	deadline := time.Now().Add(90 * time.Second)
	for first.ID == "" || refused.ID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no SUCCEEDED then OBJECT_EXISTS scheduled run within 90s: %+v", crRuns(t, s, im.db, "schedule_id = "+p(1), id))
		}
		time.Sleep(100 * time.Millisecond)
		for _, r := range crRuns(t, s, im.db, "schedule_id = "+p(1), id) {
			switch {
			case first.ID == "" && r.State == "SUCCEEDED":
				first = r
			case first.ID == "" && r.State == "FAILED":
				t.Fatalf("the first run failed: %+v", r)
			case first.ID != "" && r.State == "FAILED" && refused.ID == "":
				refused = r
			}
		}
	}
	im.pause(id)
	if refused.ErrorCode != "OBJECT_EXISTS" {
		t.Fatalf("second period: %+v, want FAILED OBJECT_EXISTS", refused)
	}
	if msg := im.e.getRun(refused.ID).GetError().GetMessage(); !strings.Contains(msg, first.ObjectURI) {
		t.Errorf("OBJECT_EXISTS message %q does not name %s", msg, first.ObjectURI)
	}
	firstRun := im.e.getRun(first.ID)
	firstBytes := im.read(first.ObjectURI)
	if sum := sha256.Sum256(firstBytes); "sha256:"+hex.EncodeToString(sum[:]) != firstRun.GetChecksum() {
		t.Fatalf("the first object no longer has the first run's bytes")
	}
	if w := im.watermark(id); w != im.seq(first.ID, "to_seq") {
		t.Errorf("watermark %d after a refused period, want the first run's %d", w, im.seq(first.ID, "to_seq"))
	}

	// The case: rows arrive, a Send now on the same key.
	im.integration(im.name+"_more", provider, endpoint, creds)
	last := incSendNow(t, s, id)
	sn := im.e.getRun(last.GetRunId())
	wantURI := im.dest + "audit." + sn.GetId() + ".csv"
	if sn.GetObjectUri() != wantURI || last.GetObjectUri() != wantURI {
		t.Errorf("Send now object %q (progress %q), want %q", sn.GetObjectUri(), last.GetObjectUri(), wantURI)
	}
	if !strings.Contains(sn.GetNote(), first.ObjectURI) || last.GetNote() != sn.GetNote() {
		t.Errorf("Send now note %q (progress %q) does not say the key was taken", sn.GetNote(), last.GetNote())
	}
	if string(im.read(first.ObjectURI)) != string(firstBytes) {
		t.Fatal("the Send now replaced the first object")
	}

	// A unique URI: the next period stores every row left.
	e.must("UpdateSchedule", fmt.Sprintf(`{"schedule":{"id":%q,"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":%q}}},"updateMask":"destination"}`,
		id, integ, im.dest+"{run_id}.csv"))
	e.must("ResumeSchedule", fmt.Sprintf(`{"id":%q}`, id))
	var after crRun
	deadline = time.Now().Add(90 * time.Second)
	for after.ID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no SUCCEEDED scheduled run after the URI change within 90s")
		}
		time.Sleep(100 * time.Millisecond)
		for _, r := range crRuns(t, s, im.db, "schedule_id = "+p(1)+" AND trigger = 'SCHEDULED' AND state = 'SUCCEEDED' AND id <> "+p(2), id, first.ID) {
			after = r
		}
	}
	im.pause(id)

	// Every matching row exactly once across the objects.
	var seen []string
	var lastSched crRun
	for _, r := range crRuns(t, s, im.db, "schedule_id = "+p(1)+" AND state = 'SUCCEEDED'", id) {
		ids := im.eventIDs(r.ObjectURI)
		if int64(len(ids)) != r.Rows {
			t.Errorf("run %s: object has %d rows, run says %d", r.ID, len(ids), r.Rows)
		}
		seen = append(seen, ids...)
		if r.Trigger == "SCHEDULED" {
			lastSched = r
		}
	}
	w := im.watermark(id)
	want := im.matching(w)
	slices.Sort(seen)
	if !slices.Equal(seen, want) {
		t.Errorf("objects hold %d rows %v; the %d matching rows up to the watermark %d are %v", len(seen), seen, len(want), w, want)
	}

	// A crash after the last period's upload, before its outcome was
	// recorded: the retry finds its own bytes and writes nothing. The last
	// period is the one whose window ends at the watermark: runs advance
	// it in the order they finish, which need not be the order they were
	// made in (a run requeued behind a running one).
	if im.seq(lastSched.ID, "to_seq") != w {
		lastSched = crRun{}
		for _, r := range crRuns(t, s, im.db, "schedule_id = "+p(1)+" AND trigger = 'SCHEDULED' AND state = 'SUCCEEDED' AND to_seq = "+p(2), id, w) {
			lastSched = r
		}
		if lastSched.ID == "" {
			t.Fatalf("no scheduled run's window ends at the watermark %d; the schedule's runs:\n%s", w, im.history(id))
		}
		t.Logf("the last scheduled run made is not the last to finish; the schedule's runs:\n%s", im.history(id))
	}
	full := im.e.getRun(lastSched.ID)
	// The watermark first: a run requeued first could be claimed, and find
	// the watermark not yet back at its window's start, before the second
	// statement (seen: "advancing the incremental watermark failed").
	if _, err := im.db.Exec("UPDATE schedules SET watermark = "+p(1)+" WHERE id = "+p(2), im.seq(lastSched.ID, "from_seq"), id); err != nil {
		t.Fatal(err)
	}
	if _, err := im.db.Exec("UPDATE export_runs SET state = 'QUEUED', phase = 'QUEUED', runner = '', heartbeat_time = NULL, finish_time = NULL, attempt = attempt + 1 WHERE id = "+p(1), lastSched.ID); err != nil {
		t.Fatal(err)
	}
	again := crWaitRun(t, s, im.db, lastSched.ID, "finished", 60*time.Second, func(r crRun) bool { return r.State != "QUEUED" && r.State != "RUNNING" })
	retried := im.e.getRun(again.ID)
	if again.State != "SUCCEEDED" || retried.GetChecksum() != full.GetChecksum() || !strings.Contains(retried.GetNote(), "nothing was written") {
		t.Errorf("retried period: %+v checksum %s note %q; want SUCCEEDED with %s and a note", again, retried.GetChecksum(), retried.GetNote(), full.GetChecksum())
	}
	if got := im.watermark(id); got != w {
		t.Errorf("watermark %d after the retry, want %d; the schedule's runs:\n%s", got, w, im.history(id))
	}

	// "What happened yesterday?" on this backend too: the schedule shows the
	// run that finished last, and the silence gauge its success time.
	lr := getPath(e.must("GetSchedule", fmt.Sprintf(`{"id":%q}`, id)), "schedule", "lastRun")
	lastRun, _ := lr.(map[string]any)
	if lastRun["runId"] != lastSched.ID || lastRun["state"] != "RUN_STATE_SUCCEEDED" || lastRun["objectUri"] != lastSched.ObjectURI {
		t.Errorf("last_run %v, want the retried run %s", lr, lastSched.ID)
	}
	if ft, err := time.Parse(time.RFC3339Nano, fmt.Sprint(lastRun["finishTime"])); err != nil {
		t.Errorf("last_run finish time %v: %v", lastRun["finishTime"], err)
	} else {
		checkLastSuccessGauge(t, s, id, ft)
	}
}

// pause pauses the schedule and waits until none of its runs is queued or
// running (a user's pause lets a due period deliver).
func (im immFlow) pause(id string) {
	t := im.e.t
	t.Helper()
	im.e.must("PauseSchedule", fmt.Sprintf(`{"id":%q}`, id))
	deadline := time.Now().Add(60 * time.Second)
	for len(crRuns(t, im.e.s, im.db, "schedule_id = "+im.e.s.Placeholder(1)+" AND state IN ('QUEUED', 'RUNNING')", id)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("runs still active 60s after the pause")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (im immFlow) watermark(id string) int64 {
	im.e.t.Helper()
	var w int64
	if err := im.db.QueryRow("SELECT watermark FROM schedules WHERE id = "+im.e.s.Placeholder(1), id).Scan(&w); err != nil {
		im.e.t.Fatal(err)
	}
	return w
}

// matching is the sorted EVENT_IDs of the element's rows up to seq.
func (im immFlow) matching(seq int64) []string {
	im.e.t.Helper()
	rows, err := im.db.Query("SELECT event_id FROM audit_logs WHERE event_type = 'CREATE_STORAGE_INTEGRATION' AND id <= "+im.e.s.Placeholder(1), seq)
	if err != nil {
		im.e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			im.e.t.Fatal(err)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (im immFlow) read(uri string) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return readObject(im.e.t, ctx, uri, im.mc, im.gcs, im.az)
}

// eventIDs is the EVENT_ID column of a CSV object.
func (im immFlow) eventIDs(uri string) []string {
	t := im.e.t
	recs, err := csv.NewReader(strings.NewReader(string(im.read(uri)))).ReadAll()
	if err != nil || len(recs) == 0 || recs[0][0] != "EVENT_ID" {
		t.Fatalf("%s: %v %v", uri, err, recs)
	}
	var out []string
	for _, r := range recs[1:] {
		out = append(out, r[0])
	}
	return out
}

// history is every run of the schedule with its sequence window, for a
// failure message.
func (im immFlow) history(id string) string {
	rows, err := im.db.Query("SELECT id, trigger, state, attempt, from_seq, to_seq, create_time, start_time, finish_time FROM export_runs WHERE schedule_id = "+
		im.e.s.Placeholder(1)+" ORDER BY create_time", id)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var rid, trig, state string
		var attempt int
		var from, to int64
		var created, started, finished sql.NullString
		if err := rows.Scan(&rid, &trig, &state, &attempt, &from, &to, &created, &started, &finished); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "  %s %s %s attempt %d seq (%d, %d] created %s started %s finished %s\n", rid, trig, state, attempt, from, to,
			created.String, started.String, finished.String)
	}
	return b.String()
}

func (im immFlow) seq(runID, col string) int64 {
	im.e.t.Helper()
	var v int64
	if err := im.db.QueryRow("SELECT "+col+" FROM export_runs WHERE id = "+im.e.s.Placeholder(1), runID).Scan(&v); err != nil {
		im.e.t.Fatal(err)
	}
	return v
}
