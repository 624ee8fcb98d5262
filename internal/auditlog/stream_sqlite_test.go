package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/db"
)

// streamText is every cell Stream yields, one line per row.
func streamText(t *testing.T, ctx context.Context, d *db.DB, s Spec, from, to int64) []byte {
	t.Helper()
	cols, err := OutputColumns(s)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = Stream(ctx, d, s, fixtureNow, from, to, NewBatch(cols), func(b *Batch) (*Batch, error) {
		for r := range b.Len() {
			for c := range cols {
				out.Write(b.Cell(r, c))
				out.WriteByte(0)
			}
			out.WriteByte('\n')
		}
		b.Reset()
		return b, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestSQLiteDirectReader: Stream on a SQLite file reads through its own
// connection to the SQLite library (stream_sqlite.go). For every kind of
// spec — filters binding strings, times and integers, relative time ranges,
// sorts that page by text, time and the insert sequence, insert-sequence
// windows, values with separators, quotes, NUL-free control characters and
// empty strings — it yields exactly the cells the database/sql path yields
// on the same file.
func TestSQLiteDirectReader(t *testing.T) {
	old := scanBatch
	scanBatch = 97 // many keyset pages
	t.Cleanup(func() { scanBatch = old })
	d := openSQLite(t)
	if d.SQLitePath == "" {
		t.Fatal("a SQLite file database has no SQLitePath: Stream would not read it directly")
	}
	ctx := orgA()
	if err := Seed(ctx, d, "org_a", 1500, fixtureNow, 3*time.Hour, 11); err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(d.Client, nil)
	for i, agent := range []string{"", "a,b\"c\"\x1f\td\r\n", "ünï\u2028cödé", "=cmd|' /C calc'!A0"} {
		e := Event{OrgID: "org_a", Category: "ACCESS", Type: "API_KEY_AUTH", UserAgent: agent,
			UserEmail: fmt.Sprintf("odd%d@example.com", i), Time: fixtureNow.Add(-time.Duration(i) * time.Minute)}
		if _, err := r.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	viaSQL := *d
	viaSQL.SQLitePath = "" // Stream then reads through the pool
	specs := []Spec{
		{},
		{Sort: []SortKey{{Column: "REQUEST_TIME", Descending: true}}},
		{Sort: []SortKey{{Column: "USER_EMAIL"}, {Column: "EVENT_TYPE", Descending: true}}},
		{TimeRange: &TimeRange{Last: time.Hour}},
		{Filters: []Filter{{Column: "REQUEST_TIME", Op: OpBetween, Values: []string{
			fixtureNow.Add(-2 * time.Hour).Format(time.RFC3339), fixtureNow.Add(-time.Hour).Format(time.RFC3339)}}}},
		{Filters: []Filter{{Column: "REQUEST_TIME", Op: OpGreaterThan, Values: []string{fixtureNow.Add(-30 * time.Minute).Format(time.RFC3339Nano)}}}},
		{Filters: []Filter{{Column: "USER_EMAIL", Op: OpContains, Values: []string{"odd"}}}},
		{Filters: []Filter{{Column: "EVENT_CATEGORY", Op: OpIn, Values: []string{"ACCESS", "EXPORTS"}},
			{Column: "EVENT_STATUS", Op: OpNotEquals, Values: []string{"FAILURE"}}},
			Sort: []SortKey{{Column: "METADATA"}}},
		{Columns: []string{"USER_AGENT", "EVENT_ID"}, Sort: []SortKey{{Column: "USER_AGENT", Descending: true}}},
	}
	for i, s := range specs {
		want := streamText(t, ctx, &viaSQL, s, 0, 0)
		got := streamText(t, ctx, d, s, 0, 0)
		if len(want) == 0 {
			t.Fatalf("spec %d: no rows", i)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("spec %d (%+v): the direct reader yields %d bytes, database/sql %d; first difference at byte %d",
				i, s, len(got), len(want), firstDiff(got, want))
		}
	}
	// An insert-sequence window, as a scheduled export's cut.
	if got, want := streamText(t, ctx, d, Spec{}, 200, 900), streamText(t, ctx, &viaSQL, Spec{}, 200, 900); !bytes.Equal(got, want) || bytes.Count(want, []byte("\n")) != 700 {
		t.Errorf("window (200, 900]: %d rows directly, %d via database/sql (want 700)", bytes.Count(got, []byte("\n")), bytes.Count(want, []byte("\n")))
	}

	// A canceled context ends the read with its error.
	cctx, cancel := context.WithCancel(ctx)
	cols, _ := OutputColumns(Spec{})
	rows := 0
	err := Stream(cctx, d, Spec{}, fixtureNow, 0, 0, NewBatch(cols), func(b *Batch) (*Batch, error) {
		rows += b.Len()
		cancel()
		b.Reset()
		return b, nil
	})
	if !errors.Is(err, context.Canceled) || rows > 2*BatchRows {
		t.Errorf("canceled after the first batch: %v after %d rows, want context.Canceled at once", err, rows)
	}

	// The interrupt a cancel sends runs on its own goroutine and may run
	// after Stream has closed its connection (CI: SIGSEGV in
	// sqlite3_interrupt on the freed connection).
	rd, err := openSQLiteReader(d.SQLitePath)
	if err != nil {
		t.Fatal(err)
	}
	rd.interrupt() // open: interrupts nothing, harmless
	rd.close()
	rd.interrupt() // closed: must be a no-op
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
