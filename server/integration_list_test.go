package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

// TestListIntegrationsLinkedCounts: the list counts each integration's
// schedules (in one grouped query) exactly as Get does, across pages,
// including integrations without schedules.
func TestListIntegrationsLinkedCounts(t *testing.T) {
	s := startFuzzServer(t)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.key), time.Minute)
	defer cancel()
	ic, sc := pb.NewIntegrationServiceClient(s.conn), pb.NewScheduleServiceClient(s.conn)
	root := s.ids["@root"]
	for _, name := range []string{"two", "none"} {
		if _, err := ic.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{StorageIntegration: &pb.StorageIntegration{
			Name: name, Provider: pb.Provider_PROVIDER_LOCAL, Destination: "file://" + root + "/" + name + "/"}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if _, err := sc.CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: s.ids["@wb"], Schedule: &pb.Schedule{
			Name: "two-" + string(rune('a'+i)), ElementId: s.ids["@el"], Format: pb.Format_FORMAT_CSV, Cron: "0 0 1 1 *", TimeZone: "UTC",
			Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{StorageIntegrationName: "two", Uri: "file://" + root + "/two/{run_id}.csv"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int32{"fuzzlocal": 1, "two": 2, "none": 0}
	got := map[string]int32{}
	token := ""
	for {
		resp, err := ic.ListStorageIntegrations(ctx, &pb.ListStorageIntegrationsRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range resp.GetStorageIntegrations() {
			got[in.GetName()] = in.GetLinkedScheduleCount()
			one, err := ic.GetStorageIntegration(ctx, &pb.GetStorageIntegrationRequest{Id: in.GetId()})
			if err != nil {
				t.Fatal(err)
			}
			if n := one.GetStorageIntegration().GetLinkedScheduleCount(); n != in.GetLinkedScheduleCount() {
				t.Errorf("%s: list says %d linked schedules, get says %d", in.GetName(), in.GetLinkedScheduleCount(), n)
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	for name, n := range want {
		if g, ok := got[name]; !ok || g != n {
			t.Errorf("%s: %d linked schedules (listed: %v), want %d", name, g, ok, n)
		}
	}
}
