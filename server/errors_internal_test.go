package server

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// TestGatewayErrorJSONFieldPaths: over REST, field violations (and the
// message that starts with the first one) name JSON paths; indexes and map
// keys stay as they are; errors without violations are unchanged.
func TestGatewayErrorJSONFieldPaths(t *testing.T) {
	for in, want := range map[string]string{
		"schedule.time_zone":                     "schedule.timeZone",
		"schedule.cron":                          "schedule.cron",
		"element.filters[2].column_name":         "element.filters[2].columnName",
		"labels[some_key].value_x":               "labels[some_key].valueX",
		"storage_integration.s3.role_arn":        "storageIntegration.s3.roleArn",
		"update_mask":                            "updateMask",
		"schedule.destination.cloud_storage.uri": "schedule.destination.cloudStorage.uri",
	} {
		if got := JSONFieldPath(in); got != want {
			t.Errorf("JSONFieldPath(%q) = %q, want %q", in, got, want)
		}
	}
	var v violations
	v.add("schedule.time_zone", "unknown zone %q", "Mars/Base")
	v.add("schedule.notify_emails[1]", "not an address")
	st := status.Convert(GatewayError(v.err()))
	if st.Code() != codes.InvalidArgument || st.Message() != `schedule.timeZone: unknown zone "Mars/Base" (and 1 more)` {
		t.Errorf("REST status: %v %q", st.Code(), st.Message())
	}
	var fields []string
	var reason string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, fv := range d.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		}
	}
	if want := []string{"schedule.timeZone", "schedule.notifyEmails[1]"}; !slices.Equal(fields, want) || reason != "INVALID_ARGUMENT" {
		t.Errorf("REST violations %q reason %q, want %q INVALID_ARGUMENT", fields, reason, want)
	}
	// The gRPC error itself is untouched.
	if m := status.Convert(v.err()).Message(); !strings.HasPrefix(m, "schedule.time_zone: ") {
		t.Errorf("gRPC message changed: %q", m)
	}
	plain := failedPrecondition("RUN_IN_PROGRESS", "a run is in progress")
	if got := GatewayError(plain); status.Convert(got).Message() != "a run is in progress" {
		t.Errorf("no violations: %v", got)
	}
}

// TestWarmUpCoversTheAPI: WarmUp reaches every message of the API (it
// would silently do nothing if the package prefix it filters on changed)
// and the well-known types inside it, and not messages of packages no
// request carries.
func TestWarmUpCoversTheAPI(t *testing.T) {
	warm := map[protoreflect.FullName]bool{}
	for _, mt := range warmMessages() {
		warm[mt.Descriptor().FullName()] = true
	}
	n := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := mt.Descriptor().FullName()
		if strings.HasPrefix(string(name), "auditexport.") {
			n++
			if !warm[name] {
				t.Errorf("%s is not warmed", name)
			}
		}
		return true
	})
	if n < 50 {
		t.Fatalf("%d auditexport.* messages registered, want the whole API (>= 50)", n)
	}
	for _, name := range []protoreflect.FullName{"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
		"google.protobuf.Timestamp", "google.rpc.Status", "grpc.health.v1.HealthCheckResponse"} {
		if !warm[name] {
			t.Errorf("%s is not warmed", name)
		}
	}
	// A message registered by a package outside warmPackages and not
	// inside the API — what the cloud SDKs link into the server binary
	// (envoy, Cloud Monitoring), which this test binary does not — is
	// not warmed: one is registered here.
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("zz/foreign.proto"), Package: proto.String("zz.foreign"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Linked")}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protoregistry.GlobalTypes.FindMessageByName("zz.foreign.Linked"); err != nil { // once per process (-count)
		if err := protoregistry.GlobalTypes.RegisterMessage(dynamicpb.NewMessageType(fd.Messages().Get(0))); err != nil {
			t.Fatal(err)
		}
	}
	warm = map[protoreflect.FullName]bool{}
	for _, mt := range warmMessages() {
		warm[mt.Descriptor().FullName()] = true
	}
	if warm["zz.foreign.Linked"] {
		t.Error("zz.foreign.Linked, a message no request carries, is warmed")
	}
	if !warm["google.protobuf.Value"] {
		t.Error("google.protobuf.Value is not warmed")
	}
	WarmUp()
}
