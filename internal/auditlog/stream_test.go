package auditlog

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestStoredTimeText: SQLite's stored timestamp text becomes TimeLayout in
// UTC exactly as parsing and formatting it would (the fraction truncated to
// microseconds, as time.Format does), for the driver's own form and others.
func TestStoredTimeText(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for range 2000 {
		tm := time.Unix(r.Int64N(8e9)-1e9, 0).Add(time.Duration(r.IntN(1e9)))
		if r.IntN(4) == 0 {
			tm = tm.Truncate(time.Second)
		}
		want := tm.UTC().Format(TimeLayout)
		for _, stored := range []string{tm.UTC().String(), tm.In(berlin).String(), tm.In(berlin).Format("2006-01-02 15:04:05.999999999-07:00"), tm.UTC().Format(time.RFC3339Nano)} {
			got, err := appendStoredTime(nil, []byte(stored))
			if err != nil || string(got) != want {
				t.Fatalf("%q -> %q, %v; want %q", stored, got, err, want)
			}
			us, err := ParseTimeText(got)
			if err != nil || us != tm.UnixMicro() {
				t.Fatalf("ParseTimeText(%q) = %d, %v; want %d", got, us, err, tm.UnixMicro())
			}
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-13-45 99:99:99 +0000 UTC", "2026-01-02 03:04:05.x +0000 UTC"} {
		if got, err := appendStoredTime(nil, []byte(bad)); err == nil {
			t.Errorf("%q -> %q, want an error", bad, got)
		}
	}
	for _, bad := range []string{"2026-01-02T03:04:05Z", "2026-01-02 03:04:05.000000Z", "2026-0a-02T03:04:05.000000Z"} {
		if _, err := ParseTimeText([]byte(bad)); err == nil {
			t.Errorf("ParseTimeText(%q) accepted", bad)
		}
	}
}

func TestValidDateTime(t *testing.T) {
	for s, want := range map[string]bool{
		"2024-02-29 23:59:59": true, "2023-02-29 00:00:00": false, "2100-02-29 00:00:00": false, "2000-02-29 00:00:00": true,
		"2026-04-31 00:00:00": false, "2026-12-31 00:00:00": true, "2026-00-01 00:00:00": false, "2026-01-00 00:00:00": false,
		"2026-01-01 24:00:00": false, "2026-01-01 00:60:00": false, "2026-01-01 00:00:60": false, "2026-01-01T00:00:00": false,
	} {
		if got := validDateTime([]byte(s), ' '); got != want {
			t.Errorf("validDateTime(%q) = %v", s, got)
		}
	}
}

// TestPGBinaryCells: PostgreSQL's binary timestamp (microseconds since
// 2000-01-01 UTC) and bigint become the text the database/sql path wrote
// (time.Time in UTC formatted in TimeLayout; decimal); ±infinity, NULL and a
// wrong width are errors, not a made-up value.
func TestPGBinaryCells(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	be := func(x int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(x)) }
	for range 2000 {
		tm := time.UnixMicro(r.Int64N(9e15) - 3e15).UTC()
		got, err := appendPGBinary([]byte("x"), pgtype.TimestamptzOID, be(tm.UnixMicro()-pgEpochMicros))
		if want := "x" + tm.Format(TimeLayout); err != nil || string(got) != want {
			t.Fatalf("timestamp %v -> %q, %v; want %q", tm, got, err, want)
		}
		n := r.Int64() - r.Int64()
		if got, err := appendPGBinary(nil, pgtype.Int8OID, be(n)); err != nil || string(got) != strconv.FormatInt(n, 10) {
			t.Fatalf("bigint %d -> %q, %v", n, got, err)
		}
	}
	for _, bad := range [][]byte{be(math.MaxInt64), be(math.MinInt64), nil, {1, 2, 3}} {
		if got, err := appendPGBinary(nil, pgtype.TimestamptzOID, bad); err == nil {
			t.Errorf("timestamp %x -> %q, want an error", bad, got)
		}
	}
	if _, err := appendPGBinary(nil, pgtype.Float8OID, be(1)); err == nil {
		t.Error("a binary float8 was accepted")
	}
}

// TestAppendMicros: the hand-written TimeLayout formatting equals
// time.Format's for instants across and beyond years 0000–9999 (the
// bounds, leap days, century years, negative Unix times).
func TestAppendMicros(t *testing.T) {
	want := func(us int64) string { return time.UnixMicro(us).UTC().Format(TimeLayout) }
	day := int64(86400e6)
	var cases []int64
	for _, at := range []int64{minFastMicros, endFastMicros, 0,
		time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC).UnixMicro(), time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro(),
		time.Date(2100, 2, 28, 23, 59, 59, 999999000, time.UTC).UnixMicro(), time.Date(1600, 2, 29, 12, 0, 0, 0, time.UTC).UnixMicro()} {
		cases = append(cases, at-day, at-1, at, at+1, at+day)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		cases = append(cases, minFastMicros-1e15+r.Int64N(endFastMicros-minFastMicros+2e15))
	}
	for _, us := range cases {
		if got := string(appendMicros([]byte("x"), us)); got != "x"+want(us) {
			t.Fatalf("%d µs -> %q, want %q", us, got, "x"+want(us))
		}
	}
}

// BenchmarkAppendMicros: appendMicros against time.Format's AppendFormat.
func BenchmarkAppendMicros(b *testing.B) {
	us := time.Date(2026, 12, 6, 0, 15, 42, 123456000, time.UTC).UnixMicro()
	buf := make([]byte, 0, 64)
	b.Run("appendMicros", func(b *testing.B) {
		for b.Loop() {
			buf = appendMicros(buf[:0], us)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = time.UnixMicro(us).UTC().AppendFormat(buf[:0], TimeLayout)
		}
	})
}
