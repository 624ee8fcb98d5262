package auditlog

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The built-in connection and its single table, as shown by WorkbookService.
const (
	TableName      = "AUDIT_LOGS"
	ConnectionID   = "con_audit_logs"
	ConnectionName = "Audit Logs"
)

// Column types as exposed to clients.
const (
	TypeString    = "STRING"
	TypeTimestamp = "TIMESTAMP"
	TypeInteger   = "INTEGER"
	TypeJSON      = "JSON"
)

// Limits enforced by ValidateSpec. They bound the size of the SQL we generate
// (and of error messages) for a spec that any member can store.
const (
	MaxFilters      = 50
	MaxSortKeys     = 10
	MaxFilterValues = 1000 // for IN / NOT_IN
	// MaxSpecValues bounds the values of all an element's filters together.
	// Each value is one bind variable of the query, and the databases cap
	// those per statement (SQLite 32766, PostgreSQL 65535): without this,
	// 50 filters of 1000 values would be accepted and then fail at query
	// time. The rest of a query (time range, keyset, tenant) takes < 200.
	MaxSpecValues    = 10000
	MaxValueBytes    = 1024
	MaxRelativeRange = 3660 * 24 * time.Hour // ~10 years
)

// Column is one column of AUDIT_LOGS.
type Column struct {
	Name string // upper case, e.g. "REQUEST_TIME"
	Type string // TypeString, TypeTimestamp, TypeInteger or TypeJSON
	DB   string // database column, e.g. "request_time"
}

// Columns lists the table's columns in table order. The internal id (insert
// sequence) and org_id are deliberately not exposed.
var Columns = []Column{
	{"EVENT_ID", TypeString, "event_id"},
	{"REQUEST_TIME", TypeTimestamp, "request_time"},
	{"EVENT_CATEGORY", TypeString, "event_category"},
	{"EVENT_TYPE", TypeString, "event_type"},
	{"EVENT_STATUS", TypeString, "event_status"},
	{"USER_ID", TypeString, "user_id"},
	{"USER_EMAIL", TypeString, "user_email"},
	{"ACCOUNT_TYPE", TypeString, "account_type"},
	{"OBJECT_TYPE", TypeString, "object_type"},
	{"OBJECT_ID", TypeString, "object_id"},
	{"REQUEST_ID", TypeString, "request_id"},
	{"IP_ADDRESS", TypeString, "ip_address"},
	{"USER_AGENT", TypeString, "user_agent"},
	{"ERROR_CODE", TypeString, "error_code"},
	{"METADATA", TypeJSON, "metadata"},
}

// defaultTimeColumn is used by a relative time range that names no column.
const defaultTimeColumn = "REQUEST_TIME"

// ColumnByName finds a column by name, case-insensitively.
func ColumnByName(name string) (Column, bool) {
	for _, c := range Columns {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Column{}, false
}

// Violation is one problem with a spec. Field is a path relative to the
// element ("filters[0].values"), so the API layer can prefix it.
type Violation struct {
	Field, Msg string
}

// valueCount is how many values each operator takes: {min, max}.
var valueCount = map[string][2]int{
	OpEquals:      {1, 1},
	OpNotEquals:   {1, 1},
	OpContains:    {1, 1},
	OpGreaterThan: {1, 1},
	OpLessThan:    {1, 1},
	OpIn:          {1, MaxFilterValues},
	OpNotIn:       {1, MaxFilterValues},
	OpBetween:     {2, 2},
}

var operatorList = "EQUALS, NOT_EQUALS, IN, NOT_IN, CONTAINS, GREATER_THAN, LESS_THAN, BETWEEN"

// ValidateSpec checks a spec against the table and the limits above and
// returns every problem found (nil if none). Query and Stream refuse specs with
// violations, so a stored element can never turn into a failing SQL query.
func ValidateSpec(s Spec) []Violation {
	var vs []Violation
	add := func(field, format string, args ...any) {
		vs = append(vs, Violation{Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	// Duplicates are refused, so more entries than columns is always wrong;
	// checking the length first bounds the work on hostile input.
	if len(s.Columns) > len(Columns) {
		add("columns", "at most %d columns, each at most once", len(Columns))
	} else {
		seen := map[string]bool{}
		for i, name := range s.Columns {
			f := fmt.Sprintf("columns[%d]", i)
			switch c, ok := ColumnByName(name); {
			case name == "":
				add(f, "column name is required")
			case !ok:
				add(f, "unknown column %s in %s", quote(name), TableName)
			case seen[c.Name]:
				add(f, "duplicate column %s", c.Name)
			default:
				seen[c.Name] = true
			}
		}
	}

	if len(s.Filters) > MaxFilters {
		add("filters", "at most %d filters", MaxFilters)
	} else {
		total := 0
		for i, f := range s.Filters {
			vs = append(vs, validateFilter(fmt.Sprintf("filters[%d]", i), f)...)
			if total += len(f.Values); total > MaxSpecValues && total-len(f.Values) <= MaxSpecValues {
				add(fmt.Sprintf("filters[%d].values", i), "the filters hold %d values or more in all, at most %d are allowed per element (each value is a query parameter)", total, MaxSpecValues)
			}
		}
	}

	if tr := s.TimeRange; tr != nil {
		if tr.Column != "" {
			switch c, ok := ColumnByName(tr.Column); {
			case !ok:
				add("relative_time_range.column", "unknown column %s in %s", quote(tr.Column), TableName)
			case c.Type != TypeTimestamp:
				add("relative_time_range.column", "column %s is %s, want a TIMESTAMP column", c.Name, c.Type)
			}
		}
		switch {
		case tr.Last <= 0:
			add("relative_time_range.last", "must be positive")
		case tr.Last > MaxRelativeRange:
			add("relative_time_range.last", "at most %d days", int(MaxRelativeRange/(24*time.Hour)))
		}
	}

	if len(s.Sort) > MaxSortKeys {
		add("sort", "at most %d sort keys", MaxSortKeys)
	} else {
		seen := map[string]bool{}
		for i, k := range s.Sort {
			f := fmt.Sprintf("sort[%d].column", i)
			switch c, ok := ColumnByName(k.Column); {
			case k.Column == "":
				add(f, "column name is required")
			case !ok:
				add(f, "unknown column %s in %s", quote(k.Column), TableName)
			case seen[c.Name]:
				add(f, "duplicate sort column %s", c.Name)
			default:
				seen[c.Name] = true
			}
		}
	}
	return vs
}

func validateFilter(p string, f Filter) []Violation {
	var vs []Violation
	add := func(field, format string, args ...any) {
		vs = append(vs, Violation{Field: p + "." + field, Msg: fmt.Sprintf(format, args...)})
	}

	col, colOK := ColumnByName(f.Column)
	switch {
	case f.Column == "":
		add("column", "column name is required")
	case !colOK:
		add("column", "unknown column %s in %s", quote(f.Column), TableName)
	}

	count, opOK := valueCount[f.Op]
	switch {
	case f.Op == "":
		add("operator", "operator is required (one of %s)", operatorList)
	case !opOK:
		add("operator", "unknown operator %s (want one of %s)", quote(f.Op), operatorList)
	case colOK && !opAllowed(f.Op, col.Type):
		// The operator is what is wrong here, not the values: the same
		// values would be fine with another operator.
		add("operator", "%s is not supported on %s column %s", f.Op, col.Type, col.Name)
	}

	if opOK {
		switch n := len(f.Values); {
		case count[0] == count[1] && n != count[0]:
			add("values", "%s takes exactly %d value(s), got %d", f.Op, count[0], n)
		case n < count[0]:
			add("values", "%s takes at least %d value(s), got %d", f.Op, count[0], n)
		case n > count[1]:
			add("values", "%s takes at most %d values, got %d", f.Op, count[1], n)
		}
	}
	if len(f.Values) > MaxFilterValues {
		return vs // don't look at each of a huge list
	}

	// Values are checked against the column type only when the operator
	// fits the type; otherwise the operator violation says it all.
	typed := colOK && (!opOK || opAllowed(f.Op, col.Type))

	// Report only the first bad value of a filter: one message is enough to
	// fix the input, and a long list of bad values must not produce a long
	// list of violations.
	for j, v := range f.Values {
		var msg string
		switch {
		case !utf8.ValidString(v):
			msg = "is not valid UTF-8"
		case len(v) > MaxValueBytes:
			msg = fmt.Sprintf("is longer than %d bytes", MaxValueBytes)
		case typed && col.Type == TypeTimestamp:
			if _, err := parseTimestamp(v); err != nil {
				msg = fmt.Sprintf("%s is not an RFC 3339 timestamp (e.g. 2024-05-01T00:00:00Z)", quote(v))
			}
		case typed && col.Type == TypeInteger:
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				msg = fmt.Sprintf("%s is not an integer", quote(v))
			}
		}
		if msg != "" {
			add("values", "values[%d] %s", j, msg)
			return vs
		}
	}

	if typed && f.Op == OpBetween && len(f.Values) == 2 {
		lo, _ := convertValue(col, f.Values[0])
		hi, _ := convertValue(col, f.Values[1])
		if compareValues(lo, hi) > 0 {
			add("values", "BETWEEN lower bound %s is after upper bound %s", quote(f.Values[0]), quote(f.Values[1]))
		}
	}
	return vs
}

// opAllowed reports whether op makes sense for a column type. CONTAINS is a
// text search (meaningless on the database's timestamp representation);
// ordering JSON text compares documents character by character, which is
// never what a user means.
func opAllowed(op, typ string) bool {
	switch {
	case op == OpContains:
		return typ == TypeString || typ == TypeJSON
	case op == OpGreaterThan || op == OpLessThan || op == OpBetween:
		return typ != TypeJSON
	}
	return true
}

// parseTimestamp parses an RFC 3339 filter value. Values are truncated to
// microseconds because that is PostgreSQL's precision (and what we store), so
// both databases compare the same instants.
func parseTimestamp(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, err
	}
	return dbTime(t), nil
}

// dbTime normalizes a time for storage and comparison. UTC matters on
// SQLite: times are stored as text, and text order equals time order only
// if every value has the same zone (and Truncate drops the monotonic reading
// that would otherwise leak into the text).
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// convertValue converts a validated filter value to the column's Go type.
func convertValue(c Column, v string) (any, error) {
	switch c.Type {
	case TypeTimestamp:
		return parseTimestamp(v)
	case TypeInteger:
		return strconv.ParseInt(v, 10, 64)
	}
	return v, nil
}

// compareValues orders two values of the same converted type; strings by
// bytes, which is how both databases compare them here (SQLite's BINARY
// collation; COLLATE "C" on PostgreSQL).
func compareValues(a, b any) int {
	switch a := a.(type) {
	case time.Time:
		return a.Compare(b.(time.Time))
	case int64:
		bb := b.(int64)
		switch {
		case a < bb:
			return -1
		case a > bb:
			return 1
		}
		return 0
	case string:
		return strings.Compare(a, b.(string))
	}
	return 0
}

// quote quotes user input for a message, shortened so that a huge value
// cannot blow up an error response.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = truncateUTF8(s, max) + "…"
	}
	return strconv.Quote(s)
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
