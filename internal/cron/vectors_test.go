package cron

import (
	"testing"
	"time"
)

// TestCrontabVectors checks crontab lines as Vixie cron / cronie read them,
// with vectors from other implementations' own tests and manuals:
//
//   - cronie, man/crontab.5 ("30 4 1,15 * 5" runs on the 1st and the 15th
//     and every Friday; 0 and 7 are both Sunday; names are the first three
//     letters, case-insensitive);
//   - cronie, src/entry.c and src/cron.c: a day field whose first character
//     is '*' sets DOM_STAR/DOW_STAR, and then both day fields must match
//     (only when both are restricted does either one suffice);
//   - robfig/cron v3, spec_test.go TestActivation: its vectors hold except
//     "* * */10 * Sun" on Sunday Jul 15 2012, which robfig (issue #70)
//     fires and cronie does not (15 is not in */10 = 1,11,21,31).
//
// matches reports whether the minute at ts is a fire time.
func TestCrontabVectors(t *testing.T) {
	for _, v := range []struct {
		at, expr string
		want     bool
	}{
		// crontab(5)
		{"Fri Jul 6 04:30 2012", "30 4 1,15 * 5", true},
		{"Sun Jul 1 04:30 2012", "30 4 1,15 * 5", true},
		{"Sat Jul 7 04:30 2012", "30 4 1,15 * 5", false},
		{"Sun Jul 8 04:05 2012", "5 4 * * sun", true},
		{"Sun Jul 8 04:05 2012", "5 4 * * 7", true},
		{"Sun Jul 8 04:05 2012", "5 4 * * 0", true},
		{"Sun Jul 8 04:05 2012", "5 4 * * SUN", true},
		// Sunday as 7 in ranges, lists and steps; ranges ending on Sunday.
		{"Sun Jul 8 00:00 2012", "0 0 * * 5-7", true},
		{"Fri Jul 6 00:00 2012", "0 0 * * 5-7", true},
		{"Mon Jul 9 00:00 2012", "0 0 * * 5-7", false},
		{"Sun Jul 8 00:00 2012", "0 0 * * fri-sun", true},
		{"Thu Jul 5 00:00 2012", "0 0 * * fri-sun", false},
		{"Wed Jul 4 00:00 2012", "0 0 * * Wed-Sun", true},
		{"Sun Jul 8 00:00 2012", "0 0 * * Wed-Sun", true},
		{"Tue Jul 10 00:00 2012", "0 0 * * Wed-Sun", false},
		{"Sun Jul 8 00:00 2012", "0 0 * * 1,7", true},
		{"Sun Jul 8 00:00 2012", "0 0 * * 1-7/3", true}, // 1,4,7
		{"Thu Jul 5 00:00 2012", "0 0 * * 1-7/3", true},
		{"Tue Jul 10 00:00 2012", "0 0 * * 1-7/3", false},
		{"Sun Jul 8 00:00 2012", "0 0 * * */2", true}, // 0,2,4,6
		{"Mon Jul 9 00:00 2012", "0 0 * * */2", false},
		{"Tue Jul 10 00:00 2012", "0 0 * * 1/2", false}, // 1,3,5,7
		{"Sun Jul 8 00:00 2012", "0 0 * * 1/2", true},
		// A '*'-led day field does not OR (cronie DOM_STAR/DOW_STAR).
		{"Sat Jul 7 16:00 2012", "0 16 */2 * sat", true},   // odd day, Saturday
		{"Sat Jul 14 16:00 2012", "0 16 */2 * sat", false}, // Saturday, even day
		{"Thu Jul 5 16:00 2012", "0 16 */2 * sat", false},  // odd day, Thursday
		{"Sun Jul 15 00:00 2012", "0 0 */2 * */3", true},   // odd day, Sunday (0,3,6)
		{"Mon Jul 16 00:00 2012", "0 0 1,16 * */2", false}, // restricted dom, '*'-led dow: AND
		{"Sun Jul 15 00:00 2012", "0 0 1,16 * */2", false},
		{"Mon Jul 16 00:00 2012", "0 0 1,16 * 1", true}, // both restricted: OR
		{"Sun Jul 1 00:00 2012", "0 0 1,16 * 1", true},
		// robfig/cron spec_test.go TestActivation (5-field forms).
		{"Mon Jul 9 15:00 2012", "0/15 * * * *", true},
		{"Mon Jul 9 15:45 2012", "0/15 * * * *", true},
		{"Mon Jul 9 15:40 2012", "0/15 * * * *", false},
		{"Mon Jul 9 15:05 2012", "5/15 * * * *", true},
		{"Mon Jul 9 15:50 2012", "5/15 * * * *", true},
		{"Sun Jul 15 15:00 2012", "0/15 * * Jul *", true},
		{"Sun Jul 15 15:00 2012", "0/15 * * Jun *", false},
		{"Sun Jul 15 08:30 2012", "30 08 ? Jul Sun", true},
		{"Sun Jul 15 08:30 2012", "30 08 15 Jul ?", true},
		{"Mon Jul 16 08:30 2012", "30 08 ? Jul Sun", false},
		{"Mon Jul 16 08:30 2012", "30 08 15 Jul ?", false},
		{"Sun Jul 15 00:00 2012", "* * 1,15 * Sun", true},
		{"Fri Jun 15 00:00 2012", "* * 1,15 * Sun", true},
		{"Wed Aug 1 00:00 2012", "* * 1,15 * Sun", true},
		{"Sun Jul 15 00:00 2012", "* * */10 * Sun", false}, // robfig: true (its #70); cronie: false
		{"Sun Jul 15 00:00 2012", "* * * * Mon", false},
		{"Mon Jul 9 00:00 2012", "* * 1,15 * *", false},
		{"Sun Jul 15 00:00 2012", "* * 1,15 * *", true},
		{"Sun Jul 15 00:00 2012", "* * */2 * Sun", true},
	} {
		at, err := time.Parse("Mon Jan 2 15:04 2006", v.at)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(v.expr, "UTC")
		if err != nil {
			t.Errorf("Parse(%q): %v", v.expr, err)
			continue
		}
		if got := c.Next(at.Add(-time.Second)).Equal(at); got != v.want {
			t.Errorf("%q at %s: fires %v, want %v", v.expr, v.at, got, v.want)
		}
	}
}

// TestStarDayFieldRunsPerMonth: the example, counted over a year:
// "0 16 */2 * sat" fires on odd-numbered Saturdays only (~2 a month), not
// on every odd day or Saturday (~18 a month).
func TestStarDayFieldRunsPerMonth(t *testing.T) {
	c := mustParse(t, "0 16 */2 * sat", "UTC")
	from := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	for f := c.Next(from); f.Before(from.AddDate(1, 0, 0)); f = c.Next(f) {
		if f.Weekday() != time.Saturday || f.Day()%2 != 1 {
			t.Fatalf("fires on %s", f.Format("Mon Jan 2"))
		}
		n++
	}
	if n < 20 || n > 32 {
		t.Errorf("%d runs in 2027, want about 26", n)
	}
}

// TestKeepLegacyMeaning: expressions whose meaning the cronie day rule
// changes are rewritten to fire exactly when robfig's rule (the one they
// were saved under) fired them, over a year; others are left alone.
func TestKeepLegacyMeaning(t *testing.T) {
	for _, tc := range []struct {
		expr, want string
		changed    bool
	}{
		{"0 16 */2 * sat", "0 16 1-31/2 * sat", true},
		{"0 0 1,15 * */2", "0 0 1,15 * 0-6/2", true},
		{"0 0 */10 * */3", "0 0 1-31/10 * 0-6/3", true},
		{"0 0 * * */2", "0 0 * * */2", false}, // a bare "*" day field: ANDed before and after
		{"0 0 */2 * *", "0 0 */2 * *", false},
		{"0 0 1,15 * 5", "0 0 1,15 * 5", false},
		{"@daily", "@daily", false},
	} {
		got, changed := KeepLegacyMeaning(tc.expr)
		if got != tc.want || changed != tc.changed {
			t.Errorf("KeepLegacyMeaning(%q) = %q, %v; want %q, %v", tc.expr, got, changed, tc.want, tc.changed)
		}
		legacy, err := parser.Parse(tc.expr) // robfig's own reading
		if err != nil {
			t.Fatal(err)
		}
		now := mustParse(t, got, "UTC")
		from := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		a, b := from, from
		for i := 0; i < 400; i++ {
			a, b = legacy.Next(a), now.Next(b)
			if !a.Equal(b) {
				t.Errorf("%q -> %q: run %d at %s under the old rule, %s now", tc.expr, got, i, a, b)
				break
			}
		}
	}
}
