package server

import (
	"encoding/base64"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// enumDB turns a proto enum value into its stored form: PROVIDER_S3 -> S3.
// UNSPECIFIED becomes "". ok is false for a number the enum does not
// declare (proto3 enums are open, so any int32 can arrive).
func enumDB(e protoreflect.Enum, prefix string) (s string, ok bool) {
	ev := e.Descriptor().Values().ByNumber(e.Number())
	if ev == nil {
		return "", false
	}
	s = strings.TrimPrefix(string(ev.Name()), prefix)
	if s == "UNSPECIFIED" {
		return "", true
	}
	return s, true
}

// enumProto looks up the proto number of a stored enum value.
func enumProto(values map[string]int32, prefix, db string) int32 {
	return values[prefix+db]
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tsPtr(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return ts(*t)
}

const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// pageSize validates and defaults a page size.
func pageSize(v *violations, n int32) int {
	switch {
	case n < 0:
		v.add("page_size", "must not be negative")
		return 0
	case n == 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return int(n)
}

// Page tokens are opaque to clients: base64 of "<kind>:<last id or offset>",
// so a token from one list cannot be replayed on another.
func encodeToken(kind, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + last))
}

func decodeToken(v *violations, kind, tok string) string {
	if tok == "" {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		v.add("page_token", "invalid page token")
		return ""
	}
	// kind itself may contain ':' (e.g. "q:<workbook>:<element>").
	last, ok := strings.CutPrefix(string(b), kind+":")
	if !ok || last == "" {
		v.add("page_token", "invalid page token")
		return ""
	}
	return last
}

// page trims a keyset page fetched with limit size+1 and returns the token
// for the next page ("" on the last page).
func page[T any](rows []T, size int, kind string, id func(T) string) ([]T, string) {
	if len(rows) <= size {
		return rows, ""
	}
	rows = rows[:size]
	return rows, encodeToken(kind, id(rows[size-1]))
}
