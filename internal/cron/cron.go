// Package cron parses export schedules (a 5-field cron expression plus
// an IANA time zone) and computes their fire instants.
//
// Parsing is delegated to github.com/robfig/cron/v3, but next/previous-run
// computation is done here, because robfig evaluates schedules directly in the
// target zone and silently skips runs whose wall time falls into a
// spring-forward gap (and may fire twice in a fall-back overlap). We want a
// documented, predictable policy instead:
//
// DST policy. Cron expressions are evaluated on the wall clock of the
// schedule's time zone, and every matching wall-clock time fires exactly once.
//   - Spring forward (gap): a matching wall time that does not exist (e.g.
//     02:30 on the spring-forward day in America/New_York) fires once at the
//     first valid instant after the gap, i.e. the instant the clocks jump
//     (03:00 local). All matching wall times inside the same gap, plus a match
//     at the first wall time after the gap itself (e.g. 03:00), collapse into
//     that single run.
//   - Fall back (overlap): a matching wall time that occurs twice fires once,
//     at its first occurrence (the earlier UTC instant, still on the DST
//     offset). Minute-based schedules (every minute, "*/15 * * * *", hourly)
//     therefore fire during the first pass through the repeated hour only and
//     are silent during the second pass.
//
// Consequently an hourly schedule has 23 runs on a spring-forward day and 24
// (not 25) runs on a fall-back day.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	// The IANA database is compiled in (~450 KB): a minimal container
	// without /usr/share/zoneinfo still accepts and evaluates every zone,
	// and a host's older database cannot move fire times between hosts.
	// (The host's files are still read first when present.)
	_ "time/tzdata"

	robfig "github.com/robfig/cron/v3"
)

// horizonYears bounds every search, so that schedules that fire very rarely
// (or never) cannot make Next/Prev loop for long.
const horizonYears = 5

// parser accepts exactly the standard 5 fields and @descriptors. Seconds and
// @every are not part of our schedule language.
var parser = robfig.NewParser(robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// Cron is a parsed cron expression bound to a time zone.
// It is immutable and safe for concurrent use.
type Cron struct {
	spec *robfig.SpecSchedule // evaluated on a "wall clock" encoded as UTC fields
	loc  *time.Location
}

// FieldError reports which input field was invalid and why. Field is "cron"
// or "time_zone", matching the API field names so callers can map it directly
// to a validation error.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Parse validates expr (5 fields or @descriptor) and zone (IANA name, e.g.
// "Europe/Berlin"; "UTC" is ok; "" and "Local" are errors because they would
// make the schedule depend on the server's configuration).
func Parse(expr, zone string) (*Cron, error) {
	loc, err := loadZone(zone)
	if err != nil {
		return nil, err
	}
	spec, err := parseExpr(expr)
	if err != nil {
		return nil, err
	}
	c := &Cron{spec: spec, loc: loc}
	// An expression like "0 0 31 2 *" parses fine but can never fire; a
	// schedule that silently never runs is worse than a validation error.
	if c.Next(time.Now()).IsZero() {
		return nil, &FieldError{Field: "cron", Msg: fmt.Sprintf("%q never fires", expr)}
	}
	return c, nil
}

func loadZone(zone string) (*time.Location, error) {
	switch zone {
	case "":
		return nil, &FieldError{Field: "time_zone", Msg: "time zone is required (IANA name, e.g. \"Europe/Berlin\" or \"UTC\")"}
	case "Local":
		return nil, &FieldError{Field: "time_zone", Msg: "\"Local\" is not allowed; use an IANA time zone name"}
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, &FieldError{Field: "time_zone", Msg: fmt.Sprintf("unknown time zone %q", zone)}
	}
	return loc, nil
}

func parseExpr(expr string) (*robfig.SpecSchedule, error) {
	fail := func(format string, args ...any) (*robfig.SpecSchedule, error) {
		return nil, &FieldError{Field: "cron", Msg: fmt.Sprintf(format, args...)}
	}
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return fail("expression is required")
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		// The zone is a separate field; two sources of truth would conflict.
		zone, _, _ := strings.Cut(expr, " ")
		return nil, &FieldError{Field: "time_zone", Msg: fmt.Sprintf("a %s prefix in cron is not accepted; set time_zone to %q and remove the prefix from cron",
			zone, zone[strings.Index(zone, "=")+1:])}
	case strings.HasPrefix(expr, "@every"):
		return fail("@every is not supported; use a cron expression")
	case !strings.HasPrefix(expr, "@"):
		// Checked here rather than relying on robfig's wording.
		if n := len(strings.Fields(expr)); n != 5 {
			return fail("expected 5 fields, got %d", n)
		}
	}
	var domStar, dowStar bool
	if !strings.HasPrefix(expr, "@") {
		f := strings.Fields(expr)
		if err := quartzOnly(f[2], f[4]); err != nil {
			return fail("%s", err.Error())
		}
		dow, err := expandDow(f[4])
		if err != nil {
			return fail("day of week %q: %s", f[4], err.Error())
		}
		domStar, dowStar = strings.HasPrefix(f[2], "*"), strings.HasPrefix(f[4], "*")
		expr = strings.Join([]string{f[0], f[1], f[2], f[3], dow}, " ")
	}
	sched, err := parser.Parse(expr)
	if err != nil {
		return fail("%s", err.Error())
	}
	spec, ok := sched.(*robfig.SpecSchedule)
	if !ok { // defensive: only @every yields another type, rejected above
		return fail("unsupported expression")
	}
	// Pin evaluation to UTC: we feed robfig wall-clock fields encoded as UTC
	// times, so it must never apply a zone (and thus DST) itself.
	cp := *spec
	cp.Location = time.UTC
	// Vixie cron and cronie: a day field that starts with "*" ("*/2" as
	// well as "*") leaves the day unrestricted by it, so the two day
	// fields are ANDed; only when both are restricted does either match.
	// robfig sets its star bit for a bare "*" alone, which made
	// "0 16 */2 * sat" fire on odd days OR Saturdays.
	if domStar {
		cp.Dom |= starBit
	}
	if dowStar {
		cp.Dow |= starBit
	}
	return &cp, nil
}

// starBit is robfig's mark of an unrestricted field (SpecSchedule's top bit).
const starBit = 1 << 63

// quartzOnly refuses Quartz's day extensions with a message saying what
// they are: L (last), W (nearest weekday) and # (nth weekday) are not cron.
func quartzOnly(dom, dow string) error {
	if strings.ContainsAny(strings.ToUpper(dom), "LW") {
		return fmt.Errorf("day of month %q: L and W are Quartz extensions, not cron; list the days instead", dom)
	}
	if strings.Contains(dow, "#") {
		return fmt.Errorf("day of week %q: N#M (the Mth weekday N) is a Quartz extension, not cron", dow)
	}
	if len(dow) > 1 && strings.HasSuffix(strings.ToUpper(dow), "L") && dow[len(dow)-2] >= '0' && dow[len(dow)-2] <= '9' {
		return fmt.Errorf("day of week %q: NL (the last weekday N) is a Quartz extension, not cron", dow)
	}
	return nil
}

var dowNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// expandDow rewrites a day-of-week field as crontab(5) reads it into the
// explicit list robfig accepts: 0 and 7 are both Sunday (in values, ranges
// and steps: "5-7", "fri-sun" and "Wed-Sun" end on Sunday), names are
// three-letter English abbreviations in any case, and "*" alone is kept.
// A range that wraps past Sunday ("sat-tue") is refused rather than guessed.
func expandDow(field string) (string, error) {
	if field == "*" || field == "?" {
		return field, nil
	}
	var days [7]bool
	for _, part := range strings.Split(field, ",") {
		base, stepText, stepped := strings.Cut(part, "/")
		step := 1
		if stepped {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 || n > 7 {
				return "", fmt.Errorf("step %q must be a number from 1 to 7", stepText)
			}
			step = n
		}
		var lo, hi int
		switch a, b, isRange := strings.Cut(base, "-"); {
		case base == "*":
			lo, hi = 0, 7
		case isRange:
			var err error
			if lo, err = dowValue(a); err != nil {
				return "", err
			}
			if hi, err = dowValue(b); err != nil {
				return "", err
			}
			if hi == 0 && lo > 0 {
				hi = 7 // "fri-sun", "5-0": up to Sunday
			}
			if lo > hi {
				return "", fmt.Errorf("range %q wraps past Sunday; write it as two ranges (e.g. sat-sun,mon-tue)", base)
			}
		default:
			v, err := dowValue(base)
			if err != nil {
				return "", err
			}
			lo, hi = v, v
			if stepped {
				hi = 7 // "1/2": from Monday on, every other day
			}
		}
		for v := lo; v <= hi; v += step {
			days[v%7] = true
		}
	}
	var out []string
	for d, on := range days {
		if on {
			out = append(out, strconv.Itoa(d))
		}
	}
	return strings.Join(out, ","), nil
}

func dowValue(s string) (int, error) {
	if v, ok := dowNames[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a day (0-7, 0 and 7 being Sunday, or sun-sat)", s)
	}
	if n < 0 || n > 7 {
		return 0, fmt.Errorf("%d is out of range (0-7, 0 and 7 being Sunday)", n)
	}
	return n, nil
}

// Location returns the schedule's time zone.
func (c *Cron) Location() *time.Location { return c.loc }

// Next returns the first fire instant strictly after t, in UTC, per the DST
// policy in the package documentation. It returns the zero time if there is
// none within 5 years.
func (c *Cron) Next(t time.Time) time.Time {
	// Every matching wall time W maps to a fire instant resolve(W), and that
	// mapping is non-decreasing in W. Since resolve(wall(t)) <= t, no wall time
	// <= wall(t) can fire after t, so we start from wall(t) and walk matches
	// forward. Matches are skipped only while resolve(W) <= t, which happens
	// for at most the length of one fall-back overlap (t in its second pass)
	// or one gap (several walls collapsing onto an instant <= t).
	w := wallOf(t, c.loc)
	limit := w.AddDate(horizonYears, 0, 0)
	for {
		w = c.spec.Next(w)
		if w.IsZero() || w.After(limit) {
			return time.Time{}
		}
		if r := c.resolve(w); r.After(t) {
			return r
		}
	}
}

// Prev returns the latest fire instant <= t (in UTC), i.e. the start of the
// period containing t, or the zero time if there is none in the preceding 5
// years.
func (c *Cron) Prev(t time.Time) time.Time {
	if f := c.Next(t.Add(-time.Nanosecond)); f.Equal(t) {
		return f // t itself is a fire instant
	}
	floor := t.AddDate(-horizonYears, 0, 0)
	// Widen a window (lo, t] exponentially until it contains a fire, so dense
	// schedules are resolved with a handful of Next calls.
	hi := t // invariant: no fire in (hi, t]
	lo := t
	for step := time.Hour; ; step *= 2 {
		lo = t.Add(-step)
		if lo.Before(floor) {
			lo = floor
		}
		if f := c.Next(lo); !f.IsZero() && !f.After(t) {
			break
		}
		hi = lo
		if lo.Equal(floor) {
			return time.Time{}
		}
	}
	// Bisect: Next(lo) <= t and Next(hi) > t. Fire instants are whole
	// seconds, so once hi-lo <= 1s the window (lo, hi] holds exactly the last
	// fire <= t, which is Next(lo).
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if f := c.Next(mid); !f.IsZero() && !f.After(t) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return c.Next(lo)
}

// resolve maps a matching wall-clock minute (encoded as UTC fields) to the
// real instant it fires at, in UTC.
func (c *Cron) resolve(w time.Time) time.Time {
	// time.Date picks one of the two zones around a transition without
	// guaranteeing which, so we classify its result explicitly.
	r := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, c.loc)
	got := wallOf(r, c.loc)
	switch {
	case got.After(w):
		// Gap, and r was normalised past it: the gap ends where r's zone
		// period starts.
		start, _ := r.ZoneBounds()
		return start.UTC()
	case got.Before(w):
		// Gap, and r was normalised before it: the gap ends where r's zone
		// period ends.
		_, end := r.ZoneBounds()
		return end.UTC()
	}
	// w exists. If the preceding zone period had a larger offset (fall back),
	// w may also have occurred there, earlier; prefer that first occurrence.
	start, _ := r.ZoneBounds()
	if start.IsZero() {
		return r.UTC() // no earlier transition (e.g. UTC)
	}
	_, cur := r.Zone()
	_, prev := start.Add(-time.Second).Zone()
	if prev > cur {
		early := time.Unix(w.Unix()-int64(prev), 0)
		if early.Before(start) && wallOf(early, c.loc).Equal(w) {
			return early.UTC()
		}
	}
	return r.UTC()
}

// wallOf returns t's wall-clock reading in loc, encoded as a UTC time with
// the same fields, so robfig's schedule can be evaluated on it without any
// DST effects.
func wallOf(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// KeepLegacyMeaning rewrites an expression saved before the day fields
// followed cronie (see parseExpr) so that it keeps the fire times it had:
// where neither day field was a bare "*" (or "?") but one began with "*"
// ("*/2"), the fields were ORed; spelling that "*" as its full range
// ("1-31/2", "0-6/2") keeps them ORed under the cronie rule. It reports
// whether expr needed it (ok false: expr unchanged, same meaning).
func KeepLegacyMeaning(expr string) (string, bool) {
	f := strings.Fields(strings.TrimSpace(expr))
	if len(f) != 5 || strings.HasPrefix(f[0], "@") {
		return expr, false
	}
	bare := func(s string) bool { return s == "*" || s == "?" }
	dom, dow := f[2], f[4]
	if bare(dom) || bare(dow) || (!strings.HasPrefix(dom, "*") && !strings.HasPrefix(dow, "*")) {
		return expr, false
	}
	if strings.HasPrefix(dom, "*") {
		f[2] = "1-31" + dom[1:]
	}
	if strings.HasPrefix(dow, "*") {
		f[4] = "0-6" + dow[1:]
	}
	return strings.Join(f, " "), true
}
