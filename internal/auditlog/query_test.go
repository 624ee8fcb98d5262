package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
)

var t0 = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// fixture: ten events in org A identified by REQUEST_ID a0..a9, chosen so
// that each operator has a wrong answer an unescaped or locale-dependent
// implementation would give; plus org B events that must never show up.
func fixture() []Event {
	h := func(x float64) time.Time { return t0.Add(time.Duration(x * float64(time.Hour))) }
	ev := func(id string, t time.Time, cat, typ, status, code, email, obj string, meta map[string]any) Event {
		return Event{OrgID: "org_a", RequestID: id, Time: t, Category: cat, Type: typ, Status: status,
			ErrorCode: code, UserEmail: email, ObjectID: obj, Metadata: meta, UserID: "usr_" + id}
	}
	evs := []Event{
		ev("a0", h(0), "ACCESS", "API_KEY_AUTH", "SUCCESS", "", "ada@example.com", "key_1", map[string]any{"api_key_id": "key_1"}),
		ev("a1", h(1), "OBJECT_INTERACTION", "QUERY_ELEMENT", "SUCCESS", "", "bob_smith@example.com", "wb_1", map[string]any{"note": "100% done"}),
		ev("a2", h(2), "EXPORTS", "SEND_NOW", "FAILURE", "PERMISSION_DENIED", "bobxsmith@example.com", "sch_1", nil),
		ev("a3", h(3), "EXPORTS", "EXPORT_RUN_FINISHED", "SUCCESS", "", "carol@example.com", "run_1", map[string]any{"rows": 5}),
		ev("a4", h(3), "EXPORTS", "EXPORT_RUN_FINISHED", "FAILURE", "UNAVAILABLE", "carol@example.com", "run_2", map[string]any{"note": "1000 done"}),
		ev("a5", h(4), "INTEGRATIONS", "CREATE_STORAGE_INTEGRATION", "SUCCESS", "", "Dave.Jones@Example.COM", "int_1", map[string]any{"provider": "PROVIDER_S3"}),
		ev("a6", h(5), "USER_ACCOUNT", "CREATE_USER", "SUCCESS", "", "erin@example.com", "50%off", nil),
		ev("a7", h(6), "ACCESS", "API_KEY_AUTH", "FAILURE", "UNAUTHENTICATED", "", "50off", nil),
		ev("a8", h(7), "OBJECT_INTERACTION", "QUERY_ELEMENT", "SUCCESS", "", `back\slash@example.com`, "wb_2", nil),
		ev("a9", h(8), "OBJECT_INTERACTION", "GET_WORKBOOK", "SUCCESS", "", "Ünïcode@example.com", "wb_3", nil),
	}
	for i, id := range []string{"b0", "b1", "b2"} {
		e := evs[i]
		e.OrgID, e.RequestID = "org_b", id
		evs = append(evs, e)
	}
	return evs
}

var fixtureNow = t0.Add(8*time.Hour + 30*time.Minute)

func loadFixture(t *testing.T, d *db.DB) {
	t.Helper()
	r := NewRecorder(d.Client, nil)
	for _, e := range fixture() {
		if _, err := r.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func orgA() context.Context { return tenant.WithOrg(context.Background(), "org_a") }

// requestIDs runs spec and returns the REQUEST_ID of each row.
func requestIDs(t *testing.T, d *db.DB, ctx context.Context, s Spec) []string {
	t.Helper()
	s.Columns = []string{"REQUEST_ID"}
	res, err := Query(ctx, d.Client, s, fixtureNow, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, r := range res.Rows {
		out = append(out, r[0].(string))
	}
	if int(res.Total) != len(out) {
		t.Errorf("Total = %d, rows = %d", res.Total, len(out))
	}
	return out
}

func rids(s ...string) []string { return s }

func TestQueryOperators(t *testing.T) {
	f := func(col, op string, vals ...string) Spec {
		return Spec{Filters: []Filter{{Column: col, Op: op, Values: vals}}}
	}
	cases := []struct {
		name string
		spec Spec
		want []string
	}{
		{"all", Spec{}, rids("a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9")},
		{"equals", f("EVENT_TYPE", OpEquals, "API_KEY_AUTH"), rids("a0", "a7")},
		{"equals lower-case column", f("event_type", OpEquals, "API_KEY_AUTH"), rids("a0", "a7")},
		{"equals is case-sensitive", f("EVENT_TYPE", OpEquals, "api_key_auth"), rids()},
		{"not equals", f("EVENT_CATEGORY", OpNotEquals, "EXPORTS"), rids("a0", "a1", "a5", "a6", "a7", "a8", "a9")},
		{"in event type", f("EVENT_TYPE", OpIn, "SEND_NOW", "EXPORT_RUN_FINISHED"), rids("a2", "a3", "a4")},
		{"not in", f("EVENT_STATUS", OpNotIn, "SUCCESS"), rids("a2", "a4", "a7")},
		{"contains underscore is literal", f("USER_EMAIL", OpContains, "bob_"), rids("a1")},
		{"contains percent is literal", f("OBJECT_ID", OpContains, "50%"), rids("a6")},
		{"contains backslash", f("USER_EMAIL", OpContains, `k\s`), rids("a8")},
		{"contains folds ASCII", f("USER_EMAIL", OpContains, "DAVE.jones@example.com"), rids("a5")},
		{"contains JSON", f("METADATA", OpContains, "100%"), rids("a1")},
		{"contains non-ASCII exact", f("USER_EMAIL", OpContains, "ÜNïCODE"), rids("a9")},
		{"contains non-ASCII does not fold", f("USER_EMAIL", OpContains, "ünïcode"), rids()},
		{"greater than time is strict", f("REQUEST_TIME", OpGreaterThan, "2024-05-01T06:00:00Z"), rids("a8", "a9")},
		{"less than time", f("REQUEST_TIME", OpLessThan, "2024-05-01T01:00:00Z"), rids("a0")},
		{"equals time", f("REQUEST_TIME", OpEquals, "2024-05-01T03:00:00Z"), rids("a3", "a4")},
		{"in time", f("REQUEST_TIME", OpIn, "2024-05-01T03:00:00Z", "2024-05-01T00:00:00Z"), rids("a0", "a3", "a4")},
		{"between time inclusive", f("REQUEST_TIME", OpBetween, "2024-05-01T03:00:00Z", "2024-05-01T04:00:00Z"), rids("a3", "a4", "a5")},
		{"between time other offset", f("REQUEST_TIME", OpBetween, "2024-05-01T05:00:00+02:00", "2024-04-30T23:00:00.000001-05:00"), rids("a3", "a4", "a5")},
		{"between time fractional", f("REQUEST_TIME", OpBetween, "2024-05-01T02:59:59.999999Z", "2024-05-01T03:00:00.000001Z"), rids("a3", "a4")},
		{"greater than text by bytes", f("USER_EMAIL", OpGreaterThan, "d"), rids("a6", "a9")},
		{"less than text by bytes", f("USER_EMAIL", OpLessThan, "B"), rids("a7")},
		{"between text", f("USER_EMAIL", OpBetween, "bob", "carol@example.com"), rids("a1", "a2", "a3", "a4")},
		{"and", Spec{Filters: []Filter{
			{Column: "EVENT_CATEGORY", Op: OpEquals, Values: []string{"EXPORTS"}},
			{Column: "EVENT_STATUS", Op: OpEquals, Values: []string{"FAILURE"}},
		}}, rids("a2", "a4")},
		{"relative 3h", Spec{TimeRange: &TimeRange{Last: 3 * time.Hour}}, rids("a7", "a8", "a9")},
		{"relative inclusive start", Spec{TimeRange: &TimeRange{Column: "request_time", Last: 5*time.Hour + 30*time.Minute}},
			rids("a3", "a4", "a5", "a6", "a7", "a8", "a9")},
		{"relative and filter", Spec{
			TimeRange: &TimeRange{Column: "REQUEST_TIME", Last: 3 * time.Hour},
			Filters:   []Filter{{Column: "EVENT_TYPE", Op: OpEquals, Values: []string{"API_KEY_AUTH"}}},
		}, rids("a7")},
		{"sort desc, ties by id desc", Spec{Sort: []SortKey{{Column: "REQUEST_TIME", Descending: true}}},
			rids("a9", "a8", "a7", "a6", "a5", "a4", "a3", "a2", "a1", "a0")},
		{"sort two keys", Spec{Sort: []SortKey{{Column: "EVENT_CATEGORY"}, {Column: "REQUEST_TIME", Descending: true}}},
			rids("a7", "a0", "a4", "a3", "a2", "a5", "a9", "a8", "a1", "a6")},
		{"sort text by bytes", Spec{Sort: []SortKey{{Column: "user_email"}}},
			rids("a7", "a5", "a0", "a8", "a1", "a2", "a3", "a4", "a6", "a9")},
	}
	forEachDB(t, func(t *testing.T, d *db.DB) {
		loadFixture(t, d)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if got := requestIDs(t, d, orgA(), c.spec); !slices.Equal(got, c.want) {
					t.Errorf("got %v, want %v", got, c.want)
				}
			})
		}
	})
}

func TestQueryColumnsAndPaging(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *db.DB) {
		loadFixture(t, d)
		ctx := orgA()

		res, err := Query(ctx, d.Client, Spec{Columns: []string{"request_id", "EVENT_TYPE", "REQUEST_TIME", "METADATA"}}, fixtureNow, 3, 2)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range res.Columns {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, []string{"REQUEST_ID", "EVENT_TYPE", "REQUEST_TIME", "METADATA"}) {
			t.Errorf("columns = %v", names)
		}
		if res.Total != 10 || len(res.Rows) != 2 {
			t.Fatalf("total %d rows %d", res.Total, len(res.Rows))
		}
		row := res.Rows[0]
		if row[0] != "a3" || row[1] != "EXPORT_RUN_FINISHED" {
			t.Errorf("row = %v", row)
		}
		if ts, ok := row[2].(time.Time); !ok || !ts.Equal(t0.Add(3*time.Hour)) || ts.Location() != time.UTC {
			t.Errorf("REQUEST_TIME = %#v", row[2])
		}
		if m, ok := row[3].(json.RawMessage); !ok || string(m) != `{"rows":5}` {
			t.Errorf("METADATA = %#v", row[3])
		}

		// All columns, in table order, with Go types per column type.
		res, err = Query(ctx, d.Client, Spec{}, fixtureNow, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Columns, Columns) || len(res.Rows[0]) != len(Columns) {
			t.Fatalf("columns = %v", res.Columns)
		}
		for i, c := range res.Columns {
			v := res.Rows[0][i]
			ok := false
			switch c.Type {
			case TypeString:
				_, ok = v.(string)
			case TypeTimestamp:
				_, ok = v.(time.Time)
			case TypeJSON:
				_, ok = v.(json.RawMessage)
			}
			if !ok {
				t.Errorf("%s: %T", c.Name, v)
			}
		}

		// Past the end, and count only.
		for _, pg := range [][2]int{{10, 5}, {0, 0}} {
			res, err = Query(ctx, d.Client, Spec{}, fixtureNow, pg[0], pg[1])
			if err != nil || res.Total != 10 || len(res.Rows) != 0 || res.Rows == nil {
				t.Errorf("page %v: %v %+v", pg, err, res)
			}
		}
		if _, err := Query(ctx, d.Client, Spec{}, fixtureNow, -1, 5); err == nil {
			t.Error("negative offset accepted")
		}
	})
}

func TestQueryTenantIsolation(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *db.DB) {
		loadFixture(t, d)
		ctxB := tenant.WithOrg(context.Background(), "org_b")
		if got := requestIDs(t, d, ctxB, Spec{}); !slices.Equal(got, rids("b0", "b1", "b2")) {
			t.Errorf("org B sees %v", got)
		}
		// The same filter in A never returns B's copy of the event.
		s := Spec{Filters: []Filter{{Column: "USER_EMAIL", Op: OpEquals, Values: []string{"ada@example.com"}}}}
		if got := requestIDs(t, d, orgA(), s); !slices.Equal(got, rids("a0")) {
			t.Errorf("org A sees %v", got)
		}
		if got := requestIDs(t, d, tenant.WithOrg(context.Background(), "org_c"), Spec{}); len(got) != 0 {
			t.Errorf("org C sees %v", got)
		}
		for name, ctx := range map[string]context.Context{
			"none": context.Background(), "system": tenant.System(context.Background()),
		} {
			if _, err := Query(ctx, d.Client, Spec{}, fixtureNow, 0, 10); !errors.Is(err, ErrNoOrg) {
				t.Errorf("%s context: Query err = %v", name, err)
			}
			if err := scan(ctx, d, Spec{}, fixtureNow, func([][]byte) error { return nil }); !errors.Is(err, ErrNoOrg) {
				t.Errorf("%s context: Scan err = %v", name, err)
			}
		}
		n := 0
		err := scan(orgA(), d, Spec{Columns: []string{"REQUEST_ID"}}, fixtureNow, func(r [][]byte) error {
			if r[0][0] != 'a' {
				t.Errorf("org A scan saw %v", r)
			}
			n++
			return nil
		})
		if err != nil || n != 10 {
			t.Errorf("scan: %v, %d rows", err, n)
		}
	})
}

func TestQueryInvalidSpec(t *testing.T) {
	d := openSQLite(t)
	_, err := Query(orgA(), d.Client, Spec{Columns: []string{"NOPE"}}, fixtureNow, 0, 10)
	var ise *InvalidSpecError
	if !errors.As(err, &ise) || ise.Violations[0].Field != "columns[0]" {
		t.Fatalf("err = %v", err)
	}
}

// TestPagingStable checks that pages and Stream's keyset pages agree with
// one big query, on data with many ties in every sort key.
func TestPagingStable(t *testing.T) {
	old := scanBatch
	scanBatch = 97
	t.Cleanup(func() { scanBatch = old })
	forEachDB(t, func(t *testing.T, d *db.DB) {
		ctx := orgA()
		if err := Seed(ctx, d, "org_a", 900, fixtureNow, 2*time.Hour, 7); err != nil {
			t.Fatal(err)
		}
		// Force ties in REQUEST_TIME too: 300 events at five instants.
		r := NewRecorder(d.Client, nil)
		for i := range 300 {
			e := Event{OrgID: "org_a", Category: "ACCESS", Type: "API_KEY_AUTH",
				UserEmail: fmt.Sprintf("u%d@example.com", i%7), Time: fixtureNow.Add(-time.Duration(i%5) * time.Minute)}
			if _, err := r.Record(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		specs := []Spec{
			{},
			{Sort: []SortKey{{Column: "REQUEST_TIME", Descending: true}}},
			{Sort: []SortKey{{Column: "USER_EMAIL"}, {Column: "EVENT_TYPE", Descending: true}}},
			{Sort: []SortKey{{Column: "EVENT_STATUS", Descending: true}, {Column: "REQUEST_TIME"}}},
			{Sort: []SortKey{{Column: "METADATA"}},
				Filters: []Filter{{Column: "EVENT_CATEGORY", Op: OpIn, Values: []string{"ACCESS", "EXPORTS"}}}},
			{Sort: []SortKey{{Column: "ACCOUNT_TYPE", Descending: true}}, TimeRange: &TimeRange{Last: time.Hour}},
		}
		for i, s := range specs {
			s.Columns = []string{"EVENT_ID"}
			all, err := Query(ctx, d.Client, s, fixtureNow, 0, 100000)
			if err != nil {
				t.Fatal(err)
			}
			want := flat(all.Rows)
			if len(want) != int(all.Total) || len(want) < 100 {
				t.Fatalf("spec %d: %d rows, total %d", i, len(want), all.Total)
			}
			if len(unique(want)) != len(want) {
				t.Fatalf("spec %d: duplicate rows", i)
			}
			var paged []string
			for off := 0; off < len(want); off += 41 {
				p, err := Query(ctx, d.Client, s, fixtureNow, off, 41)
				if err != nil {
					t.Fatal(err)
				}
				paged = append(paged, flat(p.Rows)...)
			}
			if !slices.Equal(paged, want) {
				t.Errorf("spec %d: pages differ from one query", i)
			}
			var scanned []string
			err = scan(ctx, d, s, fixtureNow, func(r [][]byte) error {
				scanned = append(scanned, string(r[0]))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(scanned, want) {
				t.Errorf("spec %d: scan differs from one query (%d vs %d rows)", i, len(scanned), len(want))
			}
		}

		stop := errors.New("stop")
		calls := 0
		err := scan(ctx, d, Spec{}, fixtureNow, func([][]byte) error {
			calls++
			if calls == 150 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 150 {
			t.Errorf("scan stop: %v after %d calls", err, calls)
		}
	})
}

func flat(rows [][]any) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[0].(string))
	}
	return out
}

func unique(s []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}
