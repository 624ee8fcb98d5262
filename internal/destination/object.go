package destination

import (
	"strings"
	"time"
)

// tokenNames are the template tokens a schedule's uri may hold.
var tokenNames = map[string]bool{
	"date": true, "time": true, "yyyy": true, "mm": true, "dd": true, "hh": true,
	"period_start": true, "period_end": true, "run_id": true, "schedule_id": true,
}

// ValidateObjectURI checks a schedule's object URI (which may contain
// template tokens) against the integration's base destination and returns
// the parsed URI with the tokens left in Path.
func ValidateObjectURI(base Location, uri string) (Location, error) {
	// Re-parse the base so a hand-built or stale Location cannot widen the
	// "under the destination" check (e.g. a prefix missing its trailing "/").
	b, err := ParseDestination(base.Provider, base.String())
	if err != nil {
		return Location{}, invalid("the integration's destination %q is invalid: %s", base.String(), err)
	}
	if err := scanTokens(uri, nil); err != nil {
		return Location{}, err
	}
	loc, err := parse(b.Provider, uri)
	if err != nil {
		return Location{}, err
	}
	if loc.Account != b.Account || loc.Bucket != b.Bucket || !strings.HasPrefix(loc.Path, b.Path) {
		return Location{}, invalid("must lie under %s", b)
	}
	if err := checkSegments(loc.segmentPath()); err != nil {
		return Location{}, err
	}
	if loc.Path == b.Path || strings.HasSuffix(loc.Path, "/") {
		return Location{}, invalid("must name an object under %s, not a directory (must not end with \"/\")", b)
	}
	return loc, nil
}

// scanTokens walks uri's {token}s, calling emit for literal text and tokens
// (emit may be nil to only validate). Braces have no other meaning, so a
// stray one is an error rather than a literal.
func scanTokens(uri string, emit func(lit, token string) error) error {
	for uri != "" {
		open := strings.IndexAny(uri, "{}")
		if open < 0 {
			break
		}
		if uri[open] == '}' {
			return invalid("has an unbalanced \"}\"")
		}
		end := strings.IndexAny(uri[open+1:], "{}")
		if end < 0 || uri[open+1+end] == '{' {
			return invalid("has an unbalanced \"{\"")
		}
		name := uri[open+1 : open+1+end]
		if !tokenNames[name] {
			return invalid("has unknown token {%s} (known: {date} {time} {yyyy} {mm} {dd} {hh} {period_start} {period_end} {run_id} {schedule_id})", name)
		}
		if emit != nil {
			if err := emit(uri[:open], name); err != nil {
				return err
			}
		}
		uri = uri[open+2+end:]
	}
	if emit != nil && uri != "" {
		return emit(uri, "")
	}
	return nil
}

// Vars are the values for URI tokens.
type Vars struct {
	Time        time.Time // run time
	PeriodStart time.Time
	PeriodEnd   time.Time
	RunID       string
	ScheduleID  string
	Zone        *time.Location // tokens are rendered in this zone; nil means UTC
}

// Render replaces the tokens of uri with v's values.
func Render(uri string, v Vars) (string, error) {
	zone := v.Zone
	if zone == nil {
		zone = time.UTC
	}
	t := v.Time.In(zone)
	var out strings.Builder
	err := scanTokens(uri, func(lit, token string) error {
		out.WriteString(lit)
		var val string
		switch token {
		case "":
			return nil
		case "date":
			val = t.Format("2006-01-02")
		case "time":
			val = t.Format("150405")
		case "yyyy":
			val = t.Format("2006")
		case "mm":
			val = t.Format("01")
		case "dd":
			val = t.Format("02")
		case "hh":
			val = t.Format("15")
		case "period_start":
			val = v.PeriodStart.In(zone).Format("20060102T150405")
		case "period_end":
			val = v.PeriodEnd.In(zone).Format("20060102T150405")
		case "run_id", "schedule_id":
			val = v.RunID
			if token == "schedule_id" {
				val = v.ScheduleID
			}
			// The uri was validated with the token unrendered, so a value
			// that adds a segment, a dot segment or an escape would bypass it.
			if err := checkTokenValue(token, val); err != nil {
				return err
			}
		}
		out.WriteString(val)
		return nil
	})
	if err != nil {
		return "", err
	}
	return out.String(), nil
}

func checkTokenValue(token, val string) error {
	if val == "" {
		return invalid("token {%s} has no value", token)
	}
	if val == "." || val == ".." || strings.ContainsAny(val, `/\%?#{}`) {
		return invalid("token {%s} has an unsafe value %q", token, val)
	}
	for _, r := range val {
		if r < 0x20 || r == 0x7f {
			return invalid("token {%s} has an unsafe value %q", token, val)
		}
	}
	return nil
}

// PrefixFileName puts "YYYY-MM-DD_HHMMSS_" (t in zone, nil meaning UTC)
// before the last path segment, like Sigma's "prefix file name with datetime".
func PrefixFileName(uri string, t time.Time, zone *time.Location) string {
	if zone == nil {
		zone = time.UTC
	}
	i := strings.LastIndexByte(uri, '/') + 1
	return uri[:i] + t.In(zone).Format("2006-01-02_150405_") + uri[i:]
}

// CheckExtension checks that the URI's file name ends in the extension for
// format (CSV, JSONL, PARQUET) and compression (NONE, GZIP, ZSTD). The proto
// enum spellings (FORMAT_CSV, COMPRESSION_GZIP) are accepted too.
func CheckExtension(uri, format, compression string) error {
	format = strings.TrimPrefix(strings.ToUpper(format), "FORMAT_")
	compression = strings.TrimPrefix(strings.ToUpper(compression), "COMPRESSION_")
	var bases []string
	switch format {
	case "CSV":
		bases = []string{".csv"}
	case "JSONL":
		bases = []string{".jsonl", ".ndjson"}
	case "PARQUET":
		bases = []string{".parquet"}
	default:
		return invalid("unknown format %q (want CSV, JSONL or PARQUET)", format)
	}
	var comps []string
	switch compression {
	case "NONE":
		comps = []string{""}
	case "GZIP":
		comps = []string{".gz"}
	case "ZSTD":
		comps = []string{".zst", ".zstd"}
	default:
		return invalid("unknown compression %q (want NONE, GZIP or ZSTD)", compression)
	}
	if format == "PARQUET" && compression != "NONE" {
		return invalid("Parquet compresses internally; use COMPRESSION_NONE")
	}
	name := strings.ToLower(uri[strings.LastIndexByte(uri, '/')+1:])
	// Only the first compression spelling is advertised; ".zstd" is a courtesy.
	var want []string
	for _, b := range bases {
		want = append(want, `"`+b+comps[0]+`"`)
		for _, c := range comps {
			if strings.HasSuffix(name, b+c) {
				return nil
			}
		}
	}
	return invalid("uri must end in %s for %s with %s", strings.Join(want, " or "), format, compression)
}
