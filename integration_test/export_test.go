package integration_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// startExportServer starts a SQLite server and prints the tail of its log
// when the test fails (a server that crashed is otherwise silent).
func startExportServer(t *testing.T) *Server {
	s := StartServer(t, "sqlite")
	t.Cleanup(func() {
		if logs := s.Logs(); t.Failed() {
			t.Logf("server log tail:\n%s", logs[max(0, len(logs)-8000):])
		}
	})
	return s
}

// must(f()).get(t) returns f's value or fails the test with its error.
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) get(t *testing.T) T {
	t.Helper()
	noErr(t, r.err)
	return r.v
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// slurp reads and closes a body.
func slurp(t *testing.T, rc io.ReadCloser, err error) []byte {
	t.Helper()
	rc = must(rc, err).get(t)
	defer rc.Close()
	return must(io.ReadAll(rc)).get(t)
}

// seedEvents appends n synthetic audit events with the real CLI.
func seedEvents(t *testing.T, s *Server, n int) {
	t.Helper()
	start := time.Now()
	if out, err := exec.Command(toolPath, "seed", "--events", strconv.Itoa(n), "--db", s.DSN).CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	t.Logf("seeded %d events in %s", n, time.Since(start).Round(time.Millisecond))
}

// savedElement explores AUDIT_LOGS, saves the workbook and, when cutoff is
// set, restricts the element to REQUEST_TIME < cutoff (a static result).
func savedElement(t *testing.T, ctx context.Context, cl Clients, cutoff time.Time) (wbID, elID string) {
	t.Helper()
	ex := must(cl.Workbooks.ExploreTable(ctx, &pb.ExploreTableRequest{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"})).get(t)
	wbID, elID = ex.GetWorkbook().GetId(), ex.GetWorkbook().GetElements()[0].GetId()
	must(cl.Workbooks.SaveWorkbookAs(ctx, &pb.SaveWorkbookAsRequest{Id: wbID, Name: "Exports " + randHex(3), Folder: "it"})).get(t)
	if !cutoff.IsZero() {
		must(cl.Workbooks.UpdateWorkbook(ctx, &pb.UpdateWorkbookRequest{
			Workbook: &pb.Workbook{Id: wbID, Elements: []*pb.Element{{
				Id: elID, Source: &pb.TableSource{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"},
				Filters: []*pb.Filter{{Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_LESS_THAN,
					Values: []string{cutoff.UTC().Format(time.RFC3339Nano)}}},
			}}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"elements"}},
		})).get(t)
	}
	return wbID, elID
}

// elementResult is the element's query result, all pages.
type elementResult struct {
	cols []*pb.Column
	rows [][]*structpb.Value
}

func queryAll(t *testing.T, ctx context.Context, cl Clients, wbID, elID string) elementResult {
	t.Helper()
	var res elementResult
	var total int64
	for token, page := "", 1; ; page++ {
		r, err := cl.Workbooks.QueryElement(ctx, &pb.QueryElementRequest{WorkbookId: wbID, ElementId: elID, PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatalf("QueryElement page %d: %v", page, err)
		}
		res.cols, total = r.GetColumns(), r.GetTotalRows()
		for _, row := range r.GetRows() {
			res.rows = append(res.rows, row.GetValues())
		}
		if token = r.GetNextPageToken(); token == "" {
			break
		}
	}
	if int64(len(res.rows)) != total {
		t.Fatalf("QueryElement pages hold %d rows, total_rows says %d", len(res.rows), total)
	}
	return res
}

func createSchedule(t *testing.T, ctx context.Context, cl Clients, wbID, elID, integration, uri string, f pb.Format, c pb.Compression, escape *bool) string {
	t.Helper()
	r := must(cl.Schedules.CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: wbID, Schedule: &pb.Schedule{
		Name: "it " + randHex(3), ElementId: elID, Format: f, Compression: c, CsvEscapeFormulas: escape,
		Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{StorageIntegrationName: integration, Uri: uri}},
		Cron:        "0 0 1 1 *", TimeZone: "UTC", // never fires during the test
	}})).get(t)
	return r.GetSchedule().GetId()
}

func s3Integration(name, dest string, mc *testenv.S3) *pb.StorageIntegration {
	return &pb.StorageIntegration{Name: name, Provider: pb.Provider_PROVIDER_S3, Destination: dest, Region: mc.Region, Endpoint: mc.Endpoint,
		Credentials: &pb.StorageCredentials{Kind: &pb.StorageCredentials_AwsAccessKey{
			AwsAccessKey: &pb.AwsAccessKey{AccessKeyId: mc.AccessKey, SecretAccessKey: mc.SecretKey}}}}
}

// progressMsg is one streamed ExportProgress and when it arrived.
type progressMsg = testenv.Progress

// sendNow calls SendNow over gRPC and collects the stream to its end.
func sendNow(t *testing.T, ctx context.Context, cl Clients, schID string) []progressMsg {
	t.Helper()
	msgs, err := testenv.SendNow(t, ctx, cl.Schedules, schID).Wait()
	if err != nil {
		t.Fatalf("SendNow stream: %v", err)
	}
	return msgs
}

// checkStream asserts a complete progress stream of one run: at least
// minMsgs messages, the same run id, monotonic counters, exactly one terminal
// message, last, and SUCCEEDED. It returns the terminal message.
func checkStream(t *testing.T, label string, msgs []progressMsg, minMsgs int) *pb.ExportProgress {
	t.Helper()
	var trace []string
	for _, m := range msgs {
		trace = append(trace, fmt.Sprintf("%s@%s rows=%d bytes=%d", strings.TrimPrefix(m.P.GetPhase().String(), "EXPORT_PHASE_"),
			m.At.Round(time.Millisecond), m.P.GetRowsExported(), m.P.GetBytesUploaded()))
	}
	shown := trace
	if len(trace) > 12 {
		shown = append(append(append([]string{}, trace[:8]...), "..."), trace[len(trace)-3:]...)
	}
	t.Logf("%s: %d messages: %s", label, len(msgs), strings.Join(shown, ", "))
	if len(msgs) == 0 {
		t.Fatalf("%s: empty stream", label)
	}
	if len(msgs) < minMsgs {
		t.Errorf("%s: %d messages, want >= %d", label, len(msgs), minMsgs)
	}
	terminals := 0
	for i, m := range msgs {
		if m.P.GetRunId() != msgs[0].P.GetRunId() {
			t.Errorf("%s: message %d has run_id %q, the first had %q", label, i, m.P.GetRunId(), msgs[0].P.GetRunId())
		}
		if i > 0 && (m.P.GetRowsExported() < msgs[i-1].P.GetRowsExported() || m.P.GetBytesUploaded() < msgs[i-1].P.GetBytesUploaded()) {
			t.Errorf("%s: progress went backwards at message %d: %s -> %s", label, i, trace[i-1], trace[i])
		}
		if testenv.IsTerminal(m.P.GetPhase()) {
			terminals++
		}
	}
	last := msgs[len(msgs)-1].P
	if terminals != 1 || !testenv.IsTerminal(last.GetPhase()) {
		t.Errorf("%s: %d terminal messages (last is %v), want exactly one, last", label, terminals, last.GetPhase())
	}
	if last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Fatalf("%s: terminal phase %v (error %v), want SUCCEEDED", label, last.GetPhase(), last.GetError())
	}
	return last
}

func checkFirstWithin(t *testing.T, label string, msgs []progressMsg, limit time.Duration) {
	t.Helper()
	if first := msgs[0].At; first > limit {
		t.Errorf("%s: first message after %s, want within %s", label, first, limit)
	} else {
		t.Logf("%s: first message after %s", label, first.Round(time.Microsecond))
	}
}

// restStream makes a streaming REST call as the admin and collects the
// chunked NDJSON lines ({"result":{"progress":{...}}}) to the end.
func restStream(t *testing.T, ctx context.Context, s *Server, method, path, body string) []progressMsg {
	t.Helper()
	rs := testenv.RESTStream(t, ctx, s.HTTPURL, method, path, s.AdminKey, body)
	msgs, err := rs.Wait()
	if rs.HTTPStatus != http.StatusOK {
		t.Fatalf("%s %s: status %d: %v", method, path, rs.HTTPStatus, err)
	}
	if te := rs.TransferEncoding; len(te) == 0 || te[0] != "chunked" {
		t.Errorf("%s %s: transfer encoding %v, want chunked", method, path, te)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return msgs
}

// readObject fetches an object by its rendered URI with the provider's SDK
// (or the file system for LOCAL), not with our destination code.
func readObject(t *testing.T, ctx context.Context, uri string, mc *testenv.S3, gcs *testenv.GCS, az *testenv.Azure) []byte {
	t.Helper()
	u := must(url.Parse(uri)).get(t)
	key := strings.TrimPrefix(u.Path, "/")
	switch u.Scheme {
	case "s3":
		out, err := mc.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.Host), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("S3 GetObject %s: %v", uri, err)
		}
		return slurp(t, out.Body, nil)
	case "gs", "gcs":
		c := must(storage.NewClient(ctx, option.WithEndpoint(gcs.Endpoint+"/storage/v1/"), option.WithoutAuthentication())).get(t)
		defer c.Close()
		r, err := c.Bucket(u.Host).Object(key).NewReader(ctx)
		return slurp(t, r, err)
	case "azure":
		container, blobName, _ := strings.Cut(key, "/")
		resp, err := az.ServiceClient(t).NewContainerClient(container).NewBlobClient(blobName).DownloadStream(ctx, nil)
		return slurp(t, resp.Body, err)
	case "file":
		return must(os.ReadFile(u.Path)).get(t)
	}
	t.Fatalf("unexpected object_uri scheme in %q", uri)
	return nil
}

// exportTimeRE is RFC 3339 in UTC with microseconds, the CSV/JSONL layout.
var exportTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// cellMismatch compares one exported cell with the element's value; kind is
// csv, jsonl or parquet (parquet timestamps arrive as epoch microseconds).
func cellMismatch(typ string, want *structpb.Value, got any, kind string, escape bool) string {
	w := want.AsInterface()
	if w == nil {
		if got == nil || (kind == "csv" && got == "") {
			return ""
		}
		return fmt.Sprintf("got %#v, want null", got)
	}
	switch typ {
	case "TIMESTAMP":
		wt, err := time.Parse(time.RFC3339Nano, scalarText(w))
		if err != nil {
			return fmt.Sprintf("QueryElement timestamp %v: %v", w, err)
		}
		if kind == "parquet" {
			if us, ok := got.(float64); !ok || int64(us) != wt.UnixMicro() {
				return fmt.Sprintf("got %#v µs, want %d (%s)", got, wt.UnixMicro(), wt)
			}
			return ""
		}
		gs, _ := got.(string)
		if gt, err := time.Parse(time.RFC3339Nano, gs); !exportTimeRE.MatchString(gs) || err != nil || !gt.Equal(wt) {
			return fmt.Sprintf("got %#v, want the instant %s as RFC 3339 UTC with microseconds", got, wt.Format(time.RFC3339Nano))
		}
		return ""
	case "JSON":
		g := got
		if s, ok := got.(string); ok && json.Unmarshal([]byte(s), &g) != nil {
			return fmt.Sprintf("got non-JSON %q", s)
		}
		if !reflect.DeepEqual(g, w) {
			return fmt.Sprintf("got %#v, want %#v", g, w)
		}
		return ""
	}
	ws, gs := scalarText(w), scalarText(got)
	if kind == "csv" && escape && ws != "" && strings.ContainsRune("=+-@\t\r", rune(ws[0])) {
		ws = "'" + ws // the documented formula escaping
	}
	if ws != gs {
		return fmt.Sprintf("got %q, want %q", gs, ws)
	}
	return ""
}

func scalarText(v any) string {
	switch v := v.(type) {
	case string: // most cells: no fmt (this runs per cell, under -race)
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// compareRows checks the exported columns and every row against the
// element's result, in order.
func compareRows(t *testing.T, label string, want elementResult, header []string, rows [][]any, kind string, escape bool) {
	t.Helper()
	var names []string
	for _, c := range want.cols {
		names = append(names, c.GetName())
	}
	if strings.Join(header, ",") != strings.Join(names, ",") {
		t.Errorf("%s: columns %v, want %v (the element's order)", label, header, names)
	}
	if len(rows) != len(want.rows) {
		t.Fatalf("%s: %d rows, want %d", label, len(rows), len(want.rows))
	}
	bad := 0
	for i, row := range rows {
		if len(row) != len(want.cols) {
			t.Fatalf("%s: row %d has %d cells, want %d", label, i, len(row), len(want.cols))
		}
		for j, c := range want.cols {
			if msg := cellMismatch(c.GetType(), want.rows[i][j], row[j], kind, escape); msg != "" {
				t.Errorf("%s: row %d column %s: %s", label, i, c.GetName(), msg)
				if bad++; bad >= 10 {
					t.Fatalf("%s: too many mismatches", label)
				}
			}
		}
	}
}

// verifyExport decodes an exported object independently (encoding/csv,
// encoding/json, compress/gzip, klauspost zstd, DuckDB for Parquet) and
// compares it with the element's query result row for row.
func verifyExport(t *testing.T, label string, data []byte, f pb.Format, c pb.Compression, escape bool, want elementResult) {
	t.Helper()
	raw := data
	switch c {
	case pb.Compression_COMPRESSION_GZIP:
		zr := must(gzip.NewReader(bytes.NewReader(data))).get(t)
		raw = slurp(t, zr, nil)
	case pb.Compression_COMPRESSION_ZSTD:
		zr := must(zstd.NewReader(bytes.NewReader(data))).get(t)
		raw = must(io.ReadAll(zr)).get(t)
		zr.Close()
	}
	var header []string
	var rows [][]any
	switch f {
	case pb.Format_FORMAT_CSV:
		recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil || len(recs) == 0 {
			t.Fatalf("%s: CSV: %v (%d records)", label, err, len(recs))
		}
		header = recs[0]
		for _, r := range recs[1:] {
			row := make([]any, len(r))
			for i, v := range r {
				row[i] = v
			}
			rows = append(rows, row)
		}
		compareRows(t, label, want, header, rows, "csv", escape)
	case pb.Format_FORMAT_JSONL:
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			keys, vals := decodeOrderedObject(t, fmt.Sprintf("%s line %d", label, n), sc.Bytes())
			if header == nil {
				header = keys
			} else if strings.Join(keys, ",") != strings.Join(header, ",") {
				t.Fatalf("%s: line %d has keys %v, line 1 had %v", label, n, keys, header)
			}
			rows = append(rows, vals)
		}
		noErr(t, sc.Err())
		compareRows(t, label, want, header, rows, "jsonl", false)
	case pb.Format_FORMAT_PARQUET:
		verifyParquet(t, label, data, want)
	}
}

// decodeOrderedObject decodes one JSON object, keeping its key order.
func decodeOrderedObject(t *testing.T, label string, line []byte) ([]string, []any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s: not a JSON object: %.200s", label, line)
	}
	var keys []string
	var vals []any
	for dec.More() {
		k := must(dec.Token()).get(t)
		var v any
		noErr(t, dec.Decode(&v))
		keys, vals = append(keys, k.(string)), append(vals, v)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		t.Fatalf("%s: unterminated object", label)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("%s: trailing data after the object", label)
	}
	return keys, vals
}

// verifyParquet reads the file with DuckDB in file row order; timestamps
// must be typed (TIMESTAMP WITH TIME ZONE) and are compared as instants.
func verifyParquet(t *testing.T, label string, data []byte, want elementResult) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.parquet")
	noErr(t, os.WriteFile(path, data, 0o600))
	extra := ""
	for _, c := range want.cols {
		if c.GetType() == "TIMESTAMP" {
			extra += fmt.Sprintf(`, epoch_us("%s") AS "__us_%s"`, c.GetName(), c.GetName())
		}
	}
	res := testenv.DuckDBQueryResult(t, fmt.Sprintf("SELECT *%s FROM read_parquet('%s', file_row_number=true) ORDER BY file_row_number", extra, path))
	types := map[string]string{}
	var header []string
	for i, name := range res.Columns {
		if name != "file_row_number" && !strings.HasPrefix(name, "__us_") {
			header, types[name] = append(header, name), res.Types[i]
		}
	}
	rows := make([][]any, len(res.Rows))
	for _, c := range want.cols {
		if c.GetType() == "TIMESTAMP" && types[c.GetName()] != "TIMESTAMP WITH TIME ZONE" {
			t.Errorf("%s: Parquet column %s reads as %q, want TIMESTAMP WITH TIME ZONE", label, c.GetName(), types[c.GetName()])
		}
		for i, r := range res.Rows {
			v := r[c.GetName()]
			if c.GetType() == "TIMESTAMP" && v != nil {
				v = r["__us_"+c.GetName()]
			}
			rows[i] = append(rows[i], v)
		}
	}
	compareRows(t, label, want, header, rows, "parquet", false) // values by name; column order checked too
}

// serviceAccountJSON is syntactically valid; the emulator ignores it.
const serviceAccountJSON = `{"type":"service_account","client_email":"it@example.iam.gserviceaccount.com",` +
	`"private_key":"-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n"}`

// TestSendNowProviders: Send now into MinIO, fake-gcs-server, Azurite and a
// local directory in CSV, CSV+gzip, JSONL+zstd and Parquet; every object,
// read back with the provider's SDK and independent decoders, equals the
// element's query result row for row, and the run records its size and hash.
func TestSendNowProviders(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t) // 16 exports of 20k rows; TestVerifiableExports drives all four providers under -race
	s := startExportServer(t)
	seedEvents(t, s, 20000)
	cutoff := time.Now().UTC() // before any API call: the element's result is static
	time.Sleep(2 * time.Millisecond)

	mc := testenv.StartMinIO(t)
	mc.CreateBucket(t, "exports")
	gcs := testenv.StartFakeGCS(t)
	gcs.CreateBucket(t, "exports-gcs")
	az := testenv.StartAzurite(t)
	az.CreateContainer(t, "exports")

	ctx := Ctx(s.AdminKey)
	cl := s.Clients()
	wbID, elID := savedElement(t, ctx, cl, cutoff)
	want := queryAll(t, ctx, cl, wbID, elID)
	if len(want.rows) != 20000 {
		t.Fatalf("element has %d rows, want the 20000 seeded", len(want.rows))
	}

	azBase := "azure://devstoreaccount1.blob.core.windows.net/exports/audit/"
	localBase := "file://" + s.LocalDir("", "local") + "/"
	targets := []*pb.StorageIntegration{
		s3Integration("it_s3", "s3://exports/audit/", mc),
		{Name: "it_gcs", Provider: pb.Provider_PROVIDER_GCS, Destination: "gcs://exports-gcs/audit/", Endpoint: gcs.Endpoint,
			Credentials: &pb.StorageCredentials{Kind: &pb.StorageCredentials_GcsServiceAccount{
				GcsServiceAccount: &pb.GcsServiceAccount{JsonKey: serviceAccountJSON}}}},
		{Name: "it_azure", Provider: pb.Provider_PROVIDER_AZURE_BLOB, Destination: azBase, Endpoint: az.Endpoint,
			Credentials: &pb.StorageCredentials{Kind: &pb.StorageCredentials_AzureSharedKey{
				AzureSharedKey: &pb.AzureSharedKey{AccountName: az.Account, AccountKey: az.Key}}}},
		{Name: "it_local", Provider: pb.Provider_PROVIDER_LOCAL, Destination: localBase},
	}
	formats := []struct { // escape nil: the default (true)
		name, ext string
		f         pb.Format
		c         pb.Compression
		escape    *bool
	}{
		{"csv", ".csv", pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_NONE, proto.Bool(false)},
		{"csv_gzip", ".csv.gz", pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_GZIP, nil},
		{"jsonl_zstd", ".jsonl.zst", pb.Format_FORMAT_JSONL, pb.Compression_COMPRESSION_ZSTD, nil},
		{"parquet", ".parquet", pb.Format_FORMAT_PARQUET, pb.Compression_COMPRESSION_NONE, nil},
	}
	for _, in := range targets {
		name := strings.TrimPrefix(in.GetName(), "it_")
		t.Run(name, func(t *testing.T) {
			must(cl.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{StorageIntegration: in})).get(t)
			for _, f := range formats {
				t.Run(f.name, func(t *testing.T) {
					start := time.Now()
					uri := in.GetDestination() + f.name + "/{run_id}" + f.ext
					schID := createSchedule(t, ctx, cl, wbID, elID, in.GetName(), uri, f.f, f.c, f.escape)
					sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
					defer cancel()
					last := checkStream(t, "SendNow", sendNow(t, sctx, cl, schID), 2)
					run := must(cl.Schedules.GetExportRun(ctx, &pb.GetExportRunRequest{Id: last.GetRunId()})).get(t).GetRun()
					if wantURI := strings.ReplaceAll(uri, "{run_id}", run.GetId()); run.GetObjectUri() != wantURI {
						t.Errorf("object_uri %q, want %q", run.GetObjectUri(), wantURI)
					}
					if last.GetObjectUri() != run.GetObjectUri() {
						t.Errorf("terminal progress object_uri %q, the run has %q", last.GetObjectUri(), run.GetObjectUri())
					}
					data := readObject(t, sctx, run.GetObjectUri(), mc, gcs, az)
					sum := sha256.Sum256(data)
					if run.GetState() != pb.RunState_RUN_STATE_SUCCEEDED || run.GetRows() != int64(len(want.rows)) ||
						run.GetBytes() != int64(len(data)) || run.GetChecksum() != "sha256:"+hex.EncodeToString(sum[:]) {
						t.Errorf("run %s: state %v rows %d bytes %d checksum %s; want SUCCEEDED, %d rows, %d bytes, sha256:%x",
							run.GetId(), run.GetState(), run.GetRows(), run.GetBytes(), run.GetChecksum(), len(want.rows), len(data), sum)
					}
					if last.GetRowsExported() != run.GetRows() || last.GetBytesUploaded() != run.GetBytes() {
						t.Errorf("terminal progress rows %d bytes %d, the run has %d / %d", last.GetRowsExported(), last.GetBytesUploaded(), run.GetRows(), run.GetBytes())
					}
					verifyExport(t, name+"/"+f.name, data, f.f, f.c, f.escape == nil || *f.escape, want)
					t.Logf("%s/%s: %d bytes, %s", name, f.name, len(data), time.Since(start).Round(time.Millisecond))
				})
			}
		})
	}
}

// TestSendNowStreams: a 200k-row Send now streams live, monotonic progress
// over gRPC and over REST (chunked NDJSON), a second client watching the run
// sees it finish, and a client that disconnects does not stop the run.
func TestSendNowStreams(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	s := startExportServer(t)
	seedEvents(t, s, 200000)
	mc := testenv.StartMinIO(t)
	mc.CreateBucket(t, "exports")

	ctx := Ctx(s.AdminKey)
	cl := s.Clients()
	must(cl.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
		StorageIntegration: s3Integration("it_stream", "s3://exports/stream/", mc)})).get(t)
	wbID, elID := savedElement(t, ctx, cl, time.Time{})
	schID := createSchedule(t, ctx, cl, wbID, elID, "it_stream", "s3://exports/stream/{run_id}.csv",
		pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_NONE, nil)
	// A budget for three 200k-row runs through the -race server on a CI
	// machine shared with the other parallel tests (one took 92 s there);
	// it bounds the test, it asserts no speed (that is bench/'s job).
	sctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()

	// gRPC Send now; a second client watches the same run from its first message on.
	sn := testenv.SendNow(t, sctx, cl.Schedules, schID)
	watcher := testenv.Watch(t, sctx, s.Clients().Schedules, sn.RunID())
	msgs, err := sn.Wait()
	if err != nil {
		t.Fatalf("SendNow stream: %v", err)
	}
	last := checkStream(t, "gRPC SendNow", msgs, 3)
	checkFirstWithin(t, "gRPC SendNow", msgs, 200*time.Millisecond)
	grpcRun := last.GetRunId()
	if last.GetRowsExported() < 200000 {
		t.Errorf("gRPC SendNow exported %d rows, want >= 200000", last.GetRowsExported())
	}
	wmsgs, err := watcher.Wait()
	if err != nil {
		t.Fatalf("WatchExportRun: %v", err)
	}
	if wl := checkStream(t, "gRPC WatchExportRun", wmsgs, 1); wl.GetRunId() != grpcRun || wl.GetRowsExported() != last.GetRowsExported() {
		t.Errorf("the watcher ended on run %s with %d rows; Send now on run %s with %d", wl.GetRunId(), wl.GetRowsExported(), grpcRun, last.GetRowsExported())
	}

	// The same over REST.
	rmsgs := restStream(t, sctx, s, http.MethodPost, "/v1/schedules/"+schID+":sendNow", "{}")
	restRun := checkStream(t, "REST sendNow", rmsgs, 3).GetRunId()
	checkFirstWithin(t, "REST sendNow", rmsgs, 200*time.Millisecond)
	if restRun == grpcRun {
		t.Fatalf("REST Send now reported the gRPC run %s", restRun)
	}

	t.Run("rest_watch_finished_run", func(t *testing.T) {
		wl := checkStream(t, "REST watch", restStream(t, sctx, s, http.MethodGet, "/v1/exportRuns/"+grpcRun+":watch", ""), 1)
		if wl.GetRunId() != grpcRun || wl.GetRowsExported() != last.GetRowsExported() || wl.GetObjectUri() != last.GetObjectUri() {
			t.Errorf("REST watch of %s answered %v; Send now ended with %v", grpcRun, wl, last)
		}
	})

	// A client that goes away after the first message does not stop the run.
	dctx, dcancel := context.WithCancel(sctx)
	leftRun := testenv.SendNow(t, dctx, cl.Schedules, schID).RunID()
	dcancel()
	var run *pb.ExportRun
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		run = must(cl.Schedules.GetExportRun(ctx, &pb.GetExportRunRequest{Id: leftRun})).get(t).GetRun()
		if st := run.GetState(); st != pb.RunState_RUN_STATE_QUEUED && st != pb.RunState_RUN_STATE_RUNNING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("abandoned run %s still %v after 2 minutes", leftRun, run.GetState())
		}
	}
	if run.GetState() != pb.RunState_RUN_STATE_SUCCEEDED || run.GetRows() < 200000 {
		t.Errorf("abandoned run %s ended %v with %d rows (error %v), want SUCCEEDED", leftRun, run.GetState(), run.GetRows(), run.GetError())
	}

	// History, newest first: in one page, and walking pages of one.
	wantIDs := []string{leftRun, restRun, grpcRun}
	lr := must(cl.Schedules.ListExportRuns(ctx, &pb.ListExportRunsRequest{ScheduleId: schID, PageSize: 50})).get(t)
	var ids []string
	for i, r := range lr.GetRuns() {
		ids = append(ids, r.GetId())
		if r.GetTrigger() != pb.Trigger_TRIGGER_SEND_NOW || r.GetState() != pb.RunState_RUN_STATE_SUCCEEDED {
			t.Errorf("listed run %s: trigger %v state %v", r.GetId(), r.GetTrigger(), r.GetState())
		}
		if i > 0 && r.GetCreateTime().AsTime().After(lr.GetRuns()[i-1].GetCreateTime().AsTime()) {
			t.Errorf("ListExportRuns is not newest first at %d", i)
		}
	}
	if !reflect.DeepEqual(ids, wantIDs) {
		t.Errorf("ListExportRuns = %v, want %v (newest first)", ids, wantIDs)
	}
	t.Run("list_runs_pages", func(t *testing.T) {
		var paged []string
		for token := ""; ; {
			r, err := cl.Schedules.ListExportRuns(ctx, &pb.ListExportRunsRequest{ScheduleId: schID, PageSize: 1, PageToken: token})
			if err != nil {
				t.Fatalf("ListExportRuns page %d: %v", len(paged)+1, err)
			}
			for _, x := range r.GetRuns() {
				paged = append(paged, x.GetId())
			}
			if token = r.GetNextPageToken(); token == "" || len(paged) > 10 {
				break
			}
		}
		if !reflect.DeepEqual(paged, wantIDs) {
			t.Errorf("ListExportRuns in pages of 1 = %v, want %v", paged, wantIDs)
		}
	})
}
