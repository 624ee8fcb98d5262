// Package export is the export pipeline: an element's rows are streamed from
// the database through an encoder (CSV, JSONL, Parquet) and a compressor
// into a destination writer, in constant memory, reporting progress.
package export

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/auditexport/auditexport/internal/auditlog"
)

// Formats and compressions (stored enum values).
const (
	CSV     = "CSV"
	JSONL   = "JSONL"
	Parquet = "PARQUET"

	None = "NONE"
	Gzip = "GZIP"
	Zstd = "ZSTD"
)

// Encoder writes rows in a file format.
type Encoder interface {
	// Write encodes one row (values in column order, as auditlog.Scan gives them).
	Write(row []any) error
	// Close writes any footer and flushes; it does not close the underlying writer.
	Close() error
}

// NewEncoder returns an encoder for format writing to w.
func NewEncoder(format string, w io.Writer, cols []auditlog.Column, escapeFormulas bool) (Encoder, error) {
	switch format {
	case CSV:
		return newCSV(w, cols, escapeFormulas)
	case JSONL:
		return newJSONL(w, cols), nil
	case Parquet:
		return newParquet(w, cols)
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

// timeLayout is RFC 3339 in UTC with a fixed microsecond fraction, which is
// what the database stores; fixed width sorts lexically.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

type csvEncoder struct {
	w      *csv.Writer
	rec    []string
	escape bool
}

func newCSV(w io.Writer, cols []auditlog.Column, escape bool) (*csvEncoder, error) {
	e := &csvEncoder{w: csv.NewWriter(w), rec: make([]string, len(cols)), escape: escape}
	for i, c := range cols {
		e.rec[i] = c.Name
	}
	return e, e.w.Write(e.rec)
}

func (e *csvEncoder) Write(row []any) error {
	for i, v := range row {
		s := textValue(v)
		if e.escape {
			s = escapeFormula(s)
		}
		e.rec[i] = s
	}
	return e.w.Write(e.rec)
}

func (e *csvEncoder) Close() error {
	e.w.Flush()
	return e.w.Error()
}

// escapeFormula defuses cells a spreadsheet would evaluate (CSV injection,
// OWASP): a leading = + - @ tab or CR gets a ' prefix.
func escapeFormula(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

func textValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case time.Time:
		return x.UTC().Format(timeLayout)
	case int64:
		return strconv.FormatInt(x, 10)
	case json.RawMessage:
		return string(x)
	}
	return fmt.Sprint(v)
}

type jsonlEncoder struct {
	w     *bufio.Writer
	names [][]byte // `"NAME":` prefixes
	buf   []byte
}

func newJSONL(w io.Writer, cols []auditlog.Column) *jsonlEncoder {
	e := &jsonlEncoder{w: bufio.NewWriterSize(w, 64<<10)}
	for _, c := range cols {
		e.names = append(e.names, append(appendJSONString(nil, c.Name), ':'))
	}
	return e
}

func (e *jsonlEncoder) Write(row []any) error {
	b := append(e.buf[:0], '{')
	for i, v := range row {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.names[i]...)
		switch x := v.(type) {
		case nil:
			b = append(b, "null"...)
		case string:
			b = appendJSONString(b, x)
		case time.Time:
			b = append(b, '"')
			b = x.UTC().AppendFormat(b, timeLayout)
			b = append(b, '"')
		case int64:
			b = strconv.AppendInt(b, x, 10)
		case json.RawMessage:
			if json.Valid(x) {
				b = append(b, x...)
			} else {
				b = appendJSONString(b, string(x))
			}
		default:
			b = appendJSONString(b, fmt.Sprint(v))
		}
	}
	b = append(b, '}', '\n')
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

func (e *jsonlEncoder) Close() error { return e.w.Flush() }

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Hand-written because it is the
// hot loop of JSONL exports; invalid UTF-8 becomes U+FFFD like encoding/json.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
