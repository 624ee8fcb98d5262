package export

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

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
	cfg, err := parquet.NewWriterConfig(schema, parquet.Compression(&parquet.Zstd),
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
