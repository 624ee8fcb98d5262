package server_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/app"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/config"
	"github.com/auditexport/auditexport/internal/testenv"
)

// FuzzRPCs sends random and mutated requests of every RPC of the four
// services through the whole in-process server (interceptors, handlers, a
// SQLite file) and fails on INTERNAL or UNKNOWN: malformed input is the
// caller's fault and must be answered as such. A handler panic is caught by
// the interceptor and answered INTERNAL, so it fails here too.
//
// Inputs: the RPC's name, the request's wire bytes, and a structured
// mutation (see mutate). Bytes that do not parse are sent as they are.
// Seed requests name the fixtures with placeholders (@wb, @sch, ...; see
// fuzzServer.ids), replaced before sending, so they reach deep into the
// handlers. `make test` fuzzes for a bounded time; `go test` runs the seed
// corpus (testdata/fuzz/FuzzRPCs) like a normal test.
func FuzzRPCs(f *testing.F) {
	s := startFuzzServer(f)
	f.Fuzz(func(t *testing.T, rpc string, data []byte, mut uint64) {
		m := s.method(rpc)
		raw := data
		req := m.in.New().Interface()
		if err := proto.Unmarshal(data, req); err == nil {
			substitute(req.ProtoReflect(), s.ids)
			mutate(req.ProtoReflect(), mut)
			if raw, err = proto.Marshal(req); err != nil {
				t.Fatalf("re-encoding %s: %v", m.name, err)
			}
		}
		code, msg := s.call(m, raw)
		t.Logf("%s: %v %s", m.name, code, msg)
		if code == codes.Internal || code == codes.Unknown {
			t.Fatalf("%s answered %v (%s) to %s", m.name, code, msg, describe(m, raw))
		}
	})
}

// fuzzMethod is one RPC of our services.
type fuzzMethod struct {
	name, full string
	in         protoreflect.MessageType
	stream     bool
}

// fuzzMethods lists every RPC of the four services, sorted by name.
func fuzzMethods(tb testing.TB) []fuzzMethod {
	var out []fuzzMethod
	for _, fd := range []protoreflect.FileDescriptor{pb.File_auditexport_v1_account_service_proto,
		pb.File_auditexport_v1_integration_service_proto, pb.File_auditexport_v1_schedule_service_proto,
		pb.File_auditexport_v1_workbook_service_proto} {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
				if err != nil {
					tb.Fatal(err)
				}
				out = append(out, fuzzMethod{name: string(md.Name()), full: fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()),
					in: in, stream: md.IsStreamingServer()})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

type fuzzServer struct {
	conn    *grpc.ClientConn
	key     string
	methods []fuzzMethod
	ids     map[string]string // placeholder -> fixture id or path
}

// method finds an RPC by name; other names (the fuzzer mutates them too)
// pick one by hash, so every input exercises some RPC.
func (s *fuzzServer) method(name string) fuzzMethod {
	for _, m := range s.methods {
		if m.name == name {
			return m
		}
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return s.methods[int(h.Sum32()%uint32(len(s.methods)))]
}

// rawCodec sends pre-encoded bytes and discards responses: the fuzz target
// looks only at the status.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)   { return v.([]byte), nil }
func (rawCodec) Unmarshal(_ []byte, _ any) error { return nil }
func (rawCodec) Name() string                    { return "proto" }

// callTimeout bounds every call, so an RPC that reaches out (testing an
// integration with a public endpoint, a Send now to one) cannot stall the
// fuzzer; DEADLINE_EXCEEDED is an acceptable answer.
const callTimeout = 5 * time.Second

func (s *fuzzServer) call(m fuzzMethod, raw []byte) (codes.Code, string) {
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.key), callTimeout)
	defer cancel()
	var err error
	if !m.stream {
		var out []byte
		err = s.conn.Invoke(ctx, m.full, raw, &out, grpc.ForceCodec(rawCodec{}))
	} else {
		var st grpc.ClientStream
		st, err = s.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, m.full, grpc.ForceCodec(rawCodec{}))
		if err == nil {
			err = st.SendMsg(raw)
		}
		if err == nil {
			err = st.CloseSend()
		}
		for err == nil {
			var out []byte
			err = st.RecvMsg(&out)
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	st := status.Convert(err)
	return st.Code(), st.Message()
}

func describe(m fuzzMethod, raw []byte) string {
	req := m.in.New().Interface()
	if err := proto.Unmarshal(raw, req); err != nil {
		return fmt.Sprintf("unparseable bytes %q", raw)
	}
	return fmt.Sprintf("%v", req)
}

// startFuzzServer runs the whole server on in-memory listeners with a
// throw-away data dir: LOCAL root inside it, no scheduler, no mail, private
// endpoints refused (so nothing on this machine is dialled). Fixtures give
// the seed requests something to act on.
func startFuzzServer(tb testing.TB) *fuzzServer {
	dir := tb.TempDir()
	key, _, _ := auth.NewAPIKey()
	gl, hl := bufconn.Listen(1<<20), bufconn.Listen(1<<20)
	cfg := config.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", // unused: the listeners above serve
		DataDir: dir, DB: "sqlite://" + filepath.Join(dir, "fuzz.db"),
		BootstrapAdminKey: key, BootstrapAdminEmail: "admin@example.com", MailFrom: "auditexport@localhost",
		LogLevel: "error", LogFormat: "json", ShutdownGrace: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, errc := make(chan struct{}), make(chan error, 1)
	go func() {
		errc <- app.Run(ctx, cfg, app.Options{GRPCListener: gl, HTTPListener: hl, Stdout: io.Discard,
			Logger: slog.New(slog.DiscardHandler), Ready: func(string, string) { close(ready) }})
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			tb.Errorf("app.Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-errc:
		tb.Fatalf("app.Run: %v", err)
	}
	conn, err := grpc.NewClient("passthrough:///fuzz", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return gl.DialContext(ctx) }))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	s := &fuzzServer{conn: conn, key: key, methods: fuzzMethods(tb)}
	s.ids = fuzzFixtures(tb, conn, key, filepath.Join(dir, "exports"))
	return s
}

// fuzzFixtures creates one of each object and returns the placeholders the
// seed requests use for them.
func fuzzFixtures(tb testing.TB, conn *grpc.ClientConn, key, localRoot string) map[string]string {
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key), time.Minute)
	defer cancel()
	must := func(what string, err error) {
		if err != nil {
			tb.Fatalf("fixture %s: %v", what, err)
		}
	}
	ic, wc, sc, ac := pb.NewIntegrationServiceClient(conn), pb.NewWorkbookServiceClient(conn), pb.NewScheduleServiceClient(conn), pb.NewAccountServiceClient(conn)
	me, err := ac.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
	must("current user", err)
	localRoot = filepath.Join(localRoot, me.GetUser().GetOrganizationId()) // the organization's LOCAL directory
	in, err := ic.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{StorageIntegration: &pb.StorageIntegration{
		Name: "fuzzlocal", Provider: pb.Provider_PROVIDER_LOCAL, Destination: "file://" + localRoot + "/fuzz/"}})
	must("integration", err)
	ex, err := wc.ExploreTable(ctx, &pb.ExploreTableRequest{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"})
	must("explore", err)
	wb, err := wc.SaveWorkbookAs(ctx, &pb.SaveWorkbookAsRequest{Id: ex.GetWorkbook().GetId(), Name: "fuzz", Folder: "f"})
	must("save workbook", err)
	el := wb.GetWorkbook().GetElements()[0].GetId()
	sch, err := sc.CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: wb.GetWorkbook().GetId(), Schedule: &pb.Schedule{
		ElementId: el, Format: pb.Format_FORMAT_CSV, Cron: "0 0 1 1 *", TimeZone: "UTC",
		Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{StorageIntegrationName: "fuzzlocal", Uri: "file://" + localRoot + "/fuzz/{run_id}.csv"}}}})
	must("schedule", err)
	msgs, err := testenv.SendNow(tb, ctx, sc, sch.GetSchedule().GetId()).Wait()
	must("send now", err)
	var run string
	if len(msgs) > 0 {
		run = msgs[len(msgs)-1].P.GetRunId()
	}
	u, err := ac.CreateUser(ctx, &pb.CreateUserRequest{User: &pb.User{Email: "creator@example.com", AccountType: pb.AccountType_ACCOUNT_TYPE_CREATOR}})
	must("user", err)
	k, err := ac.CreateApiKey(ctx, &pb.CreateApiKeyRequest{UserId: u.GetUser().GetId(), Name: "fuzz"})
	must("api key", err)
	return map[string]string{
		"@int": in.GetStorageIntegration().GetId(), "@wb": wb.GetWorkbook().GetId(), "@el": el,
		"@sch": sch.GetSchedule().GetId(), "@run": run, "@usr": u.GetUser().GetId(), "@key": k.GetApiKey().GetId(),
		"@root": localRoot,
	}
}

// substitute replaces placeholders in every string field of m.
func substitute(m protoreflect.Message, ids map[string]string) {
	pairs := make([]string, 0, 2*len(ids))
	for k, v := range ids {
		pairs = append(pairs, k, v)
	}
	r := strings.NewReplacer(pairs...) // no placeholder is a prefix of another
	walkStrings(m, func(s string) string {
		if !strings.Contains(s, "@") {
			return s
		}
		return r.Replace(s)
	})
}

func walkStrings(m protoreflect.Message, fn func(string) string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				switch fd.Kind() {
				case protoreflect.StringKind:
					l.Set(i, protoreflect.ValueOfString(fn(l.Get(i).String())))
				case protoreflect.MessageKind:
					walkStrings(l.Get(i).Message(), fn)
				}
			}
		case fd.IsMap():
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(fn(v.String())))
		case fd.Kind() == protoreflect.MessageKind:
			walkStrings(v.Message(), fn)
		}
		return true
	})
}

// mutate changes one populated scalar field of m, chosen by mut, in a way
// byte-level mutation rarely finds: an enum or integer becomes the number in
// mut's upper bits (often out of range), a bool flips, a string is cut or
// grows. mut 0 leaves m alone.
func mutate(m protoreflect.Message, mut uint64) {
	if mut == 0 {
		return
	}
	type slot struct {
		m  protoreflect.Message
		fd protoreflect.FieldDescriptor
	}
	var slots []slot
	var collect func(m protoreflect.Message)
	collect = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() || fd.IsMap():
				if fd.IsList() && fd.Kind() == protoreflect.MessageKind {
					for i := 0; i < v.List().Len(); i++ {
						collect(v.List().Get(i).Message())
					}
				}
			case fd.Kind() == protoreflect.MessageKind:
				collect(v.Message())
			default:
				slots = append(slots, slot{m, fd})
			}
			return true
		})
		// Unset enums matter most: give them a slot too.
		fields := m.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			if fd := fields.Get(i); fd.Kind() == protoreflect.EnumKind && !fd.IsList() && !m.Has(fd) {
				slots = append(slots, slot{m, fd})
			}
		}
	}
	collect(m)
	if len(slots) == 0 {
		return
	}
	s := slots[int(mut%uint64(len(slots)))]
	n := int64(int32(mut >> 16))
	switch s.fd.Kind() {
	case protoreflect.EnumKind:
		s.m.Set(s.fd, protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		s.m.Set(s.fd, protoreflect.ValueOfInt32(int32(n)))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		s.m.Set(s.fd, protoreflect.ValueOfInt64(n<<20))
	case protoreflect.BoolKind:
		s.m.Set(s.fd, protoreflect.ValueOfBool(!s.m.Get(s.fd).Bool()))
	case protoreflect.StringKind:
		str := s.m.Get(s.fd).String()
		if k := int(uint16(mut>>16)) % (len(str) + 1); k < len(str) {
			str = str[:k]
		} else {
			str += strings.Repeat("x\x00é", int(uint8(mut>>32)))
		}
		s.m.Set(s.fd, protoreflect.ValueOfString(str))
	}
}
