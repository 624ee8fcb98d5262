package export

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
)

// Plan is what one export writes.
type Plan struct {
	Spec           auditlog.Spec
	Now            time.Time // end of a relative time range
	Format         string    // CSV, JSONL, PARQUET
	Compression    string    // NONE, GZIP, ZSTD (Parquet: NONE; it compresses internally)
	EscapeFormulas bool
	// Rows with insert sequence in (SeqFrom, SeqTo]. SeqTo is always set so
	// that a run exports a consistent cut of a table that keeps growing.
	SeqFrom, SeqTo int64
	// MD5: also hash the bytes with MD5 (Stats.MD5), for a destination
	// that reports the stored object's MD5 (GCS: Runner.checkStored).
	MD5 bool
}

// Counters are updated while an export runs and may be read concurrently.
type Counters struct {
	Rows  atomic.Int64
	Bytes atomic.Int64 // bytes handed to the destination (after compression)
}

// Stats describe a finished export.
type Stats struct {
	Rows     int64
	Bytes    int64
	Checksum string // sha256:<hex> of the bytes written
	// MD5 of the bytes written: what GCS reports for a stored object
	// (Runner.checkStored).
	MD5 []byte
}

// countingWriter counts and hashes what reaches the destination.
type countingWriter struct {
	w      io.Writer
	h, md5 hash.Hash
	c      *Counters
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.h.Write(p[:n])
	if cw.md5 != nil {
		cw.md5.Write(p[:n])
	}
	cw.c.Bytes.Add(int64(n))
	return n, err
}

func (cw *countingWriter) sumMD5() []byte {
	if cw.md5 == nil {
		return nil
	}
	return cw.md5.Sum(nil)
}

// compressor wraps w; its Close finishes the stream but not w.
func compressor(kind string, w io.Writer) (io.WriteCloser, error) {
	switch kind {
	case None, "":
		return nopCloser{w}, nil
	case Gzip:
		// Block-parallel gzip: one gzip stream (any gzip reader reads it)
		// whose blocks are deflated on every core, each primed with the
		// previous block's last 32 KiB so the ratio stays gzip's.
		z, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		return z, z.SetConcurrency(gzipBlockSize, runtime.GOMAXPROCS(0))
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(zstdWindow))
	}
	return nil, fmt.Errorf("unknown compression %q", kind)
}

// gzipBlockSize is pgzip's block: its default 1 MiB made ~12 MiB of
// block buffers live (in flight, and pooled between GCs), which doubled
// in the GC's heap goal; 256 KiB blocks cost 0.2% of the gzip size (CSV
// of seeded rows) at the same speed.
const gzipBlockSize = 256 << 10

// zstdWindow is the zstd stream's window: the encoder's history buffer is
// twice the window (16 MiB with zstd's default 8 MiB window), filled over
// the stream and live for the whole export. CSV of seeded rows compresses
// as well with 1 MiB (0.1720 vs 0.1722 of the input).
const zstdWindow = 1 << 20

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Write streams the plan's rows into dst: rows -> encoder -> compressor ->
// dst, in constant memory. The database is read on a goroutine of its own
// (auditlog.Stream, batches of rows in their text form) while this one
// encodes and compresses the previous batches, so reading and encoding use
// two cores. It returns when everything is flushed to dst (which the caller
// then commits, e.g. by closing a blob writer) or on the first error,
// including ctx cancellation.
func Write(ctx context.Context, d *db.DB, p Plan, dst io.Writer, c *Counters) (Stats, error) {
	if p.Format == Parquet && p.Compression != None && p.Compression != "" {
		return Stats{}, fmt.Errorf("parquet compresses internally; compression must be NONE")
	}
	cw := &countingWriter{w: dst, h: sha256.New(), c: c}
	if p.MD5 {
		cw.md5 = md5.New()
	}
	comp, err := compressor(p.Compression, cw)
	if err != nil {
		return Stats{}, err
	}
	cols, err := auditlog.OutputColumns(p.Spec)
	if err != nil {
		return Stats{}, &QueryError{Err: err}
	}
	enc, err := NewEncoder(p.Format, comp, cols, p.EscapeFormulas)
	if err != nil {
		return Stats{}, err
	}
	var n int64
	rows, err := pipe(ctx, d, p, cols, func(b *auditlog.Batch) error {
		if err := enc.WriteBatch(b); err != nil {
			return err
		}
		n += int64(b.Len())
		c.Rows.Store(n)
		exportGC.add(b.Len())
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	if err := enc.Close(); err != nil {
		return Stats{}, err
	}
	if err := comp.Close(); err != nil {
		return Stats{}, err
	}
	return Stats{Rows: rows, Bytes: c.Bytes.Load(), Checksum: "sha256:" + hex.EncodeToString(cw.h.Sum(nil)), MD5: cw.sumMD5()}, nil
}

// beforeStream, when set (tests only), runs on the reading goroutine before
// it reads.
var beforeStream func()

// pipeBatches is how many batches are in use at once: one being read, one
// being encoded, one waiting between them.
const pipeBatches = 3

// pipe reads the plan's rows on a goroutine and calls sink with each batch
// on this one, in order. It returns the number of rows sunk; a failure to
// read is a *QueryError, a sink's error is returned as is, and either stops
// the other side.
func pipe(ctx context.Context, d *db.DB, p Plan, cols []auditlog.Column, sink func(*auditlog.Batch) error) (int64, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := make(chan *auditlog.Batch, pipeBatches)
	free := make(chan *auditlog.Batch, pipeBatches)
	for range pipeBatches - 1 {
		free <- auditlog.NewBatch(cols)
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(full)
		readErr <- catch(func() error {
			if beforeStream != nil {
				beforeStream()
			}
			return auditlog.Stream(rctx, d, p.Spec, p.Now, p.SeqFrom, p.SeqTo, auditlog.NewBatch(cols),
				func(b *auditlog.Batch) (*auditlog.Batch, error) {
					full <- b // never blocks: there are only pipeBatches batches
					select {
					case next := <-free:
						return next, nil
					case <-rctx.Done():
						return nil, rctx.Err()
					}
				})
		})
	}()
	var rows int64
	var sinkErr error
	for b := range full {
		if sinkErr == nil {
			if sinkErr = sink(b); sinkErr != nil {
				cancel() // stop reading; the loop drains what is in flight
			} else {
				rows += int64(b.Len())
			}
		}
		b.Reset()
		free <- b
	}
	err := <-readErr
	switch {
	case sinkErr != nil:
		return rows, sinkErr
	case err != nil && ctx.Err() != nil:
		return rows, ctx.Err()
	case errors.As(err, new(*PanicError)):
		return rows, err // our bug, not the query's
	case err != nil:
		return rows, &QueryError{Err: err}
	}
	return rows, nil
}

// QueryError is a failure reading the audit log (as opposed to writing the
// destination).
type QueryError struct{ Err error }

func (e *QueryError) Error() string { return "query: " + e.Err.Error() }
func (e *QueryError) Unwrap() error { return e.Err }
