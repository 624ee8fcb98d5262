package cron

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, expr, zone string) *Cron {
	t.Helper()
	c, err := Parse(expr, zone)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", expr, zone, err)
	}
	return c
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("bad test time %q: %v", s, err)
	}
	return ts
}

// localMidnight returns the instant of 00:00 wall time on the given date.
// None of the zones under test has a transition at midnight.
func localMidnight(t *testing.T, zone, date string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	d, err := time.ParseInLocation("2006-01-02", date, loc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, expr, zone string
		field, msg       string // msg: substring of FieldError.Msg
	}{
		{"six fields", "0 0 * * * *", "UTC", "cron", "expected 5 fields, got 6"},
		{"four fields", "0 * * *", "UTC", "cron", "expected 5 fields, got 4"},
		{"empty expr", "", "UTC", "cron", "required"},
		{"blank expr", "   ", "UTC", "cron", "required"},
		{"minute out of range", "60 * * * *", "UTC", "cron", "above maximum"},
		{"hour out of range", "0 24 * * *", "UTC", "cron", "above maximum"},
		{"dom zero", "0 0 0 * *", "UTC", "cron", "below minimum"},
		{"month 13", "0 0 1 13 *", "UTC", "cron", "above maximum"},
		{"dow 8", "0 0 * * 8", "UTC", "cron", `day of week "8": 8 is out of range (0-7, 0 and 7 being Sunday)`},
		{"reversed range", "0 0 * * 5-1", "UTC", "cron", "wraps past Sunday"},
		{"wrapping names", "0 0 * * sat-tue", "UTC", "cron", "wraps past Sunday"},
		{"dom reversed", "0 0 20-10 * *", "UTC", "cron", "beyond end of range"},
		{"dow step zero", "0 0 * * */0", "UTC", "cron", "step"},
		{"quartz L", "0 0 L * *", "UTC", "cron", "Quartz"},
		{"quartz W", "0 0 15W * *", "UTC", "cron", "Quartz"},
		{"quartz #", "0 0 * * 5#3", "UTC", "cron", "Quartz"},
		{"quartz last friday", "0 0 * * 5L", "UTC", "cron", "Quartz"},
		{"garbage", "a b c d e", "UTC", "cron", "is not a day"},
		{"garbage with a valid dow", "a b c d 1", "UTC", "cron", "failed to parse"},
		{"every", "@every 5m", "UTC", "cron", "@every is not supported"},
		{"unknown descriptor", "@fortnightly", "UTC", "cron", "unrecognized descriptor"},
		{"cron_tz prefix", "CRON_TZ=Europe/Berlin 0 9 * * *", "UTC", "time_zone", `set time_zone to "Europe/Berlin"`},
		{"tz prefix", "TZ=UTC 0 9 * * *", "UTC", "time_zone", "prefix in cron is not accepted"},
		{"never fires feb 31", "0 0 31 2 *", "UTC", "cron", "never fires"},
		{"never fires feb 30", "0 0 30 2 *", "Europe/Berlin", "cron", "never fires"},
		{"never fires apr 31", "0 0 31 4 *", "UTC", "cron", "never fires"},
		{"unknown zone", "0 0 * * *", "Mars/Phobos", "time_zone", `unknown time zone "Mars/Phobos"`},
		{"empty zone", "0 0 * * *", "", "time_zone", "required"},
		{"local zone", "0 0 * * *", "Local", "time_zone", "not allowed"},
		{"lowercase utc", "0 0 * * *", "utc", "time_zone", "unknown time zone"},
		// The zone is validated first so a bad zone is reported even when
		// the expression is bad too.
		{"both bad", "bogus", "Mars/Phobos", "time_zone", "unknown time zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.expr, tt.zone)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %v, want error", tt.expr, tt.zone, c)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (msg %q)", fe.Field, tt.field, fe.Msg)
			}
			if !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("Msg = %q, want it to contain %q", fe.Msg, tt.msg)
			}
			if want := fe.Field + ": " + fe.Msg; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestParseOK(t *testing.T) {
	for _, tt := range []struct{ expr, zone string }{
		{"* * * * *", "UTC"},
		{"0 9 * * 1-5", "Europe/Berlin"},
		{"*/15 2 * * *", "America/New_York"},
		{"0 12 29 2 *", "UTC"},
		{"0 0 1 JAN,JUL *", "Australia/Sydney"},
		{"0 0 * * MON-FRI", "Asia/Kolkata"},
		{"  0 9 * * *  ", "UTC"},
		{"@yearly", "UTC"},
		{"@annually", "UTC"},
		{"@monthly", "UTC"},
		{"@weekly", "UTC"},
		{"@daily", "UTC"},
		{"@midnight", "UTC"},
		{"@hourly", "UTC"},
	} {
		c := mustParse(t, tt.expr, tt.zone)
		if got := c.Location().String(); got != tt.zone {
			t.Errorf("Parse(%q, %q).Location() = %q", tt.expr, tt.zone, got)
		}
	}
}

func TestFieldErrorString(t *testing.T) {
	e := &FieldError{Field: "cron", Msg: "expected 5 fields, got 6"}
	if got, want := e.Error(), "cron: expected 5 fields, got 6"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestNext pins individual Next results, including every DST rule of the
// documented policy, in three zones (two northern, one southern hemisphere).
func TestNext(t *testing.T) {
	tests := []struct {
		name, expr, zone, from, want string
	}{
		// Plain schedules.
		{"every minute", "* * * * *", "UTC", "2026-05-05T10:00:00Z", "2026-05-05T10:01:00Z"},
		{"every minute mid-second", "* * * * *", "UTC", "2026-05-05T10:00:30.5Z", "2026-05-05T10:01:00Z"},
		{"strictly after", "0 9 * * *", "UTC", "2026-05-05T09:00:00Z", "2026-05-06T09:00:00Z"},
		{"just before", "0 9 * * *", "UTC", "2026-05-05T08:59:59.999Z", "2026-05-05T09:00:00Z"},
		{"input zone irrelevant", "0 9 * * *", "Europe/Berlin", "2026-05-05T08:30:00+02:00", "2026-05-05T07:00:00Z"},
		{"weekday fri->mon", "0 9 * * 1-5", "America/New_York", "2026-05-08T13:00:00Z", "2026-05-11T13:00:00Z"},
		{"weekday same day", "0 9 * * 1-5", "America/New_York", "2026-05-08T12:00:00Z", "2026-05-08T13:00:00Z"},
		{"weekday from sat", "0 9 * * 1-5", "Europe/Berlin", "2026-05-09T00:00:00Z", "2026-05-11T07:00:00Z"},
		{"month end skips 30-day month", "0 0 31 * *", "UTC", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"},
		{"month end skips feb", "0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z"},
		{"month end jul->aug", "0 0 31 * *", "UTC", "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z"},
		{"feb 29 next leap", "0 12 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T12:00:00Z"},
		{"feb 29 after leap day", "0 12 29 2 *", "UTC", "2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"},
		{"feb 29 none in 5y", "0 12 29 2 *", "UTC", "2097-03-01T00:00:00Z", ""}, // 2100 is not a leap year
		{"yearly", "@yearly", "UTC", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"yearly in zone", "@yearly", "Australia/Sydney", "2026-06-01T00:00:00Z", "2026-12-31T13:00:00Z"},
		{"monthly", "@monthly", "Europe/Berlin", "2026-02-15T00:00:00Z", "2026-02-28T23:00:00Z"},
		{"hourly", "@hourly", "UTC", "2026-02-15T00:00:00Z", "2026-02-15T01:00:00Z"},
		{"dom or dow", "0 0 13 * 5", "UTC", "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z"}, // Friday 6th before the 13th

		// America/New_York: spring forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
		{"NY gap daily 02:30 fires at 03:00 EDT", "30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z"},
		{"NY gap daily 02:30 next day normal", "30 2 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"},
		{"NY gap daily 02:00", "0 2 * * *", "America/New_York", "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"},
		{"NY gap 01:59 before gap", "59 1 * * *", "America/New_York", "2026-03-08T00:00:00Z", "2026-03-08T06:59:00Z"},
		{"NY 03:00 is the gap end", "0 3 * * *", "America/New_York", "2026-03-08T00:00:00Z", "2026-03-08T07:00:00Z"},
		{"NY */15 in gap collapses", "*/15 2 * * *", "America/New_York", "2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z"},
		{"NY */15 in gap then next day", "*/15 2 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"},
		{"NY every minute across gap", "* * * * *", "America/New_York", "2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z"},
		{"NY every minute after gap", "* * * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-08T07:01:00Z"},
		{"NY hourly across gap", "0 * * * *", "America/New_York", "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"},
		{"NY hourly after gap", "0 * * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"},
		// America/New_York: fall back 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
		{"NY overlap daily 01:30 first occurrence", "30 1 * * *", "America/New_York", "2026-11-01T00:00:00Z", "2026-11-01T05:30:00Z"},
		{"NY overlap daily 01:30 not twice", "30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
		{"NY overlap from second pass", "30 1 * * *", "America/New_York", "2026-11-01T06:10:00Z", "2026-11-02T06:30:00Z"},
		{"NY overlap 01:00", "0 1 * * *", "America/New_York", "2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z"},
		{"NY overlap 02:00 after", "0 2 * * *", "America/New_York", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"},
		{"NY every minute end of first pass", "* * * * *", "America/New_York", "2026-11-01T05:58:00Z", "2026-11-01T05:59:00Z"},
		{"NY every minute skips second pass", "* * * * *", "America/New_York", "2026-11-01T05:59:00Z", "2026-11-01T07:00:00Z"},
		{"NY every minute from inside second pass", "* * * * *", "America/New_York", "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"},
		{"NY */15 skips second pass", "*/15 * * * *", "America/New_York", "2026-11-01T05:45:00Z", "2026-11-01T07:00:00Z"},
		{"NY hourly skips second 01:00", "0 * * * *", "America/New_York", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"},

		// Europe/Berlin: spring forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z).
		{"Berlin gap daily 02:30", "30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"},
		{"Berlin gap daily 02:30 next day", "30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"},
		{"Berlin gap every minute", "* * * * *", "Europe/Berlin", "2026-03-29T00:59:00Z", "2026-03-29T01:00:00Z"},
		// Europe/Berlin: fall back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
		{"Berlin overlap daily 02:30 first", "30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},
		{"Berlin overlap daily 02:30 once", "30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
		{"Berlin overlap hourly", "0 * * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"},

		// Australia/Sydney: fall back 2026-04-05 03:00 AEDT -> 02:00 AEST (16:00Z on 04-04).
		{"Sydney overlap daily 02:30 first", "30 2 * * *", "Australia/Sydney", "2026-04-04T00:00:00Z", "2026-04-04T15:30:00Z"},
		{"Sydney overlap daily 02:30 once", "30 2 * * *", "Australia/Sydney", "2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"},
		{"Sydney overlap every minute", "* * * * *", "Australia/Sydney", "2026-04-04T15:59:00Z", "2026-04-04T17:00:00Z"},
		// Australia/Sydney: spring forward 2026-10-04 02:00 AEST -> 03:00 AEDT (16:00Z on 10-03).
		{"Sydney gap daily 02:30", "30 2 * * *", "Australia/Sydney", "2026-10-03T00:00:00Z", "2026-10-03T16:00:00Z"},
		{"Sydney gap daily 02:30 next day", "30 2 * * *", "Australia/Sydney", "2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"},
		{"Sydney gap */15", "*/15 * * * *", "Australia/Sydney", "2026-10-03T15:45:00Z", "2026-10-03T16:00:00Z"},
		{"Sydney gap */15 after", "*/15 * * * *", "Australia/Sydney", "2026-10-03T16:00:00Z", "2026-10-03T16:15:00Z"},

		// Australia/Lord_Howe: 30-minute DST. Spring 2026-10-04 02:00 -> 02:30 (15:30Z on 10-03).
		{"Lord Howe half-hour gap", "15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", "2026-10-03T15:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.expr, tt.zone)
			got := c.Next(mustTime(t, tt.from))
			if tt.want == "" {
				if !got.IsZero() {
					t.Fatalf("Next(%s) = %s, want zero", tt.from, got)
				}
				return
			}
			want := mustTime(t, tt.want)
			if !got.Equal(want) {
				t.Fatalf("Next(%s) = %s (%s local), want %s (%s local)", tt.from,
					got.Format(time.RFC3339), got.In(c.Location()).Format(time.RFC3339),
					want.Format(time.RFC3339), want.In(c.Location()).Format(time.RFC3339))
			}
			if got.Location() != time.UTC {
				t.Errorf("Next returned location %v, want UTC", got.Location())
			}
		})
	}
}

// TestDSTDayRunCounts runs a schedule through a whole local DST day and checks
// the number of runs, that runs are strictly increasing, and that every
// wall-clock time fires at most once.
//
// Counting rule (policy "each matching wall-clock time fires once"):
//   - spring-forward day (23h): wall times in the skipped hour collapse with
//     the gap end (03:00 or 02:00 after the jump), so an hourly schedule runs
//     23 times, every minute 23*60 = 1380 times, */15 23*4 = 92 times.
//   - fall-back day (25h): the repeated hour fires on its first pass only, so
//     24 distinct wall hours give 24 hourly runs, 1440 minute runs, 96 */15
//     runs; one real hour has no runs.
func TestDSTDayRunCounts(t *testing.T) {
	tests := []struct {
		zone, date, expr string
		want             int
	}{
		{"America/New_York", "2026-03-08", "0 * * * *", 23},
		{"America/New_York", "2026-03-08", "* * * * *", 1380},
		{"America/New_York", "2026-03-08", "*/15 * * * *", 92},
		{"America/New_York", "2026-03-08", "*/15 2 * * *", 1},
		{"America/New_York", "2026-03-08", "30 2 * * *", 1},
		{"America/New_York", "2026-03-08", "30 1 * * *", 1},
		{"America/New_York", "2026-11-01", "0 * * * *", 24},
		{"America/New_York", "2026-11-01", "* * * * *", 1440},
		{"America/New_York", "2026-11-01", "*/15 * * * *", 96},
		{"America/New_York", "2026-11-01", "*/15 1 * * *", 4},
		{"America/New_York", "2026-11-01", "30 1 * * *", 1},
		{"America/New_York", "2026-11-01", "30 2 * * *", 1},
		{"America/New_York", "2026-03-09", "0 * * * *", 24}, // ordinary day
		{"Europe/Berlin", "2026-03-29", "0 * * * *", 23},
		{"Europe/Berlin", "2026-03-29", "* * * * *", 1380},
		{"Europe/Berlin", "2026-03-29", "*/15 * * * *", 92},
		{"Europe/Berlin", "2026-03-29", "30 2 * * *", 1},
		{"Europe/Berlin", "2026-10-25", "0 * * * *", 24},
		{"Europe/Berlin", "2026-10-25", "* * * * *", 1440},
		{"Europe/Berlin", "2026-10-25", "*/15 * * * *", 96},
		{"Europe/Berlin", "2026-10-25", "30 2 * * *", 1},
		{"Australia/Sydney", "2026-04-05", "0 * * * *", 24},
		{"Australia/Sydney", "2026-04-05", "* * * * *", 1440},
		{"Australia/Sydney", "2026-04-05", "*/15 * * * *", 96},
		{"Australia/Sydney", "2026-04-05", "30 2 * * *", 1},
		{"Australia/Sydney", "2026-10-04", "0 * * * *", 23},
		{"Australia/Sydney", "2026-10-04", "* * * * *", 1380},
		{"Australia/Sydney", "2026-10-04", "*/15 * * * *", 92},
		{"Australia/Sydney", "2026-10-04", "30 2 * * *", 1},
		{"UTC", "2026-03-08", "* * * * *", 1440},
	}
	for _, tt := range tests {
		t.Run(tt.zone+"/"+tt.date+"/"+tt.expr, func(t *testing.T) {
			c := mustParse(t, tt.expr, tt.zone)
			start := localMidnight(t, tt.zone, tt.date)
			end := start.In(c.Location()).AddDate(0, 0, 1) // next local midnight
			seen := map[string]bool{}
			n := 0
			prev := start.Add(-time.Nanosecond)
			for f := c.Next(prev); f.Before(end); f = c.Next(f) {
				if !f.After(prev) {
					t.Fatalf("runs not increasing: %s after %s", f, prev)
				}
				wall := f.In(c.Location()).Format("15:04")
				if seen[wall] {
					t.Fatalf("wall time %s fired twice (at %s)", wall, f)
				}
				seen[wall] = true
				prev = f
				n++
			}
			if n != tt.want {
				t.Fatalf("%d runs on %s, want %d", n, tt.date, tt.want)
			}
		})
	}
}

func TestPrev(t *testing.T) {
	tests := []struct {
		name, expr, zone, at, want string
	}{
		{"exact fire", "0 9 * * *", "UTC", "2026-05-05T09:00:00Z", "2026-05-05T09:00:00Z"},
		{"just before fire", "0 9 * * *", "UTC", "2026-05-05T08:59:59Z", "2026-05-04T09:00:00Z"},
		{"every minute", "* * * * *", "UTC", "2026-05-05T10:00:30Z", "2026-05-05T10:00:00Z"},
		{"weekday monday morning", "0 9 * * 1-5", "America/New_York", "2026-05-11T12:00:00Z", "2026-05-08T13:00:00Z"},
		{"month end", "0 0 31 * *", "UTC", "2026-05-30T00:00:00Z", "2026-03-31T00:00:00Z"},
		{"feb 29", "0 12 29 2 *", "UTC", "2027-06-01T00:00:00Z", "2024-02-29T12:00:00Z"},
		{"yearly", "@yearly", "Europe/Berlin", "2026-06-01T00:00:00Z", "2025-12-31T23:00:00Z"},
		{"none in 5 years", "0 12 29 2 *", "UTC", "2104-02-28T00:00:00Z", ""}, // last was 2096
		{"NY gap", "30 2 * * *", "America/New_York", "2026-03-08T07:30:00Z", "2026-03-08T07:00:00Z"},
		{"NY gap before", "30 2 * * *", "America/New_York", "2026-03-08T06:59:59Z", "2026-03-07T07:30:00Z"},
		{"NY overlap in second pass", "30 1 * * *", "America/New_York", "2026-11-01T06:45:00Z", "2026-11-01T05:30:00Z"},
		{"NY overlap every minute second pass", "* * * * *", "America/New_York", "2026-11-01T06:45:00Z", "2026-11-01T05:59:00Z"},
		{"NY overlap hourly second pass", "0 * * * *", "America/New_York", "2026-11-01T06:59:00Z", "2026-11-01T05:00:00Z"},
		{"Sydney overlap", "*/15 * * * *", "Australia/Sydney", "2026-04-04T16:50:00Z", "2026-04-04T15:45:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.expr, tt.zone)
			got := c.Prev(mustTime(t, tt.at))
			if tt.want == "" {
				if !got.IsZero() {
					t.Fatalf("Prev(%s) = %s, want zero", tt.at, got)
				}
				return
			}
			if want := mustTime(t, tt.want); !got.Equal(want) {
				t.Fatalf("Prev(%s) = %s, want %s", tt.at, got.Format(time.RFC3339), tt.want)
			}
		})
	}
}

// transitions returns the zone transitions of loc in [from, to).
func transitions(loc *time.Location, from, to time.Time) []time.Time {
	var out []time.Time
	for t := from; t.Before(to); {
		_, end := t.In(loc).ZoneBounds()
		if end.IsZero() || !end.Before(to) {
			break
		}
		out = append(out, end)
		t = end
	}
	return out
}

// bruteForce computes the policy independently of Next: it scans real
// instants minute by minute and fires at instant i if a wall time passed over
// in the step to i (a single minute normally; the whole skipped range at a
// spring-forward jump) matches and has not been seen before (which excludes
// the second pass of a fall-back overlap).
func bruteForce(c *Cron, from, to time.Time) []time.Time {
	matches := func(w time.Time) bool { return c.spec.Next(w.Add(-time.Second)).Equal(w) }
	seen := map[time.Time]bool{}
	var out []time.Time
	prevWall := wallOf(from.Add(-time.Minute), c.loc)
	for i := from; i.Before(to); i = i.Add(time.Minute) {
		w := wallOf(i, c.loc)
		fire := false
		for x := prevWall.Add(time.Minute); !x.After(w); x = x.Add(time.Minute) {
			if !seen[x] && matches(x) {
				fire = true
			}
			seen[x] = true
		}
		if fire {
			out = append(out, i)
		}
		prevWall = w
	}
	return out
}

// TestAgainstBruteForce cross-checks Next and Prev against bruteForce around
// every 2026 transition of several zones, including a 30-minute DST zone.
func TestAgainstBruteForce(t *testing.T) {
	zones := []string{"America/New_York", "Europe/Berlin", "Australia/Sydney", "Australia/Lord_Howe", "UTC"}
	exprs := []string{
		"* * * * *", "*/15 * * * *", "0 * * * *", "30 * * * *", "*/7 1-3 * * *",
		"30 2 * * *", "30 1 * * *", "0 2 * * *", "0 3 * * *", "59 1 * * *", "45 2,3 * * *",
		"15,45 2 * * *", "0 0 * * *",
	}
	y0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		trs := transitions(loc, y0, y0.AddDate(1, 0, 0))
		if zone != "UTC" && len(trs) != 2 {
			t.Fatalf("%s: %d transitions in 2026, want 2", zone, len(trs))
		}
		windows := append([]time.Time{y0.AddDate(0, 5, 0)}, trs...) // plus an ordinary day
		for _, tr := range windows {
			from, to := tr.Add(-30*time.Hour), tr.Add(30*time.Hour)
			for _, expr := range exprs {
				c := mustParse(t, expr, zone)
				want := bruteForce(c, from, to)
				var got []time.Time
				for f := c.Next(from.Add(-time.Nanosecond)); f.Before(to); f = c.Next(f) {
					got = append(got, f)
				}
				if len(got) != len(want) {
					t.Errorf("%s %q around %s: %d runs, brute force %d", zone, expr, tr, len(got), len(want))
					continue
				}
				for i := range want {
					if !got[i].Equal(want[i]) {
						t.Errorf("%s %q run %d: Next chain %s, brute force %s", zone, expr, i, got[i], want[i])
						break
					}
					// Prev costs ~50 Next calls; sample dense schedules
					// (every 7th run and all runs near the transition).
					if len(want) > 100 && i%7 != 0 && want[i].Sub(tr).Abs() > 2*time.Hour {
						continue
					}
					if p := c.Prev(want[i]); !p.Equal(want[i]) {
						t.Errorf("%s %q: Prev(%s) = %s, want itself", zone, expr, want[i], p)
					}
					if i > 0 {
						if p := c.Prev(want[i].Add(-time.Second)); !p.Equal(want[i-1]) {
							t.Errorf("%s %q: Prev(%s - 1s) = %s, want %s", zone, expr, want[i], p, want[i-1])
						}
						if n := c.Next(want[i].Add(-time.Second)); !n.Equal(want[i]) {
							t.Errorf("%s %q: Next(%s - 1s) = %s", zone, expr, want[i], n)
						}
					}
				}
			}
		}
	}
}

// TestSparseSchedulesAreFast guards against minute-by-minute scanning: yearly
// and leap-day schedules must resolve in a bounded number of steps.
func TestSparseSchedulesAreFast(t *testing.T) {
	yearly := mustParse(t, "@yearly", "America/New_York")
	leap := mustParse(t, "0 12 29 2 *", "Europe/Berlin")
	at := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	for i := 0; i < 50; i++ {
		yearly.Next(at)
		yearly.Prev(at)
		leap.Next(at)
		leap.Prev(at)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("50 rounds of sparse Next/Prev took %s", d)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := mustParse(t, "*/15 * * * *", "America/New_York")
	at := mustTime(t, "2026-11-01T05:50:00Z")
	done := make(chan time.Time)
	for i := 0; i < 8; i++ {
		go func() { done <- c.Next(at) }()
	}
	want := mustTime(t, "2026-11-01T07:00:00Z")
	for i := 0; i < 8; i++ {
		if got := <-done; !got.Equal(want) {
			t.Errorf("Next = %s, want %s", got, want)
		}
	}
}
