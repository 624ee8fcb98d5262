// Package export is the export pipeline: an element's rows are streamed from
// the database through an encoder (CSV, JSONL, Parquet) and a compressor
// into a destination writer, in constant memory, reporting progress.
package export

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"unicode"
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
	// WriteBatch encodes a batch of rows (cells in their export text form,
	// see auditlog.Batch).
	WriteBatch(b *auditlog.Batch) error
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

// csvEncoder writes RFC 4180 CSV exactly as encoding/csv's Writer does
// (same quoting rule, "\n" line ends), from byte cells without a string per
// cell.
type csvEncoder struct {
	w      *bufio.Writer
	buf    []byte
	escape bool
}

func newCSV(w io.Writer, cols []auditlog.Column, escape bool) (*csvEncoder, error) {
	e := &csvEncoder{w: bufio.NewWriterSize(w, 64<<10), escape: escape}
	b := e.buf[:0]
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSVField(b, nil, []byte(c.Name))
	}
	b = append(b, '\n')
	e.buf = b
	_, err := e.w.Write(b)
	return e, err
}

func (e *csvEncoder) WriteBatch(bt *auditlog.Batch) error {
	ncol := len(bt.Cols)
	b := e.buf[:0]
	for r := range bt.Len() {
		for c := range ncol {
			if c > 0 {
				b = append(b, ',')
			}
			cell := bt.Cell(r, c)
			var pre []byte
			if e.escape && formulaPrefix(cell) {
				pre = quotePrefix
			}
			b = appendCSVField(b, pre, cell)
		}
		b = append(b, '\n')
	}
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

func (e *csvEncoder) Close() error { return e.w.Flush() }

var quotePrefix = []byte{'\''}

// appendCSVField appends the field pre+f, quoted when encoding/csv would
// quote it: it holds a comma, quote, CR or LF, starts with a space
// character, or is \. (a PostgreSQL end-of-data marker).
func appendCSVField(b, pre, f []byte) []byte {
	quote := false
	if len(pre)+len(f) > 0 {
		quote = csvNeedsQuote(pre) || csvNeedsQuote(f)
		if !quote {
			first := f
			if len(pre) > 0 {
				first = pre
			}
			r, _ := utf8.DecodeRune(first)
			quote = unicode.IsSpace(r) || (len(pre) == 0 && string(f) == `\.`)
		}
	}
	if !quote {
		return append(append(b, pre...), f...)
	}
	b = append(b, '"')
	for _, part := range [2][]byte{pre, f} {
		for {
			i := bytes.IndexByte(part, '"')
			if i < 0 {
				b = append(b, part...)
				break
			}
			b = append(b, part[:i+1]...)
			b = append(b, '"')
			part = part[i+1:]
		}
	}
	return append(b, '"')
}

// csvSpecial marks the bytes that make encoding/csv quote a field.
var csvSpecial = [256]bool{',': true, '"': true, '\r': true, '\n': true}

// csvNeedsQuote: p holds a comma, quote, CR or LF (one table load per byte,
// stopping at the first: a third of a CSV export's encoding time went to
// testing four bytes on every byte of every cell).
func csvNeedsQuote(p []byte) bool {
	for _, c := range p {
		if csvSpecial[c] {
			return true
		}
	}
	return false
}

// formulaPrefix reports whether a spreadsheet would evaluate the cell (CSV
// injection, OWASP): a leading = + - @ tab or CR; such cells get a ' prefix.
func formulaPrefix(cell []byte) bool {
	if len(cell) == 0 {
		return false
	}
	switch cell[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

type jsonlEncoder struct {
	w     *bufio.Writer
	names [][]byte // `"NAME":` prefixes
	types []string
	buf   []byte
}

func newJSONL(w io.Writer, cols []auditlog.Column) *jsonlEncoder {
	e := &jsonlEncoder{w: bufio.NewWriterSize(w, 64<<10)}
	for _, c := range cols {
		e.names = append(e.names, append(appendJSONString(nil, []byte(c.Name)), ':'))
		e.types = append(e.types, c.Type)
	}
	return e
}

func (e *jsonlEncoder) WriteBatch(bt *auditlog.Batch) error {
	b := e.buf[:0]
	for r := range bt.Len() {
		b = append(b, '{')
		for c, typ := range e.types {
			if c > 0 {
				b = append(b, ',')
			}
			b = append(b, e.names[c]...)
			cell := bt.Cell(r, c)
			switch typ {
			case auditlog.TypeString:
				b = appendJSONString(b, cell)
			case auditlog.TypeTimestamp:
				b = append(append(append(b, '"'), cell...), '"')
			default: // INTEGER digits, JSON valid JSON (auditlog.Batch)
				b = append(b, cell...)
			}
		}
		b = append(b, '}', '\n')
	}
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

func (e *jsonlEncoder) Close() error { return e.w.Flush() }

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Hand-written because it is the
// hot loop of JSONL exports; invalid UTF-8 becomes U+FFFD like encoding/json.
func appendJSONString(b []byte, s []byte) []byte {
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
		r, size := utf8.DecodeRune(s[i:])
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
