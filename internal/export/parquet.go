package export

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/auditexport/auditexport/internal/auditlog"
)

// parquetRowsPerGroup bounds the rows buffered in memory before a row group
// is flushed: audit rows are ~300 B, so a group stays around 40 MB raw.
const parquetRowsPerGroup = 128 * 1024

type parquetEncoder struct {
	w     *parquet.Writer
	cols  []auditlog.Column
	index []int // our column i -> schema leaf index
	batch []parquet.Row
}

// parquetField is the Go struct field that makes a column's schema node:
// every column optional (a NULL is possible), timestamps as UTC microseconds,
// metadata with the JSON logical type.
func parquetField(i int, c auditlog.Column) reflect.StructField {
	f := reflect.StructField{Name: fmt.Sprintf("F%d", i), Tag: reflect.StructTag(fmt.Sprintf(`parquet:%q`, c.Name))}
	switch c.Type {
	case auditlog.TypeTimestamp:
		f.Type, f.Tag = reflect.TypeOf((*time.Time)(nil)), reflect.StructTag(fmt.Sprintf(`parquet:"%s,timestamp(microsecond)"`, c.Name))
	case auditlog.TypeInteger:
		f.Type = reflect.TypeOf((*int64)(nil))
	case auditlog.TypeJSON:
		f.Type, f.Tag = reflect.TypeOf(""), reflect.StructTag(fmt.Sprintf(`parquet:"%s,optional,json"`, c.Name))
	default:
		f.Type = reflect.TypeOf((*string)(nil))
	}
	return f
}

func newParquet(w io.Writer, cols []auditlog.Column) (*parquetEncoder, error) {
	// The schema comes from a struct type built at run time: a
	// parquet.Group would order the columns by name, a struct keeps the
	// element's column order.
	fields := make([]reflect.StructField, len(cols))
	for i, c := range cols {
		fields[i] = parquetField(i, c)
	}
	schema := parquet.SchemaOf(reflect.New(reflect.StructOf(fields)).Elem().Interface())
	e := &parquetEncoder{cols: cols, index: make([]int, len(cols))}
	for i, path := range schema.Columns() {
		if i >= len(cols) || path[0] != cols[i].Name {
			return nil, fmt.Errorf("parquet schema column %d is %v, want %s", i, path, cols[i].Name)
		}
		e.index[i] = i
	}
	cfg, err := parquet.NewWriterConfig(schema, parquet.Compression(&pageZstd{}),
		parquet.MaxRowsPerRowGroup(parquetRowsPerGroup), parquet.CreatedBy("auditexport", "v1", ""))
	if err != nil {
		return nil, err
	}
	e.w = parquet.NewWriter(w, cfg)
	return e, nil
}

// WriteBatch converts the batch's text cells to parquet values (the
// writer copies byte arrays into its column buffers, so the batch can be
// reused) and writes them.
func (e *parquetEncoder) WriteBatch(bt *auditlog.Batch) error {
	n := bt.Len()
	for len(e.batch) < n {
		e.batch = append(e.batch, make(parquet.Row, len(e.cols)))
	}
	rows := e.batch[:n]
	for r, row := range rows {
		for c, col := range e.cols {
			cell := bt.Cell(r, c)
			var v parquet.Value
			switch col.Type {
			case auditlog.TypeTimestamp:
				us, err := auditlog.ParseTimeText(cell)
				if err != nil {
					return err
				}
				v = parquet.Int64Value(us)
			case auditlog.TypeInteger:
				i, err := strconv.ParseInt(string(cell), 10, 64)
				if err != nil {
					return err
				}
				v = parquet.Int64Value(i)
			default:
				v = parquet.ByteArrayValue(cell)
			}
			row[e.index[c]] = v.Level(0, 1, e.index[c])
		}
	}
	_, err := e.w.WriteRows(rows)
	return err
}

func (e *parquetEncoder) Close() error { return e.w.Close() }

// pageZstdWindow is the window of pageZstd's encoder: more than any page
// (the writer cuts a page at ~256 KiB of values, checking every 64 rows,
// so a page of 1 KiB cells stays under ~330 KiB).
const pageZstdWindow = 1 << 20

// pageZstd is parquet-go's ZSTD codec (parquet.Zstd: level SpeedDefault,
// one goroutine, no CRC, zero frames for empty pages) with a 1 MiB window
// instead of zstd's default 8 MiB, one encoder per export.
//
// The window bounds the encoder's history buffer, which it allocates at
// twice the window on first use: 16 MiB per encoder with the default, held
// for the whole export (parquet.Zstd keeps encoders in a pool, and a GC
// clearing the pool made another), and counted as live heap by the GC,
// whose goal (GOGC=100) it doubled. A page is compressed as one
// single-segment frame either way (the window is not written in it, and
// no match can reach further back than the page's start), so the file's
// bytes are the same as with parquet.Zstd for every page up to the window.
type pageZstd struct {
	mu  sync.Mutex // the writer compresses on one goroutine; this is cheap insurance
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func (c *pageZstd) String() string                            { return "ZSTD" }
func (c *pageZstd) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *pageZstd) Encode(dst, src []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.enc == nil {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false), zstd.WithWindowSize(pageZstdWindow))
		if err != nil {
			return dst[:0], err
		}
		c.enc = enc
	}
	return c.enc.EncodeAll(src, dst[:0]), nil
}

// Decode is not used by the writer; it is here for compress.Codec.
func (c *pageZstd) Decode(dst, src []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dec == nil {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return dst[:0], err
		}
		c.dec = dec
	}
	return c.dec.DecodeAll(src, dst[:0])
}
