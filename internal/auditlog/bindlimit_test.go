package auditlog

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/auditexport/auditexport/internal/db"
)

// inFilters builds n filters of op on REQUEST_ID with per values each; the
// first per-10 values are fillers that match nothing, the last ten the
// fixture's a0..a9.
func inFilters(n, per int, op string) []Filter {
	out := make([]Filter, n)
	for i := range out {
		vals := make([]string, 0, per)
		for j := 0; j < per-10; j++ {
			vals = append(vals, fmt.Sprintf("none-%d-%d", i, j))
		}
		for j := 0; j < 10 && len(vals) < per; j++ {
			vals = append(vals, fmt.Sprintf("a%d", j))
		}
		out[i] = Filter{Column: "REQUEST_ID", Op: op, Values: vals}
	}
	return out
}

// TestSpecValueLimit: every spec ValidateSpec accepts must run on both
// databases, however its filter values add up. The largest accepted spec
// (MaxSpecValues values) is queried and scanned on SQLite and PostgreSQL;
// one value more is refused at validation, naming the filter whose values
// cross the limit, and Query/Scan refuse it as an invalid spec instead of
// sending the database more bind variables than it takes (SQLite: 32766).
func TestSpecValueLimit(t *testing.T) {
	perFilter := MaxFilterValues
	n := MaxSpecValues / perFilter
	atLimit := Spec{
		Filters: append(inFilters(n-1, perFilter, OpIn), Filter{Column: "EVENT_ID", Op: OpNotIn, Values: inFilters(1, perFilter, OpNotIn)[0].Values[:perFilter]}),
		Sort:    []SortKey{{Column: "EVENT_STATUS"}, {Column: "USER_EMAIL", Descending: true}, {Column: "REQUEST_TIME"}},
	}
	if vs := ValidateSpec(atLimit); len(vs) > 0 {
		t.Fatalf("a spec with %d filter values in all is refused: %v", MaxSpecValues, vs)
	}
	// 33 full IN filters: 33,000 bind variables, more than SQLite allows.
	over := Spec{Filters: inFilters(33, perFilter, OpIn)}
	vs := ValidateSpec(over)
	crossing := fmt.Sprintf("filters[%d].values", n)
	if i := slices.IndexFunc(vs, func(v Violation) bool { return v.Field == crossing }); i < 0 || !strings.Contains(vs[i].Msg, fmt.Sprint(MaxSpecValues)) {
		t.Fatalf("33 filters of %d values: violations %v, want one on %s naming the limit %d", perFilter, vs, crossing, MaxSpecValues)
	}
	if len(vs) != 1 {
		t.Errorf("violations %v, want only the one on %s", vs, crossing)
	}

	forEachDB(t, func(t *testing.T, d *db.DB) {
		loadFixture(t, d)
		want := rids("a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9")
		got := requestIDs(t, d, orgA(), atLimit)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("Query at the limit = %v, want %v", got, want)
		}
		old := scanBatch
		scanBatch = 3 // several keyset batches, each with the full filter list
		t.Cleanup(func() { scanBatch = old })
		var scanned int
		if err := scan(orgA(), d, atLimit, fixtureNow, func([][]byte) error { scanned++; return nil }); err != nil {
			t.Fatalf("Scan at the limit: %v", err)
		}
		if scanned != len(want) {
			t.Errorf("Scan at the limit: %d rows, want %d", scanned, len(want))
		}

		var invalid *InvalidSpecError
		if _, err := Query(orgA(), d.Client, over, fixtureNow, 0, 10); !errors.As(err, &invalid) {
			t.Errorf("Query over the limit: %v, want an InvalidSpecError", err)
		}
		if err := scan(orgA(), d, over, fixtureNow, func([][]byte) error { return nil }); !errors.As(err, &invalid) {
			t.Errorf("Scan over the limit: %v, want an InvalidSpecError", err)
		}
	})
}
