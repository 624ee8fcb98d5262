package export

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/auditexport/auditexport/internal/auditlog"
)

// parquetRowsPerGroup bounds the rows buffered in memory before a row group
// is flushed: audit rows are ~300 B, so a group stays around 40 MB raw.
const parquetRowsPerGroup = 128 * 1024

// parquetBatch rows are handed to the writer at a time.
const parquetBatch = 1024

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

func (e *parquetEncoder) Write(row []any) error {
	r := make(parquet.Row, len(e.cols))
	for i, v := range row {
		val, def := parquetValue(v)
		r[e.index[i]] = val.Level(0, def, e.index[i])
	}
	e.batch = append(e.batch, r)
	if len(e.batch) >= parquetBatch {
		return e.flush()
	}
	return nil
}

func (e *parquetEncoder) flush() error {
	if len(e.batch) == 0 {
		return nil
	}
	_, err := e.w.WriteRows(e.batch)
	e.batch = e.batch[:0]
	return err
}

// parquetValue returns the value and its definition level (0 = null).
func parquetValue(v any) (parquet.Value, int) {
	switch x := v.(type) {
	case nil:
		return parquet.NullValue(), 0
	case string:
		return parquet.ByteArrayValue([]byte(x)), 1
	case time.Time:
		return parquet.Int64Value(x.UTC().UnixMicro()), 1
	case int64:
		return parquet.Int64Value(x), 1
	case json.RawMessage:
		return parquet.ByteArrayValue([]byte(x)), 1
	}
	return parquet.ByteArrayValue([]byte(fmt.Sprint(v))), 1
}

func (e *parquetEncoder) Close() error {
	if err := e.flush(); err != nil {
		return err
	}
	return e.w.Close()
}
