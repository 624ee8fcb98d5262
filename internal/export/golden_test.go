package export_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/testenv"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden.txt from this implementation's output")

// goldenRows is more than one keyset page of the reader (5,000 rows), so
// page boundaries fall inside the data, on rows with tied sort keys.
const goldenRows = 6007

// goldenEvents is a deterministic table of awkward values: CSV
// metacharacters, formula prefixes, leading spaces, quotes, control
// characters, non-ASCII, U+2028, invalid JSON metadata, timestamps with 0
// to 6 fractional digits, and many ties in every sort key.
func goldenEvents() []*auditlog.Event {
	r := rand.New(rand.NewPCG(7, 11))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	text := func() string {
		return pick("", "plain", "with,comma", `with "quotes"`, "line\nbreak", "cr\rhere", "crlf\r\nx", " leading space",
			"\tleading tab", "=SUM(A1)", "+1", "-2", "@cmd", "Ünïcödé ✓", "\u2028sep", `back\slash`, "trailing ", `\.`, "ctl\x01x", "a\"")
	}
	base := time.Date(2026, 3, 29, 0, 59, 0, 0, time.UTC)
	out := make([]*auditlog.Event, goldenRows)
	for i := range out {
		// Timestamps repeat (ties) and carry 0..6 fractional digits.
		frac := []int{0, 100000, 120000, 123000, 123400, 123450, 123456}[r.IntN(7)]
		t := base.Add(time.Duration(r.IntN(600))*time.Second + time.Duration(frac)*time.Microsecond)
		meta := pick(`{}`, `{"a":1}`, `{"note":"x,y","n":[1,2,{"k":"v"}]}`, `not json`, `{"s":"line\nbreak"}`, `"a string"`, `[1,2]`)
		out[i] = &auditlog.Event{
			Category: pick("ACCESS", "EXPORTS", "OBJECT_INTERACTION"), Type: pick("A", "B", "C", "D"),
			Status: pick("SUCCESS", "FAILURE"), UserID: text(), UserEmail: pick("a@x", "b@x", "", "Ü@x", "=x@y"),
			AccountType: text(), ObjectType: text(), ObjectID: text(), RequestID: fmt.Sprintf("r%05d", i),
			IPAddress: pick("127.0.0.1", "::1", ""), UserAgent: text(), ErrorCode: pick("", "NOT_FOUND"),
			Time: t, Metadata: map[string]any{"raw": meta},
		}
	}
	return out
}

// insertGolden writes the events with fixed event ids (the Recorder makes
// random ones) and returns the insert sequence of the first and last row.
func insertGolden(t *testing.T, ctx context.Context, d *db.DB) (first, last int64) {
	t.Helper()
	evs := goldenEvents()
	for start := 0; start < len(evs); start += 500 {
		end := min(start+500, len(evs))
		bulk := make([]*ent.AuditEventCreate, 0, end-start)
		for i, e := range evs[start:end] {
			bulk = append(bulk, d.Client.AuditEvent.Create().
				SetEventID(fmt.Sprintf("evt_%06d", start+i)).SetRequestTime(e.Time).
				SetEventCategory(e.Category).SetEventType(e.Type).SetEventStatus(e.Status).
				SetUserID(e.UserID).SetUserEmail(e.UserEmail).SetAccountType(e.AccountType).
				SetObjectType(e.ObjectType).SetObjectID(e.ObjectID).SetRequestID(e.RequestID).
				SetIPAddress(e.IPAddress).SetUserAgent(e.UserAgent).SetErrorCode(e.ErrorCode).
				SetMetadata(e.Metadata["raw"].(string)))
		}
		rows, err := d.Client.AuditEvent.CreateBulk(bulk...).Save(ctx)
		testenv.Must(t, err)
		if start == 0 {
			first = rows[0].ID
		}
		last = rows[len(rows)-1].ID
	}
	return first, last
}

type goldenCase struct {
	name string
	plan func(first, last int64) export.Plan
}

var goldenNow = time.Date(2026, 3, 29, 1, 5, 0, 0, time.UTC)

func goldenCases() []goldenCase {
	all := func(format string, escape bool) func(first, last int64) export.Plan {
		return func(first, last int64) export.Plan {
			return export.Plan{Spec: auditlog.Spec{}, Now: goldenNow, Format: format, Compression: export.None,
				EscapeFormulas: escape, SeqTo: last}
		}
	}
	sorted := func(format string) func(first, last int64) export.Plan {
		return func(first, last int64) export.Plan {
			return export.Plan{Now: goldenNow, Format: format, Compression: export.None, SeqTo: last,
				Spec: auditlog.Spec{
					Columns: []string{"METADATA", "USER_EMAIL", "REQUEST_TIME", "OBJECT_ID", "EVENT_ID"},
					Filters: []auditlog.Filter{{Column: "EVENT_STATUS", Op: auditlog.OpNotEquals, Values: []string{"FAILURE"}}},
					Sort:    []auditlog.SortKey{{Column: "USER_EMAIL", Descending: true}, {Column: "REQUEST_TIME"}},
				}}
		}
	}
	return []goldenCase{
		{"csv", all(export.CSV, false)},
		{"csv-escape", all(export.CSV, true)},
		{"jsonl", all(export.JSONL, false)},
		{"parquet", all(export.Parquet, false)},
		{"csv-sorted", sorted(export.CSV)},
		{"jsonl-sorted", sorted(export.JSONL)},
		{"parquet-sorted", sorted(export.Parquet)},
		{"csv-window", func(first, last int64) export.Plan {
			// An incremental run's window, bounded by a relative time range too.
			return export.Plan{Now: goldenNow, Format: export.CSV, Compression: export.None,
				SeqFrom: first + 1000, SeqTo: last - 1000,
				Spec: auditlog.Spec{TimeRange: &auditlog.TimeRange{Last: 8 * time.Minute},
					Sort: []auditlog.SortKey{{Column: "REQUEST_TIME", Descending: true}}}}
		}},
	}
}

// TestExportGolden: every format's bytes, for a table of awkward values,
// equal testdata/golden.txt on both databases — the output of the
// implementation it was written from (regenerate only on purpose, with
// -update-golden, and say why in the commit). Compressed exports
// decompress to the same bytes.
func TestExportGolden(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx := testenv.NewOrg(t, d, "golden@example.com").Ctx
		first, last := insertGolden(t, ctx, d)
		got := map[string]string{}
		for i, c := range goldenCases() {
			p := c.plan(first, last)
			p.MD5 = i%2 == 0 // a GCS destination's plan
			var buf bytes.Buffer
			var cnt export.Counters
			st, err := export.Write(ctx, d, p, &buf, &cnt)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			sum := sha256.Sum256(buf.Bytes())
			if st.Checksum != "sha256:"+hex.EncodeToString(sum[:]) || st.Bytes != int64(buf.Len()) {
				t.Errorf("%s: stats %+v do not describe the %d bytes written", c.name, st, buf.Len())
			}
			if m := md5.Sum(buf.Bytes()); p.MD5 && !bytes.Equal(st.MD5, m[:]) || !p.MD5 && st.MD5 != nil {
				t.Errorf("%s: MD5 %x with Plan.MD5 %v; the bytes' MD5 is %x", c.name, st.MD5, p.MD5, m)
			}
			got[c.name] = fmt.Sprintf("%x %d", sum, st.Rows)
			if p.Format == export.Parquet {
				continue
			}
			for _, comp := range []string{export.Gzip, export.Zstd} {
				p.Compression = comp
				var zbuf bytes.Buffer
				if _, err := export.Write(ctx, d, p, &zbuf, &export.Counters{}); err != nil {
					t.Fatalf("%s %s: %v", c.name, comp, err)
				}
				if plain := decompress(t, comp, zbuf.Bytes()); !bytes.Equal(plain, buf.Bytes()) {
					t.Errorf("%s: %s output decompresses to %d bytes that differ from the uncompressed export (%d bytes)", c.name, comp, len(plain), buf.Len())
				}
			}
		}
		compareGolden(t, got)
	})
}

func decompress(t *testing.T, comp string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch comp {
	case export.Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		testenv.Must(t, err)
		r = zr
	case export.Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		testenv.Must(t, err)
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(r)
	testenv.Must(t, err)
	return out
}

func compareGolden(t *testing.T, got map[string]string) {
	t.Helper()
	path := filepath.Join("testdata", "golden.txt")
	if *updateGolden {
		var names []string
		for n := range got {
			names = append(names, n)
		}
		sort.Strings(names)
		var b strings.Builder
		b.WriteString("# TestExportGolden: <case> <sha256 of the export> <rows>\n")
		for _, n := range names {
			fmt.Fprintf(&b, "%s %s\n", n, got[n])
		}
		testenv.Must(t, os.MkdirAll("testdata", 0o755))
		testenv.Must(t, os.WriteFile(path, []byte(b.String()), 0o644))
		return
	}
	raw, err := os.ReadFile(path)
	testenv.Must(t, err)
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		want[name] = rest
	}
	if len(want) != len(got) {
		t.Errorf("golden file has %d cases, the test made %d", len(want), len(got))
	}
	for name, g := range got {
		if want[name] != g {
			t.Errorf("%s: export is %s, golden %s", name, g, want[name])
		}
	}
}
