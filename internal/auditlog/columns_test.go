package auditlog

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestColumns(t *testing.T) {
	want := []string{"EVENT_ID", "REQUEST_TIME", "EVENT_CATEGORY", "EVENT_TYPE", "EVENT_STATUS", "USER_ID",
		"USER_EMAIL", "ACCOUNT_TYPE", "OBJECT_TYPE", "OBJECT_ID", "REQUEST_ID", "IP_ADDRESS", "USER_AGENT",
		"ERROR_CODE", "METADATA"}
	var got []string
	for _, c := range Columns {
		got = append(got, c.Name)
		if c.DB != strings.ToLower(c.Name) {
			t.Errorf("%s: db column %s", c.Name, c.DB)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("columns = %v", got)
	}
	if c, ok := ColumnByName("request_Time"); !ok || c.Type != TypeTimestamp {
		t.Errorf("ColumnByName = %v %v", c, ok)
	}
	if c, _ := ColumnByName("metadata"); c.Type != TypeJSON {
		t.Errorf("METADATA type %s", c.Type)
	}
	if _, ok := ColumnByName("ORG_ID"); ok {
		t.Error("ORG_ID must not be exposed")
	}
}

func TestValidateSpec(t *testing.T) {
	f := func(col, op string, vals ...string) Spec {
		return Spec{Filters: []Filter{{Column: col, Op: op, Values: vals}}}
	}
	many := func(n int, v string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	cases := []struct {
		name string
		spec Spec
		want []string // violation fields, in order
	}{
		{"empty ok", Spec{}, nil},
		{"full ok", Spec{
			Columns:   []string{"event_id", "REQUEST_TIME"},
			Filters:   []Filter{{Column: "EVENT_TYPE", Op: OpIn, Values: []string{"A", "B"}}},
			TimeRange: &TimeRange{Last: 24 * time.Hour},
			Sort:      []SortKey{{Column: "REQUEST_TIME", Descending: true}, {Column: "user_email"}},
		}, nil},
		{"unknown column", Spec{Columns: []string{"EVENT_ID", "REQUEST_TIME", "FOO"}}, []string{"columns[2]"}},
		{"empty column", Spec{Columns: []string{""}}, []string{"columns[0]"}},
		{"duplicate column any case", Spec{Columns: []string{"EVENT_ID", "event_id"}}, []string{"columns[1]"}},
		{"too many columns", Spec{Columns: many(16, "EVENT_ID")}, []string{"columns"}},
		{"filter unknown column", f("FOO", OpEquals, "x"), []string{"filters[0].column"}},
		{"filter unspecified operator", f("EVENT_TYPE", "", "x"), []string{"filters[0].operator"}},
		{"filter unknown operator", f("EVENT_TYPE", "LIKE", "x"), []string{"filters[0].operator"}},
		{"equals needs one value", f("EVENT_TYPE", OpEquals), []string{"filters[0].values"}},
		{"equals two values", f("EVENT_TYPE", OpEquals, "a", "b"), []string{"filters[0].values"}},
		{"in needs a value", f("EVENT_TYPE", OpIn), []string{"filters[0].values"}},
		{"in at most 1000", f("EVENT_TYPE", OpNotIn, many(1001, "x")...), []string{"filters[0].values"}},
		{"in 1000 ok", f("EVENT_TYPE", OpIn, many(1000, "x")...), nil},
		{"between needs two", f("REQUEST_TIME", OpBetween, "2024-01-01T00:00:00Z"), []string{"filters[0].values"}},
		{"between reversed", f("REQUEST_TIME", OpBetween, "2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"), []string{"filters[0].values"}},
		{"timestamp needs RFC 3339", f("REQUEST_TIME", OpGreaterThan, "2024-01-01"), []string{"filters[0].values"}},
		{"timestamp RFC 3339 with offset ok", f("REQUEST_TIME", OpLessThan, "2024-01-01T10:00:00.5+02:00"), nil},
		{"contains on timestamp", f("REQUEST_TIME", OpContains, "2024"), []string{"filters[0].operator"}},
		{"greater than on JSON", f("METADATA", OpGreaterThan, "x"), []string{"filters[0].operator"}},
		{"between on JSON", f("METADATA", OpBetween, "a", "b"), []string{"filters[0].operator"}},
		{"contains on JSON ok", f("METADATA", OpContains, `"rows":`), nil},
		{"value too long", f("USER_EMAIL", OpEquals, strings.Repeat("x", 1025)), []string{"filters[0].values"}},
		{"value 1024 ok", f("USER_EMAIL", OpEquals, strings.Repeat("x", 1024)), nil},
		{"value not UTF-8", f("USER_EMAIL", OpContains, "a\xffb"), []string{"filters[0].values"}},
		{"second filter bad", Spec{Filters: []Filter{
			{Column: "EVENT_TYPE", Op: OpEquals, Values: []string{"x"}},
			{Column: "BAR", Op: "NOPE"},
		}}, []string{"filters[1].column", "filters[1].operator"}},
		{"too many filters", Spec{Filters: make([]Filter, 51)}, []string{"filters"}},
		{"relative default column ok", Spec{TimeRange: &TimeRange{Last: time.Hour}}, nil},
		{"relative unknown column", Spec{TimeRange: &TimeRange{Column: "WHEN", Last: time.Hour}}, []string{"relative_time_range.column"}},
		{"relative non-timestamp column", Spec{TimeRange: &TimeRange{Column: "USER_ID", Last: time.Hour}}, []string{"relative_time_range.column"}},
		{"relative zero", Spec{TimeRange: &TimeRange{}}, []string{"relative_time_range.last"}},
		{"relative negative", Spec{TimeRange: &TimeRange{Last: -time.Hour}}, []string{"relative_time_range.last"}},
		{"relative 3660 days ok", Spec{TimeRange: &TimeRange{Last: 3660 * 24 * time.Hour}}, nil},
		{"relative too long", Spec{TimeRange: &TimeRange{Last: 3661 * 24 * time.Hour}}, []string{"relative_time_range.last"}},
		{"sort unknown", Spec{Sort: []SortKey{{Column: "REQUEST_TIME"}, {Column: "FOO"}}}, []string{"sort[1].column"}},
		{"sort empty", Spec{Sort: []SortKey{{}}}, []string{"sort[0].column"}},
		{"sort duplicate", Spec{Sort: []SortKey{{Column: "REQUEST_TIME"}, {Column: "request_time", Descending: true}}}, []string{"sort[1].column"}},
		{"too many sort keys", Spec{Sort: make([]SortKey, 11)}, []string{"sort"}},
		{"several at once", Spec{
			Columns:   []string{"X"},
			TimeRange: &TimeRange{Column: "EVENT_ID"},
			Sort:      []SortKey{{Column: "Y"}},
		}, []string{"columns[0]", "relative_time_range.column", "relative_time_range.last", "sort[0].column"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vs := ValidateSpec(c.spec)
			var got []string
			for _, v := range vs {
				got = append(got, v.Field)
				if v.Msg == "" {
					t.Errorf("%s: empty message", v.Field)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("fields = %v, want %v (%v)", got, c.want, vs)
			}
		})
	}
}

func TestValidateSpecMessages(t *testing.T) {
	vs := ValidateSpec(Spec{Columns: []string{"FOO" + strings.Repeat("x", 500)}})
	if len(vs) != 1 || !strings.Contains(vs[0].Msg, `unknown column "FOOxx`) || len(vs[0].Msg) > 200 {
		t.Errorf("violations = %v", vs)
	}
	vs = ValidateSpec(Spec{Filters: []Filter{{Column: "REQUEST_TIME", Op: OpIn, Values: []string{"2024-01-01T00:00:00Z", "yesterday", "never"}}}})
	if len(vs) != 1 || !strings.Contains(vs[0].Msg, "values[1]") {
		t.Errorf("violations = %v", vs)
	}
}
