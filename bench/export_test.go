// Package bench measures a Send now of a large AUDIT_LOGS table to S3
// (MinIO) as CSV+gzip, against the anchor measured in the same run: the
// shell pipeline a user writes without auditexport,
//
//	sqlite3 -csv -header DB "SELECT ... ORDER BY request_time, id" | gzip | s3put
//	psql -c "\copy (SELECT ... ORDER BY request_time, id) TO STDOUT WITH CSV HEADER" | gzip | s3put
//
// where s3put (bench/cmd/s3put) is the equivalent of `aws s3 cp - s3://...`.
//
// By default (`go test ./bench/`) it is a smoke run of 20k rows (5k under
// -race) that checks only that every step worked and every number was
// produced; nothing about speed is asserted. `make bench` sets AUDITEXPORT_BENCH_ROWS (e.g.
// 1000000,4000000) and AUDITEXPORT_BENCH_REPORT (docs/BENCHMARKS.md), which
// makes it the real benchmark and writes the report.
//
// Environment:
//
//	AUDITEXPORT_BENCH_ROWS      row counts, comma-separated (default 20000: smoke)
//	AUDITEXPORT_BENCH_PG_ROWS   row counts on PostgreSQL (default: AUDITEXPORT_BENCH_ROWS)
//	AUDITEXPORT_BENCH_BACKENDS  sqlite,postgres (default both; PostgreSQL is
//	                            skipped locally when unreachable, required under CI)
//	AUDITEXPORT_BENCH_REPEAT    measure ours and the anchor this many times each,
//	                            alternating, and keep each side's best time (default 1)
//	AUDITEXPORT_BENCH_REPORT    write the Markdown report to this path
//	AUDITEXPORT_TEST_POSTGRES   PostgreSQL maintenance DSN (internal/testenv, as every test)
package bench

import (
	"bufio"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	_ "modernc.org/sqlite"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/testenv"
)

const (
	envRows     = "AUDITEXPORT_BENCH_ROWS"
	envPGRows   = "AUDITEXPORT_BENCH_PG_ROWS"
	envBackends = "AUDITEXPORT_BENCH_BACKENDS"
	envReport   = "AUDITEXPORT_BENCH_REPORT"
	envRepeat   = "AUDITEXPORT_BENCH_REPEAT"
	smokeRows   = 20000
	bucket      = "bench"
	// anchorColumns are AUDIT_LOGS's columns in table order: what the
	// export writes when its element selects all columns.
	anchorColumns = "event_id, request_time, event_category, event_type, event_status, user_id, user_email, " +
		"account_type, object_type, object_id, request_id, ip_address, user_agent, error_code, metadata"
)

var (
	aeBin, s3putBin string
	raceServer      bool // the server binary is built with -race (smoke under go test -race only)
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

// longRun: real benchmark sizes were asked for (make bench).
func longRun() bool { return os.Getenv(envRows) != "" }

func runMain(m *testing.M) int {
	wd, _ := os.Getwd()
	root := filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "auditexport-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	aeBin, s3putBin = filepath.Join(dir, "auditexport"), filepath.Join(dir, "s3put")
	// Measurements use a normal build. Only the smoke inside `go test -race`
	// builds the server with -race, sharing the build cache with the
	// integration tests (and catching races on this path too).
	raceServer = raceEnabled && !longRun()
	serverBuild := []string{"build", "-o", aeBin}
	if raceServer {
		serverBuild = append(serverBuild, "-race")
	}
	for _, args := range [][]string{append(serverBuild, "./cmd/auditexport"), {"build", "-o", s3putBin, "./bench/cmd/s3put"}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n", strings.Join(args, " "), err)
			return 1
		}
	}
	return m.Run()
}

// result is one measurement: our export and the anchor, on the same data.
type result struct {
	Backend      string
	Seeded       int
	SeedSeconds  float64
	Rows         int64   // rows we exported (seeded + the few API calls of the setup)
	Seconds      float64 // SendNow call to its terminal message
	CSVBytes     int64   // uncompressed CSV in our object
	GzipBytes    int64   // our object's size
	RSSBeforeKB  int64   // server VmRSS, idle, just before the export
	HWMBeforeKB  int64   // server VmHWM before the export (startup peak)
	PeakRSSKB    int64   // server VmHWM after the export
	AnchorSecs   float64 // whole shell pipeline, wall time
	AnchorRows   int64
	AnchorCSV    int64
	AnchorGzip   int64
	AnchorScript string
	Repeats      int
	LoadBefore   string // 1-minute load average before and after the measurements
	LoadAfter    string
}

func (r result) rowsPerSec() float64     { return float64(r.Rows) / r.Seconds }
func (r result) mbPerSec() float64       { return float64(r.CSVBytes) / 1e6 / r.Seconds }
func (r result) anchorMBPerSec() float64 { return float64(r.AnchorCSV) / 1e6 / r.AnchorSecs }
func (r result) ratio() float64          { return r.AnchorSecs / r.Seconds }

// TestExportThroughput: see the package comment.
func TestExportThroughput(t *testing.T) {
	smoke := smokeRows
	if raceServer {
		smoke /= 4 // a -race server and reader are several times slower; keep the smoke short
	}
	rows := parseRows(t, os.Getenv(envRows), []int{smoke})
	pgRows := parseRows(t, os.Getenv(envPGRows), rows)
	var backends []string
	for _, b := range strings.Split(envOr(envBackends, "sqlite,postgres"), ",") {
		switch b = strings.TrimSpace(b); b {
		case "sqlite":
			requireTool(t, "sqlite3")
			backends = append(backends, b)
		case "postgres":
			if pgReachable(t) {
				requireTool(t, "psql")
				backends = append(backends, b)
			}
		case "":
		default:
			t.Fatalf("%s: unknown backend %q", envBackends, b)
		}
	}
	requireTool(t, "gzip")
	requireTool(t, "bash")

	s3env := testenv.StartMinIO(t)
	s3env.CreateBucket(t, bucket)

	var results []result
	for _, backend := range backends {
		sizes := rows
		if backend == "postgres" {
			sizes = pgRows
		}
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d", backend, n), func(t *testing.T) {
				r := measure(t, s3env, backend, n)
				t.Logf("%s %d rows: ours %.2fs (%.0f rows/s, %.1f MB/s CSV, gzip %.1f MB), peak RSS %.1f MiB (idle %.1f MiB); "+
					"anchor %.2fs (%.1f MB/s CSV); ratio anchor/ours %.2f; seeding took %.1fs",
					backend, r.Rows, r.Seconds, r.rowsPerSec(), r.mbPerSec(), float64(r.GzipBytes)/1e6, mib(r.PeakRSSKB), mib(r.RSSBeforeKB),
					r.AnchorSecs, r.anchorMBPerSec(), r.ratio(), r.SeedSeconds)
				results = append(results, r)
			})
		}
	}
	if t.Failed() {
		return
	}
	for _, b := range backends {
		small, large := extremes(results, b)
		if small == nil || large.Rows < 2*small.Rows {
			continue
		}
		// Constant memory is a requirement, not a speed: a peak that grows
		// with the row count is a failure (a little slack for GC timing).
		if float64(large.PeakRSSKB) > 1.25*float64(small.PeakRSSKB)+32*1024 {
			t.Errorf("%s: peak RSS grows with row count: %.1f MiB at %d rows, %.1f MiB at %d rows",
				b, mib(small.PeakRSSKB), small.Rows, mib(large.PeakRSSKB), large.Rows)
		}
	}
	if path := os.Getenv(envReport); path != "" {
		out := report(t, results)
		if prev, err := os.ReadFile(path); err == nil {
			out = append(out, keepSections(string(prev))...) // e.g. the scheduler benchmark's section
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}

// measure seeds a fresh database with n rows and measures one export and the
// anchor on it.
func measure(t *testing.T, s3env *testenv.S3, backend string, n int) result {
	r := result{Backend: backend, Seeded: n}
	dataDir := t.TempDir()
	dsn := newDatabase(t, backend, dataDir)
	key, _, _ := auth.NewAPIKey()

	// The schedule is created on a first server, which also bootstraps the
	// organization; the measured server is a fresh process (VmHWM is a
	// lifetime peak) started after seeding.
	srv := startServer(t, dsn, key, dataDir)
	scheduleID := setup(t, srv, key, s3env)
	srv.stop(t)

	start := time.Now()
	if out, err := exec.Command(aeBin, "seed", "--events", strconv.Itoa(n), "--db", dsn).CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	r.SeedSeconds = time.Since(start).Seconds()
	db := openDB(t, dsn)
	org := warm(t, db)

	anchorKey := fmt.Sprintf("anchor/%s-%d.csv.gz", backend, n)
	upload := fmt.Sprintf("gzip | %s -endpoint %s -region %s -bucket %s -key %s",
		shq(s3putBin), shq(s3env.Endpoint), s3env.Region, bucket, shq(anchorKey))
	query := fmt.Sprintf("SELECT %s FROM audit_logs WHERE org_id = '%s' ORDER BY request_time, id", anchorColumns, org)
	if backend == "sqlite" {
		r.AnchorScript = fmt.Sprintf("sqlite3 -csv -header %s %s | %s", shq(strings.TrimPrefix(dsn, "sqlite://")), shq(query), upload)
	} else {
		r.AnchorScript = fmt.Sprintf(`psql -X -q -v ON_ERROR_STOP=1 -d %s -c %s | %s`, shq(dsn),
			shq(`\copy (`+query+`) TO STDOUT WITH CSV HEADER`), upload)
	}

	// Ours and the anchor alternate; each side keeps its best time (the
	// machine may be shared), the peak RSS is the largest seen.
	var oursKey string
	r.LoadBefore = loadAvg()
	for rep := range repeats(t) {
		if oursKey != "" {
			deleteObject(s3env, oursKey)
		}
		srv = startServer(t, dsn, key, dataDir)
		time.Sleep(500 * time.Millisecond) // let startup work settle before the baseline
		rss, hwm := procMem(t, srv.Pid())
		start = time.Now()
		final := sendNow(t, srv, key, scheduleID)
		secs := time.Since(start).Seconds()
		_, peak := procMem(t, srv.Pid())
		srv.stop(t)
		if rep == 0 || secs < r.Seconds {
			r.Seconds = secs
		}
		r.RSSBeforeKB, r.HWMBeforeKB, r.PeakRSSKB = max(r.RSSBeforeKB, rss), max(r.HWMBeforeKB, hwm), max(r.PeakRSSKB, peak)
		r.Rows = final.GetRowsExported()
		var ok bool
		if oursKey, ok = strings.CutPrefix(final.GetObjectUri(), "s3://"+bucket+"/"); !ok {
			t.Fatalf("object uri %q is not in bucket %s", final.GetObjectUri(), bucket)
		}

		// The anchor, on the same data, right after (the page cache is as warm).
		cmd := exec.Command("bash", "-o", "pipefail", "-c", r.AnchorScript)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s3env.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3env.SecretKey)
		start = time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("anchor pipeline failed: %v\n%s\n%s", err, r.AnchorScript, out)
		}
		if secs := time.Since(start).Seconds(); rep == 0 || secs < r.AnchorSecs {
			r.AnchorSecs = secs
		}
		r.Repeats++
	}
	r.LoadAfter = loadAvg()

	// Both (last) objects must hold the table; their sizes feed MB/s.
	var oursRows int64
	oursRows, r.CSVBytes, r.GzipBytes = readCSVObject(t, s3env, oursKey)
	r.AnchorRows, r.AnchorCSV, r.AnchorGzip = readCSVObject(t, s3env, anchorKey)
	switch {
	case oursRows != r.Rows:
		t.Errorf("our object holds %d rows, the run reported %d", oursRows, r.Rows)
	case r.Rows < int64(n):
		t.Errorf("exported %d rows, seeded %d", r.Rows, n)
	case r.AnchorRows < r.Rows || r.AnchorRows > r.Rows+10:
		// The anchor runs later and also sees the export's own audit rows.
		t.Errorf("the anchor exported %d rows, we %d", r.AnchorRows, r.Rows)
	case r.Seconds <= 0 || r.AnchorSecs <= 0 || r.CSVBytes <= 0 || r.GzipBytes <= 0 || r.PeakRSSKB <= 0 || r.RSSBeforeKB <= 0:
		t.Errorf("a measurement is missing: %+v", r)
	}
	return r
}

// setup creates the S3 integration (MinIO), a saved workbook on AUDIT_LOGS
// and a CSV+gzip snapshot schedule; it returns the schedule id.
func setup(t *testing.T, srv *server, key string, s3env *testenv.S3) string {
	ctx := withKey(key)
	in, err := pb.NewIntegrationServiceClient(srv.conn).CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
		StorageIntegration: &pb.StorageIntegration{Name: "bench", Provider: pb.Provider_PROVIDER_S3,
			Destination: "s3://" + bucket + "/exports/", Region: s3env.Region, Endpoint: s3env.Endpoint,
			Credentials: &pb.StorageCredentials{Kind: &pb.StorageCredentials_AwsAccessKey{AwsAccessKey: &pb.AwsAccessKey{
				AccessKeyId: s3env.AccessKey, SecretAccessKey: s3env.SecretKey}}}}})
	if err != nil {
		t.Fatalf("create integration: %v", err)
	}
	wbs := pb.NewWorkbookServiceClient(srv.conn)
	ex, err := wbs.ExploreTable(ctx, &pb.ExploreTableRequest{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"})
	if err != nil {
		t.Fatalf("explore: %v", err)
	}
	wb, err := wbs.SaveWorkbookAs(ctx, &pb.SaveWorkbookAsRequest{Id: ex.GetWorkbook().GetId(), Name: "bench", Folder: "bench"})
	if err != nil {
		t.Fatalf("save workbook: %v", err)
	}
	sc, err := pb.NewScheduleServiceClient(srv.conn).CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: wb.GetWorkbook().GetId(),
		Schedule: &pb.Schedule{Name: "bench", ElementId: wb.GetWorkbook().GetElements()[0].GetId(),
			Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{
				StorageIntegrationName: in.GetStorageIntegration().GetName(), Uri: "s3://" + bucket + "/exports/{run_id}.csv.gz"}},
			Format: pb.Format_FORMAT_CSV, Compression: pb.Compression_COMPRESSION_GZIP, Mode: pb.ExportMode_EXPORT_MODE_SNAPSHOT,
			Cron: "0 0 1 1 *", TimeZone: "UTC"}})
	if err != nil {
		t.Fatalf("create schedule: %v", err)
	}
	return sc.GetSchedule().GetId()
}

// sendNow runs the schedule and follows the stream to its terminal message,
// which must be SUCCEEDED.
func sendNow(t *testing.T, srv *server, key, scheduleID string) *pb.ExportProgress {
	ctx, cancel := context.WithTimeout(withKey(key), time.Hour)
	defer cancel()
	msgs, err := testenv.SendNow(t, ctx, pb.NewScheduleServiceClient(srv.conn), scheduleID).Wait()
	if err != nil {
		t.Fatalf("SendNow stream: %v\n%s", err, srv.Logs())
	}
	var last *pb.ExportProgress
	if len(msgs) > 0 {
		last = msgs[len(msgs)-1].P
	}
	if last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Fatalf("export ended with %v\n%s", last, srv.Logs())
	}
	return last
}

// readCSVObject downloads a gzip'd CSV object and returns its data rows
// (without the header), its uncompressed and its stored size.
func readCSVObject(t *testing.T, s3env *testenv.S3, key string) (rows, csvBytes, gzBytes int64) {
	ctx := context.Background()
	out, err := s3env.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	gzc := &countReader{r: out.Body}
	zr, err := gzip.NewReader(bufio.NewReaderSize(gzc, 1<<20))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	csvc := &countReader{r: zr}
	cr := csv.NewReader(bufio.NewReaderSize(csvc, 1<<20))
	cr.ReuseRecord = true
	var header []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: row %d: %v", key, rows, err)
		}
		if header == nil {
			header = append([]string(nil), rec...)
			if len(header) != 15 {
				t.Fatalf("%s: header %v", key, header)
			}
			continue
		}
		rows++
	}
	deleteObject(s3env, key)
	return rows, csvc.n, gzc.n
}

func deleteObject(s3env *testenv.S3, key string) {
	_, _ = s3env.Client().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
}

// repeats is how often each side is measured (best time kept).
func repeats(t *testing.T) int {
	n, err := strconv.Atoi(envOr(envRepeat, "1"))
	if err != nil || n < 1 {
		t.Fatalf("%s: want a positive count", envRepeat)
	}
	return n
}

// loadAvg is the 1-minute load average: how busy the machine was.
func loadAvg() string {
	if f := strings.Fields(readFile("/proc/loadavg")); len(f) > 0 {
		return f[0]
	}
	return "?"
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// server is a running `auditexport serve`.
type server struct {
	*testenv.ServerProcess
	conn *grpc.ClientConn
}

func startServer(t *testing.T, dsn, key, dataDir string) *server {
	t.Helper()
	var env []string
	if raceServer {
		env = append(env, "GORACE=halt_on_error=1")
	}
	p, err := testenv.StartServerProcess(aeBin, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--data-dir", dataDir, "--db", dsn, "--bootstrap-admin-key", key, "--allow-private-endpoints", "--shutdown-grace", "5s"},
		env, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ServerProcess: p, conn: conn}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *server) stop(t *testing.T) {
	_ = s.conn.Close()
	if err := s.Stop(30 * time.Second); err != nil {
		t.Error(err)
	}
}

// procMem returns VmRSS and VmHWM (peak resident set) of a process, in KiB.
func procMem(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the server's memory: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// newDatabase returns the DSN of an empty database of the backend.
func newDatabase(t *testing.T, backend, dataDir string) string {
	if backend == "sqlite" {
		return "sqlite://" + filepath.Join(dataDir, "auditexport.db")
	}
	return testenv.NewPostgresDatabase(t, "ae_bench_")
}

func openDB(t *testing.T, dsn string) *sql.DB {
	var db *sql.DB
	var err error
	if path, ok := strings.CutPrefix(dsn, "sqlite://"); ok {
		db, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	} else {
		db, err = sql.Open("pgx", dsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// warm reads every row once, so that neither side pays for a cold page
// cache, and returns the organization of the seeded rows.
func warm(t *testing.T, db *sql.DB) string {
	var org string
	var n, size int64
	err := db.QueryRow("SELECT MIN(org_id), COUNT(*), SUM(LENGTH(metadata) + LENGTH(user_agent)) FROM audit_logs").Scan(&org, &n, &size)
	if err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	var orgs int
	if err := db.QueryRow("SELECT COUNT(DISTINCT org_id) FROM audit_logs").Scan(&orgs); err != nil || orgs != 1 {
		t.Fatalf("want one organization in audit_logs, got %d (%v)", orgs, err)
	}
	return org
}

// pgReachable: PostgreSQL is required under CI and skipped (logged) locally
// when it cannot be reached, like the integration tests.
func pgReachable(t *testing.T) bool { return testenv.PostgresReachable(t) }

// requireTool: the anchor's command-line tools. Missing ones fail under CI
// and skip the test locally.
func requireTool(t *testing.T, name string) {
	if _, err := exec.LookPath(name); err != nil {
		msg := fmt.Sprintf("%s is not on PATH; the anchor pipeline needs it (apt-get install sqlite3 postgresql-client gzip)", name)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func withKey(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
}

func parseRows(t *testing.T, s string, def []int) []int {
	if s == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("bad row count %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// shq quotes s for bash.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func mib(kb int64) float64 { return float64(kb) / 1024 }

func extremes(rs []result, backend string) (small, large *result) {
	for i := range rs {
		r := &rs[i]
		if r.Backend != backend {
			continue
		}
		if small == nil || r.Rows < small.Rows {
			small = r
		}
		if large == nil || r.Rows > large.Rows {
			large = r
		}
	}
	return small, large
}

// report renders docs/BENCHMARKS.md.
func report(t *testing.T, rs []result) []byte {
	var b strings.Builder
	now := time.Now().UTC()
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (bench/export_test.go) on %s. Regenerate with `make bench` (`make bench BENCH_PG_ROWS=1000000` skips 4M rows on PostgreSQL).\n\n", now.Format("2006-01-02 15:04 MST"))
	b.WriteString("**What is measured.** `auditexport seed` fills a fresh database with N synthetic audit events; a schedule\n" +
		"on the whole AUDIT_LOGS element (all 15 columns, default order REQUEST_TIME then insert sequence) exports it\n" +
		"as CSV + gzip to MinIO (S3) on 127.0.0.1 with one Send now. *seconds* is the wall time from the SendNow call to\n" +
		"its terminal SUCCEEDED message (query, encode, compress, multipart upload and commit). *MB/s* is uncompressed\n" +
		"CSV bytes (read back from the object) per second. *peak RSS* is the server's VmHWM from /proc after the export,\n" +
		"measured in a fresh server process per export; *idle RSS* is its VmRSS just before the export. With *runs* > 1\n" +
		"our export and the anchor alternate that many times and each side's best time is shown (peak RSS: the largest).\n" +
		"*load avg* is the 1-minute load average before and after: the machine may have been shared with other work.\n\n")
	b.WriteString("**Anchor** (measured in the same run, on the same database, right after our export with an equally warm\n" +
		"page cache): the shell pipeline a user writes without auditexport, timed as a whole —\n" +
		"`sqlite3 -csv -header DB \"SELECT <15 columns> FROM audit_logs WHERE org_id = '…' ORDER BY request_time, id\" | gzip | s3put …`\n" +
		"and `psql -c \"\\copy (SELECT … ORDER BY request_time, id) TO STDOUT WITH CSV HEADER\" | gzip | s3put …`,\n" +
		"where `s3put` (bench/cmd/s3put) is `aws s3 cp - s3://…`'s equivalent (AWS SDK transfer manager, 8 MiB parts,\n" +
		"5 in flight). *ratio* = anchor seconds / our seconds: above 1 we are faster than the pipeline.\n" +
		"The anchor writes the database's own text forms (e.g. `2026-10-29 03:20:36.219293 +0000 UTC`), we write\n" +
		"RFC 3339 timestamps and escape formulas, so the byte counts differ slightly.\n\n")
	b.WriteString("## Machine\n\n")
	fmt.Fprintf(&b, "- date: %s\n- nproc: %d\n- CPU: %s\n- memory: %s\n- kernel: %s\n- Go: %s (server built without -race)\n",
		now.Format(time.RFC3339), runtime.NumCPU(), cpuModel(), memTotal(), strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")), runtime.Version())
	fmt.Fprintf(&b, "- sqlite3: %s\n- psql: %s\n", toolVersion("sqlite3", "--version"), toolVersion("psql", "--version"))
	if v := pgServerVersion(); v != "" {
		fmt.Fprintf(&b, "- PostgreSQL server: %s\n", v)
	}
	fmt.Fprintf(&b, "- MinIO: %s\n", strings.TrimSpace(readFile(filepath.Join(testenv.ToolsDir(t), "bin", "minio.version"))))
	fmt.Fprintf(&b, "- everything (database, MinIO, server, pipeline) shares these %d CPUs\n\n", runtime.NumCPU())

	for _, backend := range []string{"sqlite", "postgres"} {
		var mine []result
		for _, r := range rs {
			if r.Backend == backend {
				mine = append(mine, r)
			}
		}
		if len(mine) == 0 {
			continue
		}
		name := map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}[backend]
		fmt.Fprintf(&b, "## %s\n\n", name)
		b.WriteString("| rows | seconds | rows/s | MB/s (CSV) | CSV MB | gzip MB | idle RSS | peak RSS | anchor seconds | anchor MB/s | ratio (anchor/ours) | runs | load avg | seeding s |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
		for _, r := range mine {
			fmt.Fprintf(&b, "| %d | %.2f | %.0f | %.1f | %.1f | %.1f | %.1f MiB | %.1f MiB | %.2f | %.1f | %.2f | %d | %s → %s | %.1f |\n",
				r.Rows, r.Seconds, r.rowsPerSec(), r.mbPerSec(), float64(r.CSVBytes)/1e6, float64(r.GzipBytes)/1e6,
				mib(r.RSSBeforeKB), mib(r.PeakRSSKB), r.AnchorSecs, r.anchorMBPerSec(), r.ratio(), r.Repeats,
				r.LoadBefore, r.LoadAfter, r.SeedSeconds)
		}
		for _, r := range mine {
			if r.ratio() < 0.5 {
				fmt.Fprintf(&b, "\n**%d rows: %.1fx slower than the anchor: a performance bug, not noise.**\n", r.Rows, 1/r.ratio())
			}
		}
		small, large := extremes(mine, backend)
		if small != large {
			fmt.Fprintf(&b, "\nPeak RSS at %d rows: %.1f MiB; at %d rows: %.1f MiB (%+.1f MiB for %.1fx the rows).\n",
				small.Rows, mib(small.PeakRSSKB), large.Rows, mib(large.PeakRSSKB),
				mib(large.PeakRSSKB-small.PeakRSSKB), float64(large.Rows)/float64(small.Rows))
		}
		fmt.Fprintf(&b, "\nAnchor command (%d rows):\n\n```sh\n%s\n```\n\n", mine[0].Seeded, mine[0].AnchorScript)
	}
	return []byte(b.String())
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

func toolVersion(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "not installed"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func pgServerVersion() string {
	db, err := sql.Open("pgx", testenv.PGAdminDSN())
	if err != nil {
		return ""
	}
	defer db.Close()
	var v string
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if db.QueryRowContext(ctx, "SHOW server_version").Scan(&v) != nil {
		return ""
	}
	return v
}
