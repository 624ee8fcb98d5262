package export

import (
	"encoding/json"
	"fmt"
	"io"
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

func parquetNode(c auditlog.Column) parquet.Node {
	switch c.Type {
	case auditlog.TypeTimestamp:
		return parquet.Optional(parquet.TimestampAdjusted(parquet.Microsecond, true))
	case auditlog.TypeInteger:
		return parquet.Optional(parquet.Int(64))
	case auditlog.TypeJSON:
		return parquet.Optional(parquet.JSON())
	}
	return parquet.Optional(parquet.String())
}

func newParquet(w io.Writer, cols []auditlog.Column) (*parquetEncoder, error) {
	g := parquet.Group{}
	for _, c := range cols {
		g[c.Name] = parquetNode(c)
	}
	schema := parquet.NewSchema("audit_logs", g)
	// parquet-go orders group fields by name; map ours onto its leaves.
	leaf := map[string]int{}
	for i, path := range schema.Columns() {
		leaf[path[0]] = i
	}
	e := &parquetEncoder{cols: cols, index: make([]int, len(cols))}
	for i, c := range cols {
		idx, ok := leaf[c.Name]
		if !ok {
			return nil, fmt.Errorf("parquet schema lacks column %s", c.Name)
		}
		e.index[i] = idx
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
