package auditlog

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/auditexport/auditexport/internal/db"
	idpkg "github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/tenant"
)

var seedNow = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

func TestSeed(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *db.DB) {
		const n = 6000
		span := 30 * 24 * time.Hour
		ctx := context.Background()
		start := time.Now()
		if err := Seed(ctx, d, "org_a", n, seedNow, span, 42); err != nil {
			t.Fatal(err)
		}
		t.Logf("seeded %d rows in %s", n, time.Since(start))
		// Same seed, other org: identical rows except event ids.
		if err := Seed(ctx, d, "org_b", n, seedNow, span, 42); err != nil {
			t.Fatal(err)
		}
		// Same seed and org again: event ids must not collide.
		if err := Seed(ctx, d, "org_c", 100, seedNow, span, 42); err != nil {
			t.Fatal(err)
		}
		if err := Seed(ctx, d, "org_c", 100, seedNow, span, 42); err != nil {
			t.Fatalf("re-seeding with the same seed: %v", err)
		}

		var rowsA [][]any
		scan := func(org string, dst *[][]any) {
			res, err := Query(tenant.WithOrg(ctx, org), d.Client, Spec{}, seedNow, 0, 100000)
			if err != nil {
				t.Fatal(err)
			}
			*dst = res.Rows
		}
		scan("org_a", &rowsA)
		if len(rowsA) != n {
			t.Fatalf("org_a has %d rows", len(rowsA))
		}
		res, err := Query(tenant.WithOrg(ctx, "org_a"), d.Client, Spec{}, seedNow, 0, 0)
		if err != nil || res.Total != n {
			t.Fatalf("Total = %v, %v", res, err)
		}
		checkSeedRows(t, rowsA, span)

		var rowsB [][]any
		scan("org_b", &rowsB)
		for i := range rowsA {
			a, b := rowsA[i][1:], rowsB[i][1:] // all but EVENT_ID
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("row %d differs between same-seed runs:\n%v\n%v", i, a, b)
			}
			if rowsA[i][0] == rowsB[i][0] {
				t.Fatalf("row %d: event id reused", i)
			}
		}

		// Insert order follows time order.
		rows, err := d.SQL.QueryContext(ctx, "SELECT request_time FROM audit_logs WHERE org_id = 'org_a' ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rows.Close() }()
		var prev time.Time
		for rows.Next() {
			var ts time.Time
			if err := rows.Scan(&ts); err != nil {
				t.Fatal(err)
			}
			if ts.Before(prev) {
				t.Fatalf("time %v after %v in insert order", ts, prev)
			}
			prev = ts
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	})
}

var (
	emailRE = regexp.MustCompile(`^[a-z]+\.[a-z-]+@example\.com$`)
	docNets = []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
	}
)

// checkSeedRows spot-checks the shape of seeded rows (all columns, default order).
func checkSeedRows(t *testing.T, rows [][]any, span time.Duration) {
	t.Helper()
	col := func(name string) int {
		for i, c := range Columns {
			if c.Name == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	iID, iTime, iCat, iType, iStatus := col("EVENT_ID"), col("REQUEST_TIME"), col("EVENT_CATEGORY"), col("EVENT_TYPE"), col("EVENT_STATUS")
	iUser, iEmail, iIP, iErr, iMeta := col("USER_ID"), col("USER_EMAIL"), col("IP_ADDRESS"), col("ERROR_CODE"), col("METADATA")
	users, emails, types, cats := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	failures := 0
	var prev time.Time
	for i, r := range rows {
		ts := r[iTime].(time.Time)
		if ts.Before(seedNow.Add(-span)) || ts.After(seedNow) || ts.Before(prev) {
			t.Fatalf("row %d: time %v", i, ts)
		}
		prev = ts
		eid := r[iID].(string)
		u, err := ulid.ParseStrict(strings.ToUpper(strings.TrimPrefix(eid, idpkg.Event)))
		if !idpkg.Valid(idpkg.Event, eid) || err != nil || u.Time() != uint64(ts.UnixMilli()) {
			t.Fatalf("row %d: event id %s for time %v", i, eid, ts)
		}
		users[r[iUser].(string)] = true
		emails[r[iEmail].(string)] = true
		types[r[iType].(string)] = true
		cats[r[iCat].(string)] = true
		if !emailRE.MatchString(r[iEmail].(string)) || !idpkg.Valid(idpkg.User, r[iUser].(string)) {
			t.Fatalf("row %d: user %v %v", i, r[iUser], r[iEmail])
		}
		switch r[iStatus] {
		case StatusSuccess:
			if r[iErr] != "" {
				t.Fatalf("row %d: success with error %v", i, r[iErr])
			}
		case StatusFailure:
			failures++
			if r[iErr] == "" {
				t.Fatalf("row %d: failure without error code", i)
			}
		default:
			t.Fatalf("row %d: status %v", i, r[iStatus])
		}
		if ip := r[iIP].(string); ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil || !(docNets[0].Contains(a) || docNets[1].Contains(a) || docNets[2].Contains(a)) {
				t.Fatalf("row %d: ip %q", i, ip)
			}
		}
		meta := r[iMeta].(json.RawMessage)
		var m map[string]any
		if err := json.Unmarshal(meta, &m); err != nil || len(m) == 0 {
			t.Fatalf("row %d: metadata %s: %v", i, meta, err)
		}
		if got, _ := encodeMetadata(m); strings.Contains(got, Redacted) {
			t.Fatalf("row %d: metadata would be scrubbed: %s", i, meta)
		}
	}
	if len(users) < 40 || len(users) > 50 || len(emails) != len(users) {
		t.Errorf("%d users, %d emails", len(users), len(emails))
	}
	if len(cats) != 8 || len(types) < 15 || !types["API_KEY_AUTH"] || !types["EXPORT_RUN_FINISHED"] {
		t.Errorf("categories %v, types %v", cats, types)
	}
	if rate := float64(failures) / float64(len(rows)); rate < 0.03 || rate > 0.07 {
		t.Errorf("failure rate %.3f", rate)
	}
}

func TestSeed200k(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	n := 200000
	if raceEnabled {
		// Still spans two transactions and ends with a partial statement.
		n = 60500
	}
	forEachDB(t, func(t *testing.T, d *db.DB) {
		start := time.Now()
		if err := Seed(context.Background(), d, "org_a", n, seedNow, 90*24*time.Hour, 1); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		t.Logf("seeded %d rows in %s (%.0f rows/s)", n, el, float64(n)/el.Seconds())
		res, err := Query(tenant.WithOrg(context.Background(), "org_a"), d.Client,
			Spec{Filters: []Filter{{Column: "EVENT_STATUS", Op: OpEquals, Values: []string{StatusSuccess}}}}, seedNow, 0, 10)
		if err != nil || res.Total < int64(n)*9/10 || res.Total == int64(n) || len(res.Rows) != 10 {
			t.Fatalf("query after seed: %v %v", res, err)
		}
		// Generous bound: catches a regression to row-at-a-time inserts
		// even under -race on a slow machine.
		if el > 2*time.Minute {
			t.Errorf("seeding %d rows took %s", n, el)
		}
	})
}

// TestSeedMillion times a 1M-event seed on SQLite. Run with
// AUDITLOG_SEED_1M=1 go test -run TestSeedMillion -v ./internal/auditlog/
func TestSeedMillion(t *testing.T) {
	if os.Getenv("AUDITLOG_SEED_1M") == "" {
		t.Skip("set AUDITLOG_SEED_1M=1")
	}
	var d *db.DB
	if os.Getenv("AUDITLOG_SEED_1M") == "postgres" {
		d = openPostgres(t)
	} else {
		d = openSQLite(t)
	}
	const n = 1000000
	start := time.Now()
	if err := Seed(context.Background(), d, "org_a", n, seedNow, 365*24*time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("%s: seeded %d rows in %s (%.0f rows/s)", d.Dialect, n, el, n/el.Seconds())

	ctx := tenant.WithOrg(context.Background(), "org_a")
	for _, s := range []Spec{{}, {Sort: []SortKey{{Column: "REQUEST_TIME", Descending: true}}},
		{TimeRange: &TimeRange{Last: 24 * time.Hour}, Filters: []Filter{{Column: "USER_EMAIL", Op: OpContains, Values: []string{"ada."}}}}} {
		start = time.Now()
		res, err := Query(ctx, d.Client, s, seedNow, 500000, 100)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("query %+v: total %d, %d rows in %s", s, res.Total, len(res.Rows), time.Since(start))
	}
	start = time.Now()
	rows := 0
	if err := scan(ctx, d, Spec{}, seedNow, func([][]byte) error { rows++; return nil }); err != nil {
		t.Fatal(err)
	}
	t.Logf("scan: %d rows in %s", rows, time.Since(start))
}

// BenchmarkSeed reports the cost per seeded event (b.N events per run).
func BenchmarkSeed(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchSeed(b, openSQLite(b)) })
	b.Run("postgres", func(b *testing.B) { benchSeed(b, openPostgres(b)) })
}

func benchSeed(b *testing.B, d *db.DB) {
	b.ReportAllocs()
	b.ResetTimer()
	if err := Seed(context.Background(), d, "org_a", b.N, seedNow, 24*time.Hour, 1); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
