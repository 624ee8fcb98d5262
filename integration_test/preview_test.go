package integration_test

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestPreviewSchedule: PreviewSchedule lists the next run times of a cron in
// its time zone over gRPC and REST, with the scheduler's DST policy (a wall
// time inside the spring-forward gap fires when the clocks jump), agrees
// with the next_run_time the scheduler stores for the same cron, and refuses
// bad input naming the field.
func TestPreviewSchedule(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	for _, tr := range transports(s) {
		t.Run(tr.Name(), func(t *testing.T) {
			// Europe/Berlin springs forward on Sunday 2026-03-29 at 02:00.
			r := tr.Call(t, "PreviewSchedule", s.AdminKey,
				`{"cron":"30 2 * * *","timeZone":"Europe/Berlin","count":3,"after":"2026-03-27T12:00:00Z"}`, "")
			if r.Code != codes.OK {
				t.Fatalf("PreviewSchedule: %v %s", r.Code, r.Message)
			}
			runs, _ := r.Body["runs"].([]any)
			var got []string
			for _, x := range runs {
				m := x.(map[string]any)
				got = append(got, fmt.Sprintf("%v %v %v", m["runTime"], m["localTime"], m["zoneAbbreviation"]))
			}
			want := []string{
				"2026-03-28T01:30:00Z 2026-03-28T02:30:00+01:00 CET",
				"2026-03-29T01:00:00Z 2026-03-29T03:00:00+02:00 CEST", // 02:30 does not exist that day
				"2026-03-30T00:30:00Z 2026-03-30T02:30:00+02:00 CEST",
			}
			if !slices.Equal(got, want) {
				t.Errorf("runs:\n got %q\nwant %q", got, want)
			}

			// Default count is 5, starting after now.
			r = tr.Call(t, "PreviewSchedule", s.AdminKey, `{"cron":"*/15 * * * *","timeZone":"UTC"}`, "")
			if n := len(getPath(r.Body, "runs").([]any)); r.Code != codes.OK || n != 5 {
				t.Errorf("default count: %v %s, %d runs", r.Code, r.Message, n)
			}

			for _, c := range []struct{ req, field string }{
				{`{"timeZone":"UTC"}`, "cron"},
				{`{"cron":"61 * * * *","timeZone":"UTC"}`, "cron"},
				{`{"cron":"0 0 31 2 *","timeZone":"UTC"}`, "cron"},
				{`{"cron":"0 0 * * *"}`, "time_zone"},
				{`{"cron":"0 0 * * *","timeZone":"Mars/Olympus"}`, "time_zone"},
				{`{"cron":"0 0 * * *","timeZone":"UTC","count":51}`, "count"},
				{`{"cron":"0 0 * * *","timeZone":"UTC","count":-1}`, "count"},
			} {
				r := tr.Call(t, "PreviewSchedule", s.AdminKey, c.req, "")
				if r.Code != codes.InvalidArgument || !slices.Contains(r.Violations, c.field) {
					t.Errorf("%s: %v %q %v, want INVALID_ARGUMENT naming %s", c.req, r.Code, r.Message, r.Violations, c.field)
				}
			}
		})
	}

	// What the form previews is what the scheduler stores.
	_, schID := localSchedule(t, s, "preview")
	up := mustAs(t, s, s.AdminKey, "UpdateSchedule", fmt.Sprintf(
		`{"schedule":{"id":%q,"cron":"30 2 * * *","timeZone":"America/New_York"},"updateMask":"cron,timeZone"}`, schID))
	pv := mustAs(t, s, s.AdminKey, "PreviewSchedule", `{"cron":"30 2 * * *","timeZone":"America/New_York","count":1}`)
	next := getString(up, "schedule", "nextRunTime")
	first := getPath(pv, "runs").([]any)[0].(map[string]any)["runTime"]
	if next == "" || next != first {
		t.Errorf("scheduler's next_run_time %q, preview's first run %v", next, first)
	}
}
