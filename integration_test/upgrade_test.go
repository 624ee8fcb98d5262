package integration_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/auditexport/auditexport/clients/go/manifest"
	"github.com/auditexport/auditexport/ent/migrate"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/cron"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// Upgrade fixtures (testdata/upgrade/<name>/): a database written by the
// schema of an earlier commit on main, per backend — sqlite/auditexport.db,
// postgres.sql (pg_dump) — with its master.key and a manifest. Their LOCAL
// integration points under upgradeRoot, a fixed path, so the stored
// destination stays valid wherever the test runs. Make one with
// TestMakeUpgradeFixture (see its comment) whenever db.SchemaVersion moves.
const upgradeRoot = "/tmp/auditexport-upgrade-fixture"

type upgradeManifest struct {
	Commit        string         `json:"commit"`
	SchemaVersion int            `json:"schema_version"`
	AdminKey      string         `json:"admin_key"` // a test key of the fixture's throw-away organization
	ScheduleID    string         `json:"schedule_id"`
	LegacyID      string         `json:"legacy_schedule_id"`
	LegacyCron    string         `json:"legacy_cron"`
	Cutoff        time.Time      `json:"cutoff"`
	ExportSHA256  string         `json:"export_sha256"`
	ExportBytes   int            `json:"export_bytes"`
	Counts        map[string]int `json:"counts"` // rows per table
}

// tableCounts counts the rows of every table of the current schema that
// exists in the database.
func tableCounts(t *testing.T, dsn string) map[string]int {
	t.Helper()
	d, err := db.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out := map[string]int{}
	for _, tb := range migrate.Tables {
		var n int
		if err := d.SQL.QueryRow("SELECT count(*) FROM " + tb.Name).Scan(&n); err == nil {
			out[tb.Name] = n
		}
	}
	return out
}

func sha256File(t *testing.T, path string) (string, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), len(b)
}

// upgradeSendNow runs a Send now of schID to its end and returns the local
// path of the object it wrote.
func upgradeSendNow(t *testing.T, s *Server, schID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 2*time.Minute)
	defer cancel()
	xs := testenv.SendNow(t, ctx, pb.NewScheduleServiceClient(s.Conn), schID)
	end := xs.Terminal(2 * time.Minute)
	if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Fatalf("Send now of %s: %v", schID, end)
	}
	return strings.TrimPrefix(end.GetObjectUri(), "file://")
}

// TestMakeUpgradeFixture writes a fixture with an older binary (not a test:
// it runs only when asked):
//
//	git worktree add /tmp/old <commit> && (cd /tmp/old && go build -o /tmp/old/auditexport ./cmd/auditexport)
//	AUDITEXPORT_UPGRADE_FIXTURE_BIN=/tmp/old/auditexport AUDITEXPORT_UPGRADE_FIXTURE_NAME=v1-<commit> \
//	  AUDITEXPORT_UPGRADE_FIXTURE_VERSION=1 go test -run TestMakeUpgradeFixture ./integration_test/
func TestMakeUpgradeFixture(t *testing.T) {
	bin, name := os.Getenv("AUDITEXPORT_UPGRADE_FIXTURE_BIN"), os.Getenv("AUDITEXPORT_UPGRADE_FIXTURE_NAME")
	if bin == "" || name == "" {
		t.Skip("fixture generator: runs only with AUDITEXPORT_UPGRADE_FIXTURE_BIN and _NAME set")
	}
	commit, _ := exec.Command("git", "-C", filepath.Dir(bin), "rev-parse", "HEAD").Output()
	var version int
	fmt.Sscan(os.Getenv("AUDITEXPORT_UPGRADE_FIXTURE_VERSION"), &version)
	dir := filepath.Join("testdata", "upgrade", name)
	testenv.Must(t, os.MkdirAll(filepath.Join(dir, "sqlite"), 0o755))
	for _, backend := range []string{"sqlite", "postgres"} {
		key, _, _ := auth.NewAPIKey()
		s := &Server{t: t, Backend: backend, DataDir: t.TempDir(), AdminKey: key, Bin: bin,
			LocalRoot: filepath.Join(upgradeRoot, name, backend)}
		testenv.Must(t, os.RemoveAll(s.LocalRoot))
		if backend == "sqlite" {
			s.DSN = "sqlite://" + filepath.Join(s.DataDir, "auditexport.db")
		} else {
			s.DSN = createPGDatabase(t)
		}
		s.start("--local-root", s.LocalRoot)
		if out, err := exec.Command(bin, "seed", "--events", "500", "--seed", "7", "--db", s.DSN, "--data-dir", s.DataDir).CombinedOutput(); err != nil {
			t.Fatalf("seed: %v\n%s", err, out)
		}
		m := upgradeManifest{Commit: strings.TrimSpace(string(commit)), SchemaVersion: version, AdminKey: key,
			Cutoff: time.Now().UTC().Truncate(time.Second)}
		_, schID := localSchedule(t, s, "upgrade")
		ctx := Ctx(key)
		cl := s.Clients()
		sc := must(cl.Schedules.GetSchedule(ctx, &pb.GetScheduleRequest{Id: schID})).get(t).GetSchedule()
		wbID, elID := sc.GetWorkbookId(), sc.GetElementId()
		_ = must(cl.Workbooks.UpdateWorkbook(ctx, &pb.UpdateWorkbookRequest{
			Workbook: &pb.Workbook{Id: wbID, Elements: []*pb.Element{{
				Id: elID, Source: &pb.TableSource{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"},
				Filters: []*pb.Filter{{Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_LESS_THAN,
					Values: []string{m.Cutoff.Format(time.RFC3339Nano)}}},
			}}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"elements"}},
		})).get(t)
		m.ScheduleID = schID
		m.LegacyCron = "0 16 */2 * sat"
		legacy := must(cl.Schedules.CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: wbID, Schedule: &pb.Schedule{
			Name: "legacy", ElementId: elID, Format: pb.Format_FORMAT_CSV, Cron: m.LegacyCron, TimeZone: "UTC",
			Destination: sc.GetDestination(),
		}})).get(t)
		m.LegacyID = legacy.GetSchedule().GetId()
		m.ExportSHA256, m.ExportBytes = sha256File(t, upgradeSendNow(t, s, schID))
		s.Stop()
		m.Counts = tableCounts(t, s.DSN)
		copyFile(t, filepath.Join(s.DataDir, "master.key"), filepath.Join(dir, backend+".master.key"))
		if backend == "sqlite" {
			copyFile(t, strings.TrimPrefix(s.DSN, "sqlite://"), filepath.Join(dir, "sqlite", "auditexport.db"))
		} else {
			out, err := exec.Command("pg_dump", "--no-owner", "--no-privileges", s.DSN).Output()
			testenv.Must(t, err)
			testenv.Must(t, os.WriteFile(filepath.Join(dir, "postgres.sql"), out, 0o644))
		}
		raw, _ := json.MarshalIndent(m, "", "  ")
		testenv.Must(t, os.WriteFile(filepath.Join(dir, backend+".json"), raw, 0o644))
	}
}

// TestUpgradeFromFixtures: each database written by an earlier commit's
// schema (testdata/upgrade) starts under this binary on SQLite and
// PostgreSQL with every row intact, is migrated to db.SchemaVersion (a
// schedule saved under the old cron day-field rules keeps its fire times,
// once: a schedule saved after the upgrade is never rewritten), and
// exports the same bytes as the old binary did. A database of a newer
// schema version is refused at start with a message saying so.
func TestUpgradeFromFixtures(t *testing.T) {
	t.Parallel()
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "upgrade", "*"))
	if len(fixtures) == 0 {
		t.Fatal("no upgrade fixtures in testdata/upgrade")
	}
	for _, dir := range fixtures {
		for _, backend := range backends(t) {
			t.Run(filepath.Base(dir)+"/"+backend, func(t *testing.T) {
				t.Parallel()
				raw, err := os.ReadFile(filepath.Join(dir, backend+".json"))
				testenv.Must(t, err)
				var m upgradeManifest
				testenv.Must(t, json.Unmarshal(raw, &m))
				s := &Server{t: t, Backend: backend, DataDir: t.TempDir(), AdminKey: m.AdminKey,
					LocalRoot: filepath.Join(upgradeRoot, filepath.Base(dir), backend)}
				testenv.Must(t, os.RemoveAll(s.LocalRoot))
				copyFile(t, filepath.Join(dir, backend+".master.key"), filepath.Join(s.DataDir, "master.key"))
				if backend == "sqlite" {
					path := filepath.Join(s.DataDir, "auditexport.db")
					copyFile(t, filepath.Join(dir, "sqlite", "auditexport.db"), path)
					s.DSN = "sqlite://" + path
				} else {
					s.DSN = createPGDatabase(t)
					if out, err := exec.Command("psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", filepath.Join(dir, "postgres.sql"), s.DSN).CombinedOutput(); err != nil {
						t.Fatalf("restore the fixture: %v\n%s", err, out)
					}
				}
				// No dispatcher: the fixture's schedules have real crons (the
				// legacy one fires at 16:00 UTC on Saturdays and odd days), and
				// a run they started during the test changed the row counts
				// (CI of 2026-12-05 16:00, a Saturday). Send now needs none.
				s.start("--local-root", s.LocalRoot, "--no-scheduler")

				// Every row intact: the tables the old schema had hold at
				// least as many rows (the audit log grows with this test's
				// own calls; nothing else may change).
				after := tableCounts(t, s.DSN)
				for table, n := range m.Counts {
					if got := after[table]; got < n || (got != n && table != "audit_logs") {
						t.Errorf("table %s: %d rows after the upgrade, %d before", table, got, n)
					}
				}
				ctx := Ctx(m.AdminKey)
				cl := s.Clients()
				legacy := must(cl.Schedules.GetSchedule(ctx, &pb.GetScheduleRequest{Id: m.LegacyID})).get(t).GetSchedule()
				if want, changed := cron.KeepLegacyMeaning(m.LegacyCron); !changed || legacy.GetCron() != want {
					t.Errorf("legacy schedule's cron after the upgrade: %q, want %q (its old fire times)", legacy.GetCron(), want)
				}
				d, err := db.Open(context.Background(), s.DSN)
				testenv.Must(t, err)
				defer d.Close()
				if v, err := d.SchemaVersion(context.Background()); err != nil || v != db.SchemaVersion {
					t.Errorf("schema version after the upgrade: %d %v, want %d", v, err, db.SchemaVersion)
				}

				// The same rows, the same bytes.
				obj := upgradeSendNow(t, s, m.ScheduleID)
				if sum, n := sha256File(t, obj); sum != m.ExportSHA256 || n != m.ExportBytes {
					t.Errorf("export after the upgrade: %d bytes sha256 %s, the old binary wrote %d bytes %s", n, sum, m.ExportBytes, m.ExportSHA256)
				}
				// Manifests start with the first run after the upgrade, and
				// the chain's first link says that earlier runs predate it.
				mf, err := os.ReadFile(obj + manifest.Suffix)
				testenv.Must(t, err)
				var env manifest.Envelope
				var first manifest.Manifest
				testenv.Must(t, json.Unmarshal(mf, &env))
				testenv.Must(t, json.Unmarshal(env.Payload, &first))
				if first.Chain.Sequence != 1 || first.Chain.Previous != "" || !strings.Contains(first.Chain.Start, "predate signed manifests") {
					t.Errorf("first manifest after the upgrade: chain %+v", first.Chain)
				}

				// A schedule saved now with a *-led day field keeps its
				// meaning across restarts (the rewrite ran once, at the upgrade).
				fresh := must(cl.Schedules.CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: legacy.GetWorkbookId(), Schedule: &pb.Schedule{
					Name: "cronie", ElementId: legacy.GetElementId(), Format: pb.Format_FORMAT_CSV, Cron: m.LegacyCron, TimeZone: "UTC",
					Destination: legacy.GetDestination(),
				}})).get(t).GetSchedule()
				s.Stop()
				s.start("--local-root", s.LocalRoot, "--no-scheduler")
				ctx = Ctx(m.AdminKey)
				if got := must(s.Clients().Schedules.GetSchedule(ctx, &pb.GetScheduleRequest{Id: fresh.GetId()})).get(t).GetSchedule(); got.GetCron() != m.LegacyCron {
					t.Errorf("a schedule saved after the upgrade was rewritten on restart: %q -> %q", m.LegacyCron, got.GetCron())
				}
				s.Stop()

				// A newer binary's database: refused, untouched.
				testenv.Must(t, d.SetSchemaVersion(context.Background(), db.SchemaVersion+1))
				before := tableCounts(t, s.DSN)
				_, err = testenv.StartServerProcess(toolPath, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
					"--data-dir", s.DataDir, "--db", s.DSN, "--local-root", s.LocalRoot}, nil, 60*time.Second)
				if err == nil || !strings.Contains(err.Error(), "newer auditexport") {
					t.Errorf("start on a newer schema version: %v, want a refusal naming the newer version", err)
				}
				if v, _ := d.SchemaVersion(context.Background()); v != db.SchemaVersion+1 {
					t.Errorf("refused database's version is now %d", v)
				}
				if got := tableCounts(t, s.DSN); fmt.Sprint(got) != fmt.Sprint(before) {
					t.Errorf("refused start changed row counts: %v -> %v", before, got)
				}
			})
		}
	}
}
