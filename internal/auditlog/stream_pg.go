package auditlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgFormats asks PostgreSQL for timestamps and integers in binary
// (microseconds since 2000-01-01 UTC; a big-endian int64) and everything
// else as text, which for a text column is the stored bytes: a row then
// needs no parsing and no Go value per cell (pgx's RawValues). Through
// database/sql every cell became a string or a time.Time parsed from text,
// then was copied again into the scan destination.
var pgFormats = pgx.QueryResultFormatsByOID{
	pgtype.TimestamptzOID: pgx.BinaryFormatCode,
	pgtype.TimestampOID:   pgx.BinaryFormatCode,
	pgtype.Int8OID:        pgx.BinaryFormatCode,
}

// pgEpochMicros is PostgreSQL's timestamp epoch, 2000-01-01T00:00:00Z, in
// Unix microseconds.
const pgEpochMicros = 946684800 * 1000000

// pgConn is the pgx database/sql driver's connection (*stdlib.Conn).
type pgConn interface{ Conn() *pgx.Conn }

// pgPage is page for PostgreSQL, on a pgx connection held for the whole
// Stream.
func (sc *rowScanner) pgPage(ctx context.Context, c *pgx.Conn, query string, args []any, b **Batch, fn func(*Batch) (*Batch, error)) (int, error) {
	rows, err := c.Query(ctx, query, append([]any{pgFormats}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("scan audit events: %w", err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	if len(fds) != len(sc.dest) {
		return 0, fmt.Errorf("scan audit events: %d columns, want %d", len(fds), len(sc.dest))
	}
	n := 0
	for rows.Next() {
		n++
		if err := handOff(b, sc.appendPGRow(*b, fds, rows.RawValues()), fn); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("scan audit events: %w", err)
	}
	if n > 0 {
		if err := sc.keepLastPG(fds); err != nil {
			return n, err
		}
	}
	return n, nil
}

// appendPGRow appends one row's cells in their export text form and keeps
// the bytes of its sort keys (valid only until the next row is read).
func (sc *rowScanner) appendPGRow(b *Batch, fds []pgconn.FieldDescription, vals [][]byte) error {
	for i, c := range sc.p.out {
		var err error
		v := vals[i]
		switch {
		case fds[i].Format == pgx.BinaryFormatCode:
			b.buf, err = appendPGBinary(b.buf, fds[i].DataTypeOID, v)
		case c.Type == TypeJSON:
			b.buf = appendJSONValue(b.buf, v)
		default:
			b.buf = append(b.buf, v...)
		}
		if err != nil {
			b.Reset()
			return fmt.Errorf("scan audit events: %s: %w", c.Name, err)
		}
		b.end()
	}
	off := len(sc.p.out)
	for k := range sc.p.keys {
		sc.keyBuf[k] = append(sc.keyBuf[k][:0], vals[off+k]...)
	}
	return nil
}

// keepLastPG turns the last row's sort key bytes into the next page's
// bound.
func (sc *rowScanner) keepLastPG(fds []pgconn.FieldDescription) error {
	off := len(sc.p.out)
	for k := range sc.p.keys {
		i := off + k
		v := sc.keyBuf[k]
		if fds[i].Format != pgx.BinaryFormatCode {
			sc.last[k] = string(v)
			continue
		}
		x, err := pgInt64(v)
		if err != nil {
			return fmt.Errorf("scan audit events: sort key %s: %w", sc.p.keys[k].col.Name, err)
		}
		switch fds[i].DataTypeOID {
		case pgtype.Int8OID:
			sc.last[k] = x
		default:
			t, err := pgTime(x)
			if err != nil {
				return fmt.Errorf("scan audit events: sort key %s: %w", sc.p.keys[k].col.Name, err)
			}
			sc.last[k] = t
		}
	}
	return nil
}

// appendPGBinary appends a binary bigint in decimal or a binary timestamp
// in TimeLayout.
func appendPGBinary(b []byte, oid uint32, v []byte) ([]byte, error) {
	x, err := pgInt64(v)
	if err != nil {
		return b, err
	}
	switch oid {
	case pgtype.Int8OID:
		return strconv.AppendInt(b, x, 10), nil
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		if err := pgTimeInRange(x); err != nil {
			return b, err
		}
		return appendMicros(b, x+pgEpochMicros), nil
	}
	return b, fmt.Errorf("unexpected binary column type %d", oid)
}

func pgInt64(v []byte) (int64, error) {
	if len(v) != 8 {
		if v == nil {
			return 0, fmt.Errorf("NULL")
		}
		return 0, fmt.Errorf("%d bytes, want 8", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// pgTime is a binary timestamp as a UTC time; ±infinity have no export form.
func pgTime(micros int64) (time.Time, error) {
	if err := pgTimeInRange(micros); err != nil {
		return time.Time{}, err
	}
	return time.UnixMicro(micros + pgEpochMicros).UTC(), nil
}

// pgTimeInRange refuses ±infinity and what would overflow Unix microseconds.
func pgTimeInRange(micros int64) error {
	if micros == math.MaxInt64 || micros == math.MinInt64 || micros > math.MaxInt64-pgEpochMicros {
		return fmt.Errorf("timestamp out of range (infinity)")
	}
	return nil
}
