package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

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
}

// countingWriter counts and hashes what reaches the destination.
type countingWriter struct {
	w io.Writer
	h hash.Hash
	c *Counters
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.h.Write(p[:n])
	cw.c.Bytes.Add(int64(n))
	return n, err
}

// compressor wraps w; its Close finishes the stream but not w.
func compressor(kind string, w io.Writer) (io.WriteCloser, error) {
	switch kind {
	case None, "":
		return nopCloser{w}, nil
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(2))
	}
	return nil, fmt.Errorf("unknown compression %q", kind)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Write streams the plan's rows into dst: rows -> encoder -> compressor ->
// dst, in constant memory. It returns when everything is flushed to dst
// (which the caller then commits, e.g. by closing a blob writer) or on the
// first error, including ctx cancellation.
func Write(ctx context.Context, d *db.DB, p Plan, dst io.Writer, c *Counters) (Stats, error) {
	if p.Format == Parquet && p.Compression != None && p.Compression != "" {
		return Stats{}, fmt.Errorf("parquet compresses internally; compression must be NONE")
	}
	cw := &countingWriter{w: dst, h: sha256.New(), c: c}
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
	var rows int64
	var sinkErr error
	err = auditlog.ScanSeq(ctx, d.Client, p.Spec, p.Now, p.SeqFrom, p.SeqTo, func(row []any) error {
		if err := enc.Write(row); err != nil {
			sinkErr = err
			return err
		}
		rows++
		c.Rows.Store(rows)
		if rows%1024 == 0 {
			return ctx.Err()
		}
		return nil
	})
	switch {
	case sinkErr != nil:
		return Stats{}, sinkErr
	case err != nil && ctx.Err() != nil:
		return Stats{}, ctx.Err()
	case err != nil:
		return Stats{}, &QueryError{Err: err}
	}
	if err := enc.Close(); err != nil {
		return Stats{}, err
	}
	if err := comp.Close(); err != nil {
		return Stats{}, err
	}
	return Stats{Rows: rows, Bytes: c.Bytes.Load(), Checksum: "sha256:" + hex.EncodeToString(cw.h.Sum(nil))}, nil
}

// QueryError is a failure reading the audit log (as opposed to writing the
// destination).
type QueryError struct{ Err error }

func (e *QueryError) Error() string { return "query: " + e.Err.Error() }
func (e *QueryError) Unwrap() error { return e.Err }
