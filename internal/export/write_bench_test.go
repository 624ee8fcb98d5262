package export_test

import (
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/testenv"
)

// BenchmarkWrite is the export pipeline in-process (read, encode,
// compress, into io.Discard) over AUDITEXPORT_BENCH_WRITE_ROWS seeded rows
// (default 100,000), for profiling (-cpuprofile); `make bench` measures
// the whole service against the shell pipeline.
func BenchmarkWrite(b *testing.B) {
	n := 100000
	if v := os.Getenv("AUDITEXPORT_BENCH_WRITE_ROWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var d *db.DB
			if backend == "sqlite" {
				d = testenv.SQLiteDB(b)
			} else {
				d = testenv.PostgresDB(b)
			}
			org := testenv.NewOrg(b, d, "bench@example.com")
			now := time.Now()
			testenv.Must(b, auditlog.Seed(org.Ctx, d, org.ID, n, now, 24*time.Hour, 1))
			// read: the reader stage alone (driver, keyset pages, text
			// cells) — what every format pays before encoding.
			b.Run("read", func(b *testing.B) {
				cols, err := auditlog.OutputColumns(auditlog.Spec{})
				testenv.Must(b, err)
				for b.Loop() {
					rows := 0
					err := auditlog.Stream(org.Ctx, d, auditlog.Spec{}, now, 0, 0, auditlog.NewBatch(cols),
						func(bt *auditlog.Batch) (*auditlog.Batch, error) { rows += bt.Len(); bt.Reset(); return bt, nil })
					testenv.Must(b, err)
					if rows < n {
						b.Fatalf("%d rows, want %d", rows, n)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
			for _, f := range []struct{ format, comp string }{
				{export.CSV, export.Gzip}, {export.CSV, export.Zstd}, {export.JSONL, export.Zstd}, {export.Parquet, export.None},
			} {
				b.Run(f.format+"+"+f.comp, func(b *testing.B) {
					p := export.Plan{Now: now, Format: f.format, Compression: f.comp}
					var bytes int64
					for b.Loop() {
						st, err := export.Write(org.Ctx, d, p, io.Discard, &export.Counters{})
						if err != nil {
							b.Fatal(err)
						}
						if st.Rows < int64(n) {
							b.Fatalf("%d rows, want %d", st.Rows, n)
						}
						bytes = st.Bytes
					}
					b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
					b.ReportMetric(float64(bytes), "out-bytes")
				})
			}
		})
	}
}
